"""`llmkit generate`: one prompt in, one answer out (streamed), or the full result as JSON."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any, Optional

import typer

from llmkit.cli.console import console
from llmkit.cli.model_loading import build_llm
from llmkit.cli.options import MODEL_OPTIONS, SAMPLING_OPTIONS, add_options, to_sampling_kwargs
from llmkit.errors import InvalidRequestError


@add_options(SAMPLING_OPTIONS, into="sampling")
@add_options(MODEL_OPTIONS, into="model_options")
def generate(
    prompt: Optional[str] = typer.Argument(None, help="The prompt; read from stdin when omitted or '-'."),
    chat: bool = typer.Option(False, "--chat", help="Wrap the prompt as a user turn with the chat template."),
    system: Optional[str] = typer.Option(None, "--system", "-s", help="System prompt (with --chat)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole result (tokens, finish reason) as JSON."),
    logprobs: Optional[int] = typer.Option(None, "--logprobs", help="With --json: token logprobs, N alternatives."),
    model_options: dict[str, Any] = None,
    sampling: dict[str, Any] = None,
) -> None:
    """Generate a continuation of PROMPT (or a chat answer with --chat) and print it."""
    from llmkit.engine.params import SamplingParams
    from llmkit.models import render_chat

    if prompt is None or prompt == "-":
        prompt = sys.stdin.read().removesuffix("\n")  # the newline `echo` adds is not part of the prompt
    if not prompt.strip():
        raise InvalidRequestError("the prompt is empty: pass it as an argument or on stdin")
    SamplingParams.create(**to_sampling_kwargs(sampling), logprobs=logprobs)  # bad flags fail before the load
    llm = build_llm(model_options)
    params = SamplingParams.create(**to_sampling_kwargs(sampling, llm.engine.sampling_defaults), logprobs=logprobs)
    if chat:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        prompt_ids = render_chat(llm.tokenizer, messages)
    else:
        prompt_ids = llm.tokenizer.encode(prompt)
    if as_json:
        result = llm.engine.generate([prompt_ids], params)[0]
        console.print_json(json.dumps(dataclasses.asdict(result), ensure_ascii=False))
        return
    for output in llm.engine.stream(prompt_ids, params):
        console.print(output.outputs[0].delta, end="", markup=False, highlight=False)
    console.print()
