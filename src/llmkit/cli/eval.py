"""`llmkit eval`: score models on held-out data and write reports to read and share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from llmkit.cli.console import console, err_console

if TYPE_CHECKING:
    from llmkit.api import LLM
    from llmkit.eval.compare import AnswerProgress

app = typer.Typer(help="Evaluate models on held-out data.", no_args_is_help=True)


@app.command("compare")
def compare(
    base: str = typer.Option("default", "--base", help="The model to compare against: name, path or hub id."),
    tuned: str = typer.Option(..., "--tuned", help="The fine-tuned model: a llmkit train output dir, path or name."),
    data: str = typer.Option(..., "--data", help="Held-out data: a file or folder, or a registered dataset name."),
    dataset_dir: Path = typer.Option(Path("."), "--dataset-dir", help="Folder of datasets.yaml or dataset_info.json."),
    metric: list[str] = typer.Option(
        ["exact", "rouge_l"], "--metric", help="exact, rouge_l, package.module:function or file.py:function (repeat)."
    ),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", "-n", min=1, help="Most tokens per answer."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", min=1, help="Use the first N usable records."),
    out: Path = typer.Option(Path("eval/compare"), "--out", "-o", help="Output folder; a re-run resumes in it."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Answer held-out prompts greedily with BASE and TUNED, score both, write report.md and report.html."""
    from llmkit.cli.model_loading import build_llm
    from llmkit.eval.compare import compare as run_compare
    from llmkit.eval.report import summary_header, summary_rows

    def load(model: str) -> LLM:
        options = dict(model=model, dtype=dtype, device=device, max_seq_len=2048, chat_template=None, backend="torch")
        return build_llm(options)

    with answer_progress() as progress:
        result = run_compare(
            base, tuned, data, out, dataset_dir=dataset_dir, metrics=metric,
            max_new_tokens=max_new_tokens, max_samples=max_samples, load_model=load, progress=progress,
        )
    for skipped in result.skipped[:20]:
        err_console.print(f"[yellow]skipped[/] {escape(str(skipped))}")
    if len(result.skipped) > 20:
        err_console.print(f"[yellow]… and {len(result.skipped) - 20} more skipped records[/]")
    table = Table(*summary_header(result.report), title=f"{len(result.report.samples)} records")
    for row in summary_rows(result.report):
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)
    console.print("new answers: " + ", ".join(f"{role} {count}" for role, count in result.generated.items()))
    console.print(f"report: {result.files['markdown']} · {result.files['html']}", markup=False)


@contextmanager
def answer_progress() -> Iterator[AnswerProgress]:
    """A progress bar per model, fed by `compare`'s (role, answered, total) callback; each stops when done,
    so the next model's loading spinner has the terminal to itself."""
    bars: dict[str, tuple[Progress, TaskID]] = {}

    def update(role: str, done: int, total: int) -> None:
        if role not in bars:
            bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=err_console,
            )
            bar.start()
            bars[role] = bar, bar.add_task(f"{role} answers", total=total)
        bar, task = bars[role]
        bar.update(task, completed=done)
        if done == total:
            bar.stop()

    try:
        yield update
    finally:
        for bar, _ in bars.values():
            bar.stop()
