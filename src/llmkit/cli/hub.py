"""`llmkit download`, `llmkit models`, `llmkit estimate`: thin wrappers over `llmkit.hub`."""

from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmkit import hub as hub_lib
from llmkit.cli.console import console, err_console


def download(
    model_id: str = typer.Argument(
        ..., help="Hub id (org/name), modelscope:org/name, a known name (default, gemma3-270m) or a .gguf path."
    ),
    endpoint: Optional[str] = typer.Option(
        None, "--endpoint", help="Hub endpoint or mirror (default: $HF_ENDPOINT, else huggingface.co)."
    ),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch, tag or commit to download."),
    local_dir: Optional[Path] = typer.Option(
        None, "--local-dir", help="Put the files in this folder instead of the llmkit cache."
    ),
) -> None:
    """Download a model (resuming a partial download) or convert a GGUF, and print where it is."""
    with conversion_progress() as progress:
        path = hub_lib.resolve(model_id, revision=revision, endpoint=endpoint, local_dir=local_dir, progress=progress)
    console.print(f"[green]ready:[/] {model_id} → {path}")


def models() -> None:
    """List known, converted and downloaded models."""
    table = Table(title=f"models in {hub_lib.home()}")
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
