"""`llmkit download`, `llmkit models [list|show|rm]`, `llmkit estimate`: thin wrappers over `llmkit.hub`."""

from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmkit import hub as hub_lib
from llmkit.hub.download import RepoType
from llmkit.hub.paths import hub_cache_dir
from llmkit.cli.console import console, err_console


def download(
    model_id: str = typer.Argument(
        ...,
        help="Hub id (org/name; org/name:Q4_K_M for one quantisation of a GGUF repository), modelscope:org/name, "
        "a known name (default, gemma3-270m) or a .gguf path.",
    ),
    filenames: Optional[list[str]] = typer.Argument(
        None, help="Files of the Hub repository to fetch (a trailing / names a folder), as in `hf download`."
    ),
    include: Optional[list[str]] = typer.Option(
        None, "--include", help="Glob of Hub files to fetch, e.g. '*Q4_K_M*' (repeatable)."
    ),
    exclude: Optional[list[str]] = typer.Option(
        None, "--exclude", help="Glob of Hub files to skip, e.g. '*.bin' (repeatable)."
    ),
    repo_type: RepoType = typer.Option("model", "--repo-type", help="Hub repository type: model, dataset or space."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch, tag or commit to download."),
    token: Optional[str] = typer.Option(
        None, "--token",
        help="Hugging Face token for gated or private repositories (default: $HF_TOKEN or `hf auth login`).",
    ),
    endpoint: Optional[str] = typer.Option(
        None, "--endpoint", help="Hub endpoint or mirror (default: $HF_ENDPOINT, else huggingface.co)."
    ),
    local_dir: Optional[Path] = typer.Option(
        None, "--local-dir", help="Put the files in this folder instead of the Hugging Face cache."
    ),
) -> None:
    """Download a model (resuming a partial download; a GGUF repository gives one quantisation) and print where."""
    with conversion_progress() as progress:
        path = hub_lib.download(
            model_id, filenames=filenames or (), include=include or (), exclude=exclude or (), repo_type=repo_type,
            revision=revision, token=token, endpoint=endpoint, local_dir=local_dir, progress=progress,
        )
    console.print(f"[green]ready:[/] {model_id} → {path}")


models_app = typer.Typer(help="List, show and remove models.", no_args_is_help=False)


@models_app.callback(invoke_without_command=True)
def models(ctx: typer.Context) -> None:
    """List known, converted and downloaded models; `show NAME` and `rm NAME` act on one."""
    if ctx.invoked_subcommand is None:
        list_models()


@models_app.command("list")
def list_models() -> None:
    """List known, converted and downloaded models (the Hugging Face cache's included)."""
    table = Table(title=f"models in {hub_lib.home()} and {hub_cache_dir()}")
    for column in ("name", "source", "cached", "size", "architecture", "parameters"):
        # Fold rather than truncate: names and sources are things users copy.
        table.add_column(
            column,
            justify="right" if column in ("size", "parameters") else "left",
            overflow="fold",
            no_wrap=column == "name",
        )
    for info in hub_lib.list_models():
        table.add_row(
            info.name,
            info.source,
            "yes" if info.cached else "no",
            human_bytes(info.size_bytes),
            info.architecture or "-",
            human_count(info.num_parameters),
        )
    console.print(table)


@models_app.command("show")
def show(name: str = typer.Argument(..., help="A name as `llmkit models` lists it, or a local model path.")) -> None:
    """Show one model: where it lives, its size on disk, architecture, parameters and chat template."""
    info = hub_lib.find_model(name)
    table = Table(show_header=False, title=info.name)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    template = {True: "yes", False: "no (pass --chat-template FILE to chat)", None: "unknown"}[info.chat_template]
    for label, value in (
        ("source", info.source),
        ("location", str(info.path) if info.path else "not converted yet (the first load converts it)"),
        ("size on disk", human_bytes(info.size_bytes)),
        ("architecture", info.architecture or "-"),
        ("parameters", human_count(info.num_parameters)),
        ("chat template", template),
    ):
        table.add_row(label, value)
    console.print(table)


@models_app.command("rm")
def remove(
    name: str = typer.Argument(..., help="A Hub download or converted GGUF, as `llmkit models` lists it."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Remove without asking."),
) -> None:
    """Remove a downloaded or converted model from the caches, after confirming."""
    info = hub_lib.find_model(name)
    hub_lib.check_removable(info)
    if not yes and not typer.confirm(f"remove {info.name} ({human_bytes(info.size_bytes)}) from {info.path}?"):
        err_console.print("nothing removed")
        return
    for folder in hub_lib.remove_model(info):
        console.print(f"[green]removed:[/] {folder}")


def estimate(
    name: str = typer.Argument(..., help="A model name, path or hub id, or a size such as 7b, 135m, 0.5b."),
    dtype: str = typer.Option("bf16", "--dtype", help="Weight dtype: bf16, fp16, fp32, int8 or int4."),
    context: int = typer.Option(4096, "--context", help="Tokens of context to hold in the KV cache."),
    batch: int = typer.Option(1, "--batch", help="Sequences decoded at once."),
) -> None:
    """Estimate the memory to run a model: weights plus KV cache."""
    result = hub_lib.estimate_memory(name, dtype=dtype, context=context, batch=batch)
    table = Table(title=f"{result.name} in {result.dtype}, context {result.context}, batch {result.batch}")
    table.add_column("part")
    table.add_column("memory", justify="right")
    table.add_row(f"weights ({human_count(result.num_parameters)} parameters)", human_bytes(result.weights_bytes))
    table.add_row("KV cache", human_bytes(result.kv_cache_bytes))
    table.add_row("[bold]total[/]", f"[bold]{human_bytes(result.total_bytes)}[/]")
    console.print(table)
    console.print(f"[dim]{result.note}; activations and runtime overhead not included[/]")


@contextmanager
def conversion_progress() -> Iterator[hub_lib.ProgressCallback]:
    """A rich progress bar fed by the hub's (step, done, total) callback; shown only once a step is reported."""
    bar = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err_console
    )
    task = None

    def update(step: str, done: int, total: int) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("converting GGUF", total=total)
        bar.update(task, completed=done, description=f"converting GGUF: {step}")

    try:
        yield update
    finally:
        if task is not None:
            bar.stop()


def human_bytes(size: int | None) -> str:
    """Bytes as a short decimal string: 1.2 GB, 540 MB."""
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return "-"


def human_count(count: int | None) -> str:
    """A parameter count as 135M, 7.0B."""
    if count is None:
        return "-"
    if count >= 1e9:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.0f}M" if count >= 1e6 else str(count)
