"""`llmkit run`: a task pipeline over a file of records, with a progress bar, a trace file, resume and `--eval`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape
from rich.table import Table

from llmkit.cli.console import console, err_console
from llmkit.cli.data_generate import GenerationBar

if TYPE_CHECKING:
    from llmkit.api import LLM
    from llmkit.pipeline import EvalReport, RunSummary
    from llmkit.pipeline.config import ModelConfig


def run(
    pipeline: Path = typer.Argument(..., help="Pipeline YAML: the model, and tasks (match, messages, post-process)."),
    input_path: Path = typer.Option(..., "--input", "-i", help="Records: .jsonl, .json, .csv, .parquet or a folder."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o",
        help="Records with predictions (JSONL); a re-run resumes it \\[default: INPUT_STEM.out.jsonl in the current folder].",
    ),
    trace: Optional[Path] = typer.Option(
        None, "--trace", help="JSONL trace, a line per record \\[default: OUTPUT.trace.jsonl]."
    ),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", "-c", min=1, help="Records in flight at once."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Only the first N records of the input."),
    evaluate: bool = typer.Option(False, "--eval", help="Score the predictions against the reference field, per task."),
) -> None:
    """Route each record to its task, ask the model, post-process the answer; re-running resumes where it stopped."""
    from llmkit.pipeline import evaluate as score
    from llmkit.pipeline import load_pipeline, run_pipeline
    from llmkit.pipeline.client import open_client

    config = load_pipeline(pipeline)
    output = output or Path(f"{input_path.stem}.out.jsonl")
    loaded: list[LLM] = []  # the in-process model, if the pipeline runs one: its prefix cache goes in the summary

    def load_llm(model: ModelConfig) -> LLM:
        loaded.append(_load_llm(model))
        return loaded[-1]

    with GenerationBar() as bar:
        summary = run_pipeline(
            config, input_path, output, trace=trace, concurrency=concurrency, limit=limit, on_progress=bar,
            connect=lambda: open_client(config.model, load_llm=load_llm),
        )
    render_summary(summary)
    prefix_cache = loaded[0].engine.runner.prefix_cache if loaded else None
    if prefix_cache is not None and prefix_cache.stats.queried_tokens:
        stats = prefix_cache.stats
        console.print(f"prefix cache: {stats.hit_tokens} of {stats.queried_tokens} prompt tokens reused "
                      f"({stats.hit_rate:.0%})")
    if evaluate:
        render_report(score(config, output))
    if summary.failed:
        raise typer.Exit(1)


def _load_llm(model: ModelConfig) -> LLM:
    """The in-process model, loaded with a spinner on stderr."""
    from llmkit.cli.model_loading import build_llm

    options = {"model": model.name, "max_seq_len": model.max_seq_len, "dtype": model.dtype, "device": model.device,
               "chat_template": None, "backend": model.backend, "quantize": model.quantize,
               "compile": model.compile}
    return build_llm(options, model.max_batch_size)


def render_summary(summary: RunSummary) -> None:
    """What the run wrote, to which tasks, the tokens it spent, and its first failure."""
    console.print(f"[green]{summary.already_done + summary.done}/{summary.total} records[/] in "
                  f"{escape(str(summary.output))} · trace {escape(str(summary.trace))}")
    tasks = ", ".join(f"{name} {count}" for name, count in summary.tasks.most_common()) or "-"
    console.print(f"new: {summary.done} ({escape(tasks)}) · from earlier runs: {summary.already_done} · "
                  f"model: {escape(summary.model or '-')} · {summary.seconds:.1f} s")
    console.print(f"tokens: {summary.prompt_tokens} prompt + {summary.completion_tokens} completion")
    if summary.files:
        console.print(f"wrote {escape(', '.join(map(str, summary.files)))}")
    if summary.failed:
        console.print(f"[yellow]{summary.failed} records failed[/] (first: {escape(summary.first_error or '')}); "
                      "their trace lines say why; re-run the same command to try them again")


def render_report(report: EvalReport) -> None:
    """The per-task table, with the mean over tasks, and the records that could not be scored."""
    table = Table("task", "metric", "records", "score", title="evaluation")
    for row in report.tasks:
        table.add_row(escape(row.task), escape(row.metric), str(row.records), f"{row.score:.4f}")
    if report.tasks:
        table.add_section()
        table.add_row("mean over tasks", "", str(sum(row.records for row in report.tasks)), f"{report.overall:.4f}")
    console.print(table)
    for reason, count in report.unscored.most_common():
        err_console.print(f"[yellow]not scored[/]: {count} records: {escape(reason)}")
