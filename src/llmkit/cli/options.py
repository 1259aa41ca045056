"""Option groups shared by several commands, declared once.

`add_options(GROUP, into="name")` adds a group's flags to a command's signature (typer reads the
signature) and hands the command the values that were set as one dict argument `name`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Optional

import typer

from llmkit.engine.backends import Backend, Quantization
from llmkit.engine.sampling_defaults import NEUTRAL, resolve_sampling

OptionGroup = dict[str, tuple[Any, Any]]

MODEL_DEFAULT = "\\[default: the model's generation config, else neutral]"


MODEL_OPTIONS: OptionGroup = {
    "model": (str, typer.Option("default", "--model", "-m", help="Model name, local path, .gguf file or hub id.")),
    "dtype": (str, typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16.")),
    "device": (str, typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")),
    "max_seq_len": (int, typer.Option(2048, "--max-seq-len", help="Context length (prompt + answer) in tokens.")),
    "chat_template": (
        Optional[Path],
        typer.Option(None, "--chat-template", help="Chat template: a LLaMA-Factory name (qwen, llama3 …), a Jinja file, or the Jinja text."),
    ),
    "adapter": (Optional[Path], typer.Option(None, "--adapter", help="A LoRA adapter directory (PEFT).")),
    "backend": (
        Backend,
        typer.Option(
            "auto", "--backend",
            help="auto (llamacpp for a GGUF model when llama-cpp-python is installed and nothing needs torch, else "
            "torch), torch, or llamacpp.",
        ),
    ),
    "quantize": (
        Optional[Quantization],
        typer.Option(None, "--quantize", help="int8 or int4: weight-only quantised linear layers (torch backend)."),
    ),
    "compile": (
        bool,
        typer.Option(
            False, "--compile",
            help="torch.compile the llmkit forward (torch backend); cached on disk, so only the first start compiles.",
        ),
    ),
}

SAMPLING_OPTIONS: OptionGroup = {
    "max_new_tokens": (int, typer.Option(512, "--max-new-tokens", "-n", help="Most tokens to generate.")),
    "temperature": (
        Optional[float],
        typer.Option(
            None, "--temperature", "-t",
            help="0 means greedy decoding, which ignores --top-p, --top-k and --min-p " + MODEL_DEFAULT
            + " (0.2 for the default model, as its card advises; greedy with --num-beams).",
        ),
    ),
    "top_p": (Optional[float], typer.Option(None, "--top-p", help="Nucleus sampling probability mass " + MODEL_DEFAULT
                                            + " (0.9 for the default model).")),
    "top_k": (Optional[int], typer.Option(None, "--top-k", help="Keep the k most likely tokens, 0: off " + MODEL_DEFAULT
                                          + ".")),
    "min_p": (Optional[float], typer.Option(None, "--min-p", help="Drop tokens below min_p x the top probability "
                                            + MODEL_DEFAULT + ".")),
    "repetition_penalty": (Optional[float], typer.Option(None, "--repetition-penalty", help="HF-style penalty, 1: off "
                                                         + MODEL_DEFAULT + ".")),
    "presence_penalty": (float, typer.Option(0.0, "--presence-penalty", help="OpenAI-style, -2..2.")),
    "frequency_penalty": (float, typer.Option(0.0, "--frequency-penalty", help="OpenAI-style, -2..2.")),
    "no_repeat_ngram_size": (int, typer.Option(0, "--no-repeat-ngram-size", help="Forbid repeated n-grams.")),
    "num_beams": (int, typer.Option(1, "--num-beams", help="Beam search width (1: off).")),
    "stop": (Optional[list[str]], typer.Option(None, "--stop", help="Stop string (repeatable).")),
    "seed": (Optional[int], typer.Option(None, "--seed", help="Seed for reproducible sampling.")),
}


def add_options(group: OptionGroup, *, into: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the flags of `group`; it receives their values as the dict argument `into`."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.name != into]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
            for name, (annotation, option) in group.items()
        ]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in group}
            return command(**kwargs, **{into: values})

        wrapper.__signature__ = signature.replace(parameters=own + added)
        return wrapper

    return decorate


def to_sampling_kwargs(options: dict[str, Any], defaults: Mapping[str, float] = NEUTRAL) -> dict[str, Any]:
    """CLI sampling flags -> `SamplingParams` keywords, over the model's `defaults` (see `resolve_sampling`)."""
    return resolve_sampling(options, defaults)
