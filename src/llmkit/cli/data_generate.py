"""`llmkit data generate`: write JSON records with an LLM from a YAML spec, with a progress bar and a summary."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from llmkit.cli.console import console, err_console

if TYPE_CHECKING:
    from llmkit.datagen.generate import GenerationProgress, GenerationSummary


def generate(
    spec: Path = typer.Argument(..., help="YAML spec: endpoint, prompt template, randomised fields, count, output."),
    count: Optional[int] = typer.Option(None, "--count", "-n", min=1, help="How many records the output should hold."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="JSONL file to write or resume (default: the spec's output)."
    ),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", "-c", min=1, help="Requests in flight at once."),
) -> None:
    """Generate JSON records through an OpenAI-compatible endpoint; re-running resumes where it stopped."""
    from llmkit.datagen.generate import generate as run
    from llmkit.datagen.spec import load_spec

    overrides = {"count": count, "output": output.absolute() if output else None, "concurrency": concurrency}
    settings = load_spec(spec, overrides)
    with GenerationBar() as bar:
        summary = run(settings, on_progress=bar, on_status=lambda note: err_console.print(f"[dim]{escape(note)}[/]"))
    render(summary)
    if summary.failed:
        raise typer.Exit(1)


class GenerationBar:
    """A progress bar on stderr fed by `generate`'s reports: records done / wanted, failed, rate and ETA."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("[bold]records"), BarColumn(), MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed"), TextColumn("{task.fields[pace]}"), console=err_console,
        )
        self.task: TaskID | None = None
        self.earlier = 0  # records from earlier runs: they fill the bar but do not count towards the rate

    def __call__(self, state: GenerationProgress) -> None:
        if self.task is None:  # shown from the first report, after any "starting the server" lines
            self.earlier = state.done
            self.task = self.bar.add_task("records", total=state.total, completed=state.done, failed=0, pace="")
            self.bar.start()
        seconds = self.bar.tasks[0].elapsed or 0.0
        pace = _pace(state.done - self.earlier, state.total - state.done - state.failed, seconds)
        self.bar.update(self.task, completed=state.done, failed=state.failed, pace=pace)

    def __enter__(self) -> GenerationBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.stop()


def _pace(new: int, left: int, seconds: float) -> str:
    """'12.0/min · ETA 0:03:10' from the records made so far in this run (records arrive in bursts; rich's
    moving-window speed swings wildly between them)."""
    if not new or not seconds:
        return ""
    rate = new / seconds
    return f"{rate * 60:.1f}/min · ETA {timedelta(seconds=round(left / rate))}"


def render(summary: GenerationSummary) -> None:
    """What the run wrote, the tokens it spent, and its failures and retries by cause."""
    console.print(f"[green]{summary.already_done + summary.done}/{summary.total} records[/] in "
                  f"{escape(str(summary.output))}")
    console.print(f"new: {summary.done} · from earlier runs: {summary.already_done} · model: "
                  f"{escape(summary.model or '-')} · {summary.seconds:.1f} s")
    tokens = summary.prompt_tokens + summary.completion_tokens
    console.print(f"tokens: {summary.prompt_tokens} prompt + {summary.completion_tokens} completion = {tokens}")
    causes = sorted(set(summary.failed) | set(summary.retried))
    if not causes:
        return
    table = Table("cause", "failed records", "retried attempts", "first error", title="failures by cause")
    for cause in causes:
        table.add_row(cause, str(summary.failed[cause]), str(summary.retried[cause]),
                      escape(summary.first_error.get(cause, "")[:120]))
    console.print(table)
    if summary.failed:
        failed = sum(summary.failed.values())
        console.print(f"[yellow]{failed} records failed[/]: see {escape(str(summary.failed_output))}; "
                      "re-run the same command to try them again")
