"""`llmkit export`: merge a LoRA adapter into its base model and write safetensors (+ GGUF) to a new folder."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmkit.cli.console import console, err_console
from llmkit.cli.hub import human_bytes
from llmkit.cli.model_loading import quiet_transformers
from llmkit.hub import ProgressCallback

if TYPE_CHECKING:
    from llmkit.train.export import ExportResult


def export(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write; it must be new or empty (see --overwrite)."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Base model: name, local path, .gguf file or hub id (default: the adapter's base)."
    ),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="LoRA adapter directory to merge (PEFT)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (the base's own), float32, bfloat16 or float16."),
    gguf: Optional[str] = typer.Option(None, "--gguf", help="Also write model.gguf for llama.cpp: f32, f16 or q8_0."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the contents of a non-empty --out folder."),
) -> None:
    """Merge --adapter into --model and write a standalone model folder (safetensors, tokenizer, card, GGUF)."""
    # Imported here, not at the top: it pulls in torch, the training package and gguf, which other commands
    # do without.
    from llmkit.train.export import export_model

    quiet_transformers()
    # PEFT trips transformers' deprecation warnings while attaching adapters; a user can do nothing about them.
    with export_progress() as progress, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        result = export_model(
            model, out, adapter=adapter, dtype=dtype, gguf=gguf, overwrite=overwrite, progress=progress
        )
    render(result)


@contextmanager
def export_progress() -> Iterator[ProgressCallback]:
    """A transient progress bar on stderr, fed by the export's (step, done, total) callback from its first step."""
    bar = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
        console=err_console, transient=True,
    )
    task = bar.add_task("exporting")

    def update(step: str, done: int, total: int) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=total, description=f"exporting: {step}")

    try:
        yield update
    finally:
        bar.stop()


def render(result: ExportResult) -> None:
    """The files written with their sizes, under a line saying what was exported where."""
    made = f"{result.base_model} + {result.adapter}" if result.adapter else result.base_model
    console.print(f"[green]exported[/] {made} → {result.out} ({result.dtype})")
    table = Table(show_header=True, box=None)
    table.add_column("file")
    table.add_column("size", justify="right")
    for name, size in result.files.items():
        table.add_row(name, human_bytes(size))
    table.add_row("[bold]total[/]", f"[bold]{human_bytes(result.total_bytes)}[/]")
    console.print(table)
