"""`llmkit chat`: an interactive, streaming, multi-turn chat in the terminal.

With a terminal on stdin it is a REPL with /reset, /system TEXT, /params, /exit; with a pipe it
answers each input line as a new one-turn conversation and prints one answer per line.
With `--safety POLICY.yaml` each question is checked before it is answered and each answer a sentence at a
time as it streams; a block is logged on stderr (piped: the answer line stays empty, or stops where it was cut).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from llmkit.cli.console import console, err_console, log_to_stderr
from llmkit.cli.model_loading import build_llm
from llmkit.cli.options import MODEL_OPTIONS, SAMPLING_OPTIONS, add_options, to_sampling_kwargs
from llmkit.errors import LLMKitError

if TYPE_CHECKING:
    from llmkit.api import LLM, Dialog
    from llmkit.safety import SafetyPolicy

HELP = "commands: /reset (forget the conversation), /system TEXT, /params, /exit"


@add_options(SAMPLING_OPTIONS, into="sampling")
@add_options(MODEL_OPTIONS, into="model_options")
def chat(
    system: Optional[str] = typer.Option(None, "--system", "-s", help="System prompt for the conversation."),
    safety: Optional[Path] = typer.Option(
        None, "--safety", help="Safety policy YAML: check each question and answer; blocks are logged on stderr."
    ),
    model_options: dict[str, Any] = None,
    sampling: dict[str, Any] = None,
) -> None:
    """Chat with a model in the terminal (default: the embedded SmolLM2-135M-Instruct, offline)."""
    from llmkit.engine.params import SamplingParams
    from llmkit.safety import Blocked, load_policy

    SamplingParams.create(**to_sampling_kwargs(sampling))  # reject bad flags before the model loads
    policy = load_policy(safety) if safety is not None else None
    log_to_stderr("llmkit.safety", format="safety: %(message)s")
    llm = build_llm(model_options)
    sampling_kwargs = to_sampling_kwargs(sampling, llm.engine.sampling_defaults)
    if sys.stdin.isatty():
        _repl(llm, system, sampling_kwargs, policy)
    else:
        for line in sys.stdin:
            if line.strip():
                dialog = _start(system) + [{"role": "user", "content": line.strip()}]
                parts: list[str] = []
                try:
                    for delta in _answer(llm, dialog, sampling_kwargs, policy):
                        parts.append(delta)
                except Blocked:
                    pass  # the policy logged why; the line keeps what passed
                console.print("".join(parts).strip().replace("\n", " "), markup=False, soft_wrap=True)


def _answer(llm: LLM, dialog: Dialog, sampling_kwargs: dict[str, Any], policy: SafetyPolicy | None) -> Iterator[str]:
    """The answer's text as it streams; with a policy the question is checked first (`Blocked` before any text)
    and the answer let out a sentence at a time once checked (`Blocked` where it stops)."""
    deltas = llm.stream_chat(dialog, **sampling_kwargs)
    if policy is None:
        return deltas
    from llmkit.safety import guard_stream

    policy.require_safe(dialog[-1]["content"], role="user", context=dialog[:-1])
    return guard_stream(deltas, lambda text: policy.check(text, role="assistant", context=dialog))


def _repl(llm: LLM, system: str | None, sampling_kwargs: dict[str, Any], policy: SafetyPolicy | None) -> None:
    from llmkit.engine.params import SamplingParams

    dialog = _start(system)
    err_console.print(f"[dim]{HELP}[/]")
    while True:
        try:
            text = console.input("[bold green]>>> [/]").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not text:
            continue
        if text.startswith("/"):
            command, _, argument = text.partition(" ")
            if command == "/exit":
                return
            if command == "/reset":
                dialog = _start(system)
                err_console.print("[dim]conversation cleared[/]")
            elif command == "/system":
                system = argument.strip() or None
                dialog = _start(system)
                err_console.print(f"[dim]system prompt {'set' if system else 'removed'}; conversation cleared[/]")
            elif command == "/params":
                params = SamplingParams.create(**sampling_kwargs)
                decoding = "sampling" if params.sampling else "beam search" if params.beam_search else "greedy"
                err_console.print(decoding, params.model_dump(exclude_defaults=True))
            else:
                err_console.print(f"[yellow]unknown command {command}[/]; {HELP}")
            continue
        dialog.append({"role": "user", "content": text})
        answer = _stream_answer(llm, dialog, sampling_kwargs, policy)
        if answer is None:
            dialog.pop()
        else:
            dialog.append({"role": "assistant", "content": answer})


def _stream_answer(
    llm: LLM, dialog: Dialog, sampling_kwargs: dict[str, Any], policy: SafetyPolicy | None
) -> str | None:
    """Print the answer as it streams; Ctrl-C stops it (the partial answer is kept). A blocked question or
    answer leaves the conversation as it was (the policy logged why)."""
    from llmkit.safety import Blocked

    parts: list[str] = []
    try:
        for delta in _answer(llm, dialog, sampling_kwargs, policy):
            parts.append(delta)
            console.print(delta, end="", markup=False, highlight=False)
    except KeyboardInterrupt:
        err_console.print("[dim] (stopped)[/]")
    except Blocked:
        console.print()
        return None
    except LLMKitError as error:
        err_console.print(f"[bold red]error:[/] {error}")
        return None
    console.print()
    return "".join(parts)


def _start(system: str | None) -> Dialog:
    return [{"role": "system", "content": system}] if system else []
