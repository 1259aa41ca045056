"""`llmkit chat`: an interactive, streaming, multi-turn chat in the terminal.

With a terminal on stdin it is a REPL with /reset, /system TEXT, /params, /exit; with a pipe it
answers each input line as a new one-turn conversation and prints one answer per line.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional

import typer

from llmkit.cli.console import console, err_console
from llmkit.cli.model_loading import build_llm
from llmkit.cli.options import MODEL_OPTIONS, SAMPLING_OPTIONS, add_options, to_sampling_kwargs
from llmkit.errors import LLMKitError

if TYPE_CHECKING:
    from llmkit.api import LLM, Dialog

HELP = "commands: /reset (forget the conversation), /system TEXT, /params, /exit"


@add_options(SAMPLING_OPTIONS, into="sampling")
@add_options(MODEL_OPTIONS, into="model_options")
def chat(
    system: Optional[str] = typer.Option(None, "--system", "-s", help="System prompt for the conversation."),
    model_options: dict[str, Any] = None,
    sampling: dict[str, Any] = None,
) -> None:
    """Chat with a model in the terminal (default: the embedded SmolLM2-135M-Instruct, offline)."""
    from llmkit.engine.params import SamplingParams

    sampling_kwargs = to_sampling_kwargs(sampling)
    SamplingParams.create(**sampling_kwargs)  # reject bad flags before the model loads
    llm = build_llm(model_options)
    if sys.stdin.isatty():
        _repl(llm, system, sampling_kwargs)
    else:
        for line in sys.stdin:
            if line.strip():
                dialog = _start(system) + [{"role": "user", "content": line.strip()}]
                answer = "".join(llm.stream_chat(dialog, **sampling_kwargs))
                console.print(answer.strip().replace("\n", " "), markup=False, soft_wrap=True)


def _repl(llm: LLM, system: str | None, sampling_kwargs: dict[str, Any]) -> None:
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
        answer = _stream_answer(llm, dialog, sampling_kwargs)
        if answer is None:
            dialog.pop()
        else:
            dialog.append({"role": "assistant", "content": answer})


def _stream_answer(llm: LLM, dialog: Dialog, sampling_kwargs: dict[str, Any]) -> str | None:
    """Print the answer as it streams; Ctrl-C stops it (the partial answer is kept)."""
    parts: list[str] = []
    try:
        for delta in llm.stream_chat(dialog, **sampling_kwargs):
            parts.append(delta)
            console.print(delta, end="", markup=False, highlight=False)
    except KeyboardInterrupt:
        err_console.print("[dim] (stopped)[/]")
    except LLMKitError as error:
        err_console.print(f"[bold red]error:[/] {error}")
        return None
    console.print()
    return "".join(parts)


def _start(system: str | None) -> Dialog:
    return [{"role": "system", "content": system}] if system else []
