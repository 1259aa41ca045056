"""`llmkit serve`: the OpenAI-compatible server (FastAPI + uvicorn) for one model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from llmkit.cli.console import err_console, log_to_stderr
from llmkit.cli.listen import bind, run_server
from llmkit.cli.model_loading import build_llm
from llmkit.cli.options import MODEL_OPTIONS, add_options
from llmkit.engine.backends import BackendChoice


SERVE_MODEL_OPTIONS = {name: option for name, option in MODEL_OPTIONS.items() if name not in ("adapter", "backend")}
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
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0 exposes the server)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: Optional[str] = typer.Option(
        None, "--api-key", envvar="LLMKIT_API_KEY", help="Require 'Authorization: Bearer KEY' on /v1 routes."
    ),
    served_model_name: Optional[str] = typer.Option(
        None, "--served-model-name", help="Model id clients send (default: the --model value)."
    ),
    adapter: Optional[list[str]] = typer.Option(
        None, "--adapter", help="Serve a LoRA adapter directory as model NAME: NAME=PATH, or PATH (repeatable)."
    ),
    max_batch_size: int = typer.Option(8, "--max-batch-size", help="Sequences decoded together."),
    max_queue: int = typer.Option(256, "--max-queue", help="Requests in flight before 429."),
    cors_origin: Optional[list[str]] = typer.Option(None, "--cors-origin", help="Allowed CORS origin (repeatable)."),
    rag_store: Optional[str] = typer.Option(
        None, "--rag-store", help="Knowledge bases for /v1/rag and rag:{kb} models: a folder or PostgreSQL URL."
    ),
    safety: Optional[Path] = typer.Option(
        None, "--safety", help="Safety policy YAML: check inputs and answers, serve /v1/moderations."
    ),
    model_options: dict[str, Any] = None,
) -> None:
    """Serve a model over OpenAI's HTTP API (chat, completions, streaming) with continuous batching."""
    sock = bind(host, port)  # before the model loads: a taken port fails at once

    from llmkit.safety import load_policy
    from llmkit.serve import create_app

    policy = load_policy(safety) if safety is not None else None
    adapters = dict(_parse_adapter(spec) for spec in adapter or ())
    model_id = served_model_name or model_options["model"]
    backend = _backend(model_options, bool(adapters))
    model_options = {**model_options, "backend": backend.name}
    if backend.name == "vllm":
        engine = _vllm_engine(model_options, adapters, max_batch_size, max_queue)
        context = model_options["max_seq_len"]
    else:
        engine = build_llm(model_options, max_batch_size)
        for name, path in adapters.items():
            engine.engine.load_adapter(name, path)
        context = engine.engine.max_seq_len
    app = create_app(
        engine, model_id=model_id, api_key=api_key, max_queue=max_queue, cors_origins=cors_origin or (),
        rag_store=rag_store, safety=policy,
    )
    log_to_stderr("llmkit.serve", "llmkit.safety", format="%(asctime)s %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    err_console.print(f"serving [bold]{model_id}[/] at [bold]http://{host}:{port}/v1[/]"
                      f"{' (API key required)' if api_key else ''}")
    err_console.print(f"[dim]models: {', '.join([model_id, *adapters])} · {backend.name} backend ({backend.reason}) · "
                      f"max batch {max_batch_size} · context {context}"
                      f"{f' · safety policy {safety} ({policy.mode})' if policy else ''}[/]")
    run_server(app, sock)


def _backend(options: dict[str, Any], adapters: bool) -> BackendChoice:
    """The backend `--backend` resolves to for this model and these options (see `llmkit.api.pick_backend`)."""
    from llmkit.api import pick_backend

    return pick_backend(
        options["backend"], options["model"], dtype=options["dtype"], device=options["device"],
        adapter=adapters or None, quantize=options["quantize"], serving=True,
    )


def _vllm_engine(options: dict[str, Any], adapters: dict[str, Path], max_batch_size: int, max_queue: int):
    """A function that starts vLLM on the model's local directory, called when the app starts (in its event loop)."""
    from llmkit.hub import resolve
    from llmkit.serve.vllm_engine import VllmEngine, require_vllm

    require_vllm()  # fail now, with one clear line, rather than when uvicorn starts the app
    directory = resolve(options["model"])

    def start() -> VllmEngine:
        engine = VllmEngine.start(
            directory, max_seq_len=options["max_seq_len"], max_batch_size=max_batch_size, dtype=options["dtype"],
            max_queue=max_queue, adapters=adapters,
        )
        if options["chat_template"] is not None:
            engine.tokenizer.chat_template = Path(options["chat_template"]).read_text(encoding="utf-8")
        return engine

    return start


def _parse_adapter(spec: str) -> tuple[str, Path]:
    """`NAME=PATH` -> (NAME, PATH); a bare PATH is named after its directory."""
    name, sep, path = spec.partition("=")
    if not sep:
        return Path(spec).name, Path(spec)
    if not name or not path:
        raise typer.BadParameter(f"{spec!r}: write NAME=PATH (or just PATH)", param_hint="--adapter")
    return name, Path(path)
