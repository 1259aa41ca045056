"""`llmkit safety eval`: measure a safety policy on labelled prompts, per category."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from llmkit.cli.console import console
from llmkit.cli.eval import answer_progress, print_table

if TYPE_CHECKING:
    from llmkit.safety.evaluate import Counts

app = typer.Typer(help="Measure safety policies (see docs/safety.md).", no_args_is_help=True)
SHOWN_MISTAKES = 5


@app.command("eval")
def evaluate(
    data: Path = typer.Option(..., "--data", help="Labelled prompts: .jsonl/.json/.csv of {prompt, unsafe, category}."),
    safety: Path = typer.Option(..., "--safety", help="The safety policy YAML to measure."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the counts and mistakes as JSON."),
) -> None:
    """Check every prompt as user input; per category, count unsafe prompts blocked and safe ones wrongly blocked."""
    from llmkit.jsonl import file_path
    from llmkit.safety import load_policy
    from llmkit.safety.evaluate import evaluate as run_evaluation
    from llmkit.safety.evaluate import read_prompts

    records = read_prompts(data)
    if out is not None:
        file_path(out)  # a directory is refused now, not after the evaluation
    policy = load_policy(safety)
    logging.getLogger("llmkit.safety").addHandler(logging.NullHandler())  # the mistakes are listed below instead
    logging.getLogger("llmkit.safety").propagate = False
    with answer_progress("prompts") as progress:
        result = run_evaluation(policy, records, lambda done, total: progress("checked", done, total))
    rows = [[name, *_cells(counts)] for name, counts in result.categories.items()]
    header = ["category", "unsafe", "blocked", "block rate", "safe", "wrongly blocked", "false-block rate"]
    print_table(header, [*rows, ["all", *_cells(result.total)]], f"{len(records)} prompts · {safety} ({policy.mode})")
    for title, mistakes in (("missed (unsafe, not blocked)", result.missed), ("wrongly blocked", result.wrongly_blocked)):
        if mistakes:
            console.print(f"[bold]{title}[/]: {len(mistakes)}")
            for mistake in mistakes[:SHOWN_MISTAKES]:
                console.print(f"  [{mistake['category']}] {mistake['prompt']!r}: {mistake['reason']}", markup=False)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        console.print(f"written: {out}", markup=False)


def _cells(counts: Counts) -> list[str]:
    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    return [str(counts.unsafe), str(counts.blocked), rate(counts.block_rate), str(counts.safe),
            str(counts.wrongly_blocked), rate(counts.false_block_rate)]
