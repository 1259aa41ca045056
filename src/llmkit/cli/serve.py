"""`llmkit serve`: the OpenAI-compatible server (FastAPI + uvicorn) for one model.

It also takes `vllm serve`'s spellings: the model as first argument and vLLM's flag names as aliases of ours
(docs/serving.md has the two side by side).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import typer

from llmkit.cli.console import err_console, log_to_stderr
from llmkit.cli.listen import UvicornLogLevel, bind, run_server
from llmkit.cli.model_loading import build_llm
from llmkit.cli.options import MODEL_OPTIONS, add_options
from llmkit.engine.backends import BackendChoice
from llmkit.engine.sampling_defaults import check_generation_config
from llmkit.errors import LLMKitError
from llmkit.models.tool_parsers import PARSERS, pick_tool_parser, tool_parser

NAME_PATH = ("name", "path")  # the keys of vLLM's JSON --lora-modules


class ServeOptionError(LLMKitError):
    """A `llmkit serve` flag whose value cannot be used (a malformed NAME=PATH, two different models, ...)."""


def _also(option: tuple[Any, Any], *names: str) -> tuple[Any, Any]:
    """An option of `MODEL_OPTIONS` that also answers to `names` (vLLM's spelling of the same flag)."""
    annotation, info = option
    info = copy.copy(info)
    info.param_decls = (*info.param_decls, *names)
    return annotation, info


SERVE_MODEL_OPTIONS = {name: option for name, option in MODEL_OPTIONS.items() if name != "adapter"}
SERVE_MODEL_OPTIONS["model"] = (
    Optional[str],
    typer.Option(
        None, "--model", "-m", show_default=False,
        help="Model name, local path, .gguf file or hub id, also given as the first argument (as vllm serve MODEL); "
        "default: the embedded model.",
    ),
)
SERVE_MODEL_OPTIONS["max_seq_len"] = _also(MODEL_OPTIONS["max_seq_len"], "--max-model-len")
SERVE_MODEL_OPTIONS["chat_template"] = (
    Optional[str],
    typer.Option(
        None, "--chat-template", help="Jinja chat template, for models without one: a file, or the template itself."
    ),
)
SERVE_MODEL_OPTIONS["backend"] = (
    str,
    typer.Option(
        "auto", "--backend",
        help="auto (vllm on a CUDA machine that has it; llamacpp for a GGUF model when installed and nothing needs "
        "torch; else torch), torch, llamacpp (GGUF on CPU) or vllm (GPU; needs vllm installed).",
    ),
)


@add_options(SERVE_MODEL_OPTIONS, into="model_options")
def serve(
    positional_model: Optional[str] = typer.Argument(
        None, metavar="MODEL", show_default=False, help="The model to serve, as --model says."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0 exposes the server)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: Optional[str] = typer.Option(
        None, "--api-key", envvar="LLMKIT_API_KEY", help="Require 'Authorization: Bearer KEY' on /v1 routes."
    ),
    served_model_name: Optional[str] = typer.Option(
        None, "--served-model-name", help="Model id clients send (default: the --model value)."
    ),
    adapter: Optional[list[str]] = typer.Option(
        None, "--adapter", "--lora-modules",
        help='Serve a LoRA adapter directory as model NAME: NAME=PATH, PATH, or {"name": NAME, "path": PATH} '
        "(repeatable).",
    ),
    max_batch_size: int = typer.Option(8, "--max-batch-size", "--max-num-seqs", help="Sequences decoded together."),
    max_queue: int = typer.Option(256, "--max-queue", help="Requests in flight before 429."),
    cors_origin: Optional[list[str]] = typer.Option(
        None, "--cors-origin", "--allowed-origins",
        help='Allowed CORS origin (repeatable; also a comma list or a JSON list, as vLLM: \'["https://a.example"]\').',
    ),
    generation_config: str = typer.Option(
        "auto", "--generation-config",
        help="Sampling defaults: auto (the model's generation_config.json), vllm (vLLM's neutral defaults), or a "
        "folder holding a generation_config.json.",
    ),
    uvicorn_log_level: UvicornLogLevel = typer.Option(
        "warning", "--uvicorn-log-level", help="uvicorn's own log level (info adds its access log)."
    ),
    rag_store: Optional[str] = typer.Option(
        None, "--rag-store", help="Knowledge bases for /v1/rag and rag:{kb} models: a folder or PostgreSQL URL."
    ),
    safety: Optional[Path] = typer.Option(
        None, "--safety", help="Safety policy YAML: check inputs and answers, serve /v1/moderations."
    ),
    tool_call_parser: Optional[str] = typer.Option(
        None, "--tool-call-parser",
        help=f"The format the model writes tool calls in (vLLM's names): {', '.join(PARSERS)}; default: the one "
        "its chat template writes.",
    ),
    enable_auto_tool_choice: bool = typer.Option(
        False, "--enable-auto-tool-choice",
        help='Accepted as vLLM spells it: tool_choice "auto" is always on here, so vLLM command lines work as they are.',
    ),
    model_options: dict[str, Any] = None,
) -> None:
    """Serve a model over OpenAI's HTTP API (chat, completions, streaming) with continuous batching."""
    model_options = {
        **model_options, "model": _model(positional_model, model_options["model"]),
        "generation_config": generation_config,
    }
    check_generation_config(generation_config)
    adapters = dict(_parse_adapter(spec) for spec in adapter or ())
    origins = _origins(cors_origin or ())
    if tool_call_parser is not None:
        tool_parser(tool_call_parser)  # an unknown name fails before the model loads
    sock = bind(host, port)  # before the model loads: a taken port fails at once

    from llmkit.safety import load_policy
    from llmkit.serve import create_app

    policy = load_policy(safety) if safety is not None else None
    model_id = served_model_name or model_options["model"]
    backend = _backend(model_options, bool(adapters))
    model_options = {**model_options, "backend": backend.name}
    if backend.name == "vllm":
        served = _vllm_engine(model_options, adapters, max_batch_size, max_queue)
        context, runs = model_options["max_seq_len"], "vllm"
    else:
        served = llm = build_llm(model_options, max_batch_size)
        for name, path in adapters.items():
            llm.engine.load_adapter(name, path)
        pick_tool_parser(llm.tokenizer.chat_template, tool_call_parser)  # one line now, not a failed start-up
        context, runs = llm.engine.max_seq_len, llm.engine.runner.backend_name
    app = create_app(
        served, model_id=model_id, api_key=api_key, max_queue=max_queue, cors_origins=origins,
        rag_store=rag_store, safety=policy, tool_call_parser=tool_call_parser,
    )
    log_to_stderr("llmkit.serve", "llmkit.safety", format="%(asctime)s %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    err_console.print(f"serving [bold]{model_id}[/] at [bold]http://{host}:{port}/v1[/]"
                      f"{' (API key required)' if api_key else ''}")
    err_console.print(f"[dim]models: {', '.join([model_id, *adapters])} · {runs} ({backend.reason}) · "
                      f"max batch {max_batch_size} · context {context}"
                      f"{f' · safety policy {safety} ({policy.mode})' if policy else ''}[/]")
    run_server(app, sock, uvicorn_log_level)


def _backend(options: dict[str, Any], adapters: bool) -> BackendChoice:
    """The backend `--backend` resolves to for this model and these options (see `llmkit.api.pick_backend`)."""
    from llmkit.api import pick_backend

    return pick_backend(
        options["backend"], options["model"], dtype=options["dtype"], device=options["device"],
        adapter=adapters or None, quantize=options["quantize"], compile=options["compile"], serving=True,
    )


def _vllm_engine(options: dict[str, Any], adapters: dict[str, Path], max_batch_size: int, max_queue: int):
    """A function that starts vLLM on the model's local directory, called when the app starts (in its event loop)."""
    from llmkit.hub import resolve
    from llmkit.models.chat_template import load_chat_template
    from llmkit.serve.vllm_engine import VllmEngine, require_vllm

    require_vllm()  # fail now, with one clear line, rather than when uvicorn starts the app
    directory = resolve(options["model"])
    template = load_chat_template(options["chat_template"]) if options["chat_template"] is not None else None

    def start() -> VllmEngine:
        engine = VllmEngine.start(
            directory, max_seq_len=options["max_seq_len"], max_batch_size=max_batch_size, dtype=options["dtype"],
            max_queue=max_queue, adapters=adapters, generation_config=options["generation_config"],
        )
        if template is not None:
            engine.tokenizer.chat_template = template
        return engine

    return start


def _model(positional: str | None, option: str | None) -> str:
    """The model to serve: given first (as `vllm serve MODEL`) or with --model, the embedded one if neither."""
    if positional and option and positional != option:
        raise ServeOptionError(f"two models given, {positional} (first argument) and {option} (--model): give one")
    return positional or option or "default"


def _parse_adapter(spec: str) -> tuple[str, Path]:
    """`NAME=PATH` or vLLM's `{"name": NAME, "path": PATH}` -> (NAME, PATH); a bare PATH is named after its
    directory."""
    if spec.lstrip().startswith("{"):
        return _json_adapter(spec)
    name, sep, path = spec.partition("=")
    if not sep:
        return Path(spec).name, Path(spec)
    if not name or not path:
        raise ServeOptionError(f"--adapter {spec!r}: write NAME=PATH (or just PATH)")
    return name, Path(path)


def _json_adapter(spec: str) -> tuple[str, Path]:
    """vLLM's JSON form of `--lora-modules`: {"name": NAME, "path": PATH}."""
    try:
        fields = json.loads(spec)
    except json.JSONDecodeError as error:
        raise ServeOptionError(f"--lora-modules {spec!r}: not JSON ({error.msg}): write NAME=PATH") from None
    if not isinstance(fields, dict) or not all(isinstance(fields.get(key), str) and fields[key] for key in NAME_PATH):
        raise ServeOptionError(f'--lora-modules {spec!r}: write {{"name": NAME, "path": PATH}} or NAME=PATH')
    unknown = sorted(set(fields) - set(NAME_PATH))
    if unknown:
        raise ServeOptionError(f"--lora-modules {spec!r}: {', '.join(unknown)} is not read here: give name and path")
    return fields["name"], Path(fields["path"])


def _origins(values: Sequence[str]) -> list[str]:
    """CORS origins from repeated flags, each one origin, a comma list, or a JSON list (vLLM's --allowed-origins)."""
    origins = []
    for value in values:
        if value.lstrip().startswith("["):
            try:
                listed = json.loads(value)
            except json.JSONDecodeError as error:
                raise ServeOptionError(f"--allowed-origins {value!r}: not a JSON list ({error.msg})") from None
            if not all(isinstance(origin, str) for origin in listed):
                raise ServeOptionError(f"--allowed-origins {value!r}: list origins as strings")
            origins += listed
        else:
            origins += [origin.strip() for origin in value.split(",") if origin.strip()]
    return origins

