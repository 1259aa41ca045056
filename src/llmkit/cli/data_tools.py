"""`llmkit data convert | merge | dedupe | split | stats`: shape, join, clean, split and measure a dataset."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Column, Table

from llmkit.cli.console import console, err_console
from llmkit.datagen.records import describe
from llmkit.train.readers import Row

INPUTS = typer.Argument(..., help="Data files or folders: .json (array or one object), .jsonl, .csv, .parquet, .txt.")
FIELDS = typer.Option(
    None, "--fields", help="Comma-separated field paths (a.b) whose text counts (default: all fields but _meta)."
)
SHOWN = 10  # problem rows printed before "… and N more"


def convert(
    inputs: list[Path] = INPUTS,
    output: Path = typer.Option(..., "--output", "-o", help="The training file to write (JSONL)."),
    format: str = typer.Option(
        "alpaca",
        "--format",
        "-f",
        help="alpaca (targets instruction, output; input, system), sharegpt (user, assistant; system) "
        "or preference (prompt, chosen, rejected; system).",
    ),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="YAML/JSON file: target field -> spec."),
    pairs: Optional[list[str]] = typer.Option(None, "--map", help="target=spec (repeatable; wins over --mapping)."),
    rejects: Optional[Path] = typer.Option(
        None, "--rejects", help="Where failed rows go (default: <output>.rejects.jsonl)."
    ),
) -> None:
    r"""Map records into a training format (alpaca, sharegpt or preference) through a field mapping.

    Each target field gets a spec: a field path (answer.city), a Jinja template ("{{ question }}"; tojson keeps
    Chinese as written), {json_of: \[landmark, latitude]}, {json_of: "*", except: \[question]} or {literal: text}.
    A record that fails goes to the rejects file with its location. Example:
    --map instruction=question_zh --map 'output={json_of: \[answer]}'
    """
    from llmkit.datagen.convert import convert as run
    from llmkit.datagen.convert import read_mapping

    result = run(inputs, output, format, read_mapping(mapping, pairs or []), rejects)
    console.print(f"wrote {result.written} {format} records to {output}", markup=False)
    _warn(result.rejects, f"rejected, listed in {result.rejects_path}")


def merge(
    inputs: list[Path] = INPUTS,
    output: Path = typer.Option(..., "--output", "-o", help="The merged file to write (JSONL)."),
    keep_source: bool = typer.Option(False, "--keep-source", help="Note each record's file and place in _meta.source."),
) -> None:
    """Join many JSON / JSONL files (or folders of one-record files) into one JSONL dataset."""
    from llmkit.datagen.merge import merge as run

    result = run(inputs, output, keep_source)
    table = Table(Column("input", overflow="fold"), Column("records", justify="right"))
    for path, count in result.per_input.items():
        table.add_row(escape(path), str(count))
    console.print(table)
    console.print(f"wrote {result.written} records to {output}", markup=False)
    _warn(result.bad, "not merged")


def dedupe(
    inputs: list[Path] = INPUTS,
    output: Path = typer.Option(..., "--output", "-o", help="The deduplicated file to write (JSONL)."),
    fields: Optional[str] = FIELDS,
    threshold: float = typer.Option(0.8, "--threshold", min=0.0, max=1.0, help="Near-duplicate Jaccard similarity."),
    duplicates: Optional[Path] = typer.Option(
        None, "--duplicates", help="Where dropped records go (default: <output>.duplicates.jsonl)."
    ),
) -> None:
    """Drop exact and near-duplicate records (MinHash over character 5-grams), keeping the first of each."""
    from llmkit.datagen.dedupe import dedupe as run

    result = run(inputs, output, _field_list(fields), threshold, duplicates)
    exact = sum(duplicate.exact for duplicate in result.duplicates)
    console.print(
        f"kept {len(result.kept)} records in {output}; dropped {exact} exact and "
        f"{len(result.duplicates) - exact} near duplicates",
        markup=False,
    )
    _warn(result.bad, "unusable")


def split(
    inputs: list[Path] = INPUTS,
    out_dir: Path = typer.Option(..., "--out-dir", "-o", help="Folder for train.jsonl, validation.jsonl, test.jsonl."),
    ratios: str = typer.Option("0.8,0.1,0.1", "--ratios", help="train,validation,test shares that sum to 1."),
    seed: int = typer.Option(42, "--seed", help="Seed of the shuffle: the same seed gives the same split."),
    stratify: Optional[str] = typer.Option(None, "--stratify", help="Keep this field's values in proportion."),
) -> None:
    """Shuffle records with a seed and split them into train / validation / test files."""
    from llmkit.datagen.split import parse_ratios
    from llmkit.datagen.split import split as run

    result = run(inputs, out_dir, parse_ratios(ratios), seed, stratify)
    table = Table("split", Column("records", justify="right"), Column("file", overflow="fold"))
    for name, path in result.files.items():
        table.add_row(name, str(result.counts[name]), escape(str(path)))
    console.print(table)
    _warn(result.bad, "unusable")


def stats(
    inputs: list[Path] = INPUTS,
    fields: Optional[str] = FIELDS,
    model: str = typer.Option("default", "--model", "-m", help="Model whose tokenizer counts the tokens."),
    histogram: Optional[Path] = typer.Option(
        None, "--histogram", help="Token-length histogram PNG (default: beside --report, else none)."
    ),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the stats as markdown (.md) or JSON (.json)."),
) -> None:
    """Count records, measure field coverage and token lengths, draw a token-length histogram."""
    from llmkit.datagen.stats import dataset_stats, write_report
    from llmkit.hub import resolve
    from llmkit.models.loading import load_tokenizer

    if histogram is None and report is not None:
        histogram = report.with_suffix(".png")
    with err_console.status("loading the tokenizer"):
        tokenizer = load_tokenizer(resolve(model))
    result = dataset_stats(inputs, tokenizer, _field_list(fields), histogram)
    tokens = result.tokens
    console.print(
        f"{result.records} records · tokens per record: min {tokens.min}, mean {tokens.mean:.1f}, "
        f"p50 {tokens.p50:.0f}, p90 {tokens.p90:.0f}, max {tokens.max}",
        markup=False,
    )
    table = Table(Column("field", overflow="fold"), Column("coverage", justify="right"))
    for path, share in result.coverage.items():
        table.add_row(escape(path), f"{share:.1%}")
    console.print(table)
    if histogram is not None:
        console.print(f"histogram: {histogram}", markup=False)
    if report is not None:
        console.print(f"report: {write_report(result, report)}", markup=False)
    if result.unusable:
        err_console.print(f"[yellow]{result.unusable} unusable rows not counted[/]")


def _field_list(text: str | None) -> list[str] | None:
    """"a,b.c" -> ["a", "b.c"]; None stays None (all fields)."""
    return [name.strip() for name in text.split(",") if name.strip()] if text else None


def _warn(rows: Sequence[Row], what: str) -> None:
    """Say how many rows were left out and why, the first few one per line."""
    if not rows:
        return
    err_console.print(f"[yellow]{len(rows)} rows {escape(what)}[/]")
    for row in rows[:SHOWN]:
        err_console.print(f"  {escape(describe(row))}", highlight=False)
    if len(rows) > SHOWN:
        err_console.print(f"  … and {len(rows) - SHOWN} more")
