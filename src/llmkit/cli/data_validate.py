"""`llmkit data validate` and `llmkit data calibrate`: check generated records, then let a person settle the rejects."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.highlighter import JSONHighlighter
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from llmkit.cli.console import console, err_console

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

    from llmkit.datagen.calibrate import CalibrationSession, Check, Choice
    from llmkit.datagen.validate import InvalidRecord, Rule, ValidationReport

SCHEMA_HELP = "JSON Schema every record must match (the `_meta` key is left out of the check)."
RULES_HELP = "Python file whose check_* functions take a record and return None, or what is wrong with it."
CHOICES: dict[str, Choice] = {"e": "edit", "a": "accept", "d": "drop", "s": "skip", "q": "quit"}


def validate(
    file: Path = typer.Argument(..., help="The records: a .jsonl, .json, .csv or .parquet file, or a folder of them."),
    schema: Path = typer.Option(..., "--schema", help=SCHEMA_HELP),
    rules: Optional[Path] = typer.Option(None, "--rules", help=RULES_HELP),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Folder for valid.jsonl, invalid.jsonl and report.md/json \\[default: beside the input]."
    ),
) -> None:
    """Split records into valid.jsonl and invalid.jsonl (each failure with its reason and JSON path), with a report."""
    from llmkit.datagen.validate import default_out_dir, validate_file

    report = validate_file(file, *_checks(schema, rules), out or default_out_dir(file))
    _print_report(report)
    if report.invalid:
        command = f"llmkit data calibrate {report.out_dir} --schema {schema}" + (f" --rules {rules}" if rules else "")
        console.print(f"settle the invalid records with: {escape(command)}", soft_wrap=True)


def calibrate(
    path: Path = typer.Argument(..., help="The folder `llmkit data validate` wrote, or its invalid.jsonl."),
    schema: Path = typer.Option(..., "--schema", help=SCHEMA_HELP + " Edited and fixed records are checked again."),
    rules: Optional[Path] = typer.Option(None, "--rules", help=RULES_HELP),
    fix: Optional[Path] = typer.Option(
        None, "--fix", help="Python file with `def fix(record) -> dict | None`, run over the records instead of asking."
    ),
) -> None:
    """Settle invalid records one by one (edit, accept, drop, skip or quit) or with a fix-up script.

    Decisions go to calibrated.jsonl and dropped.jsonl as they are made, the undecided records to
    remaining.jsonl; a second run resumes with the undecided ones. Train on valid.jsonl + calibrated.jsonl.
    """
    from llmkit.datagen.calibrate import (
        CalibrationSession,
        apply_fix,
        load_fix,
        run_interactive,
    )
    from llmkit.datagen.validate import INVALID, validate_record

    validator, rule_list = _checks(schema, rules)
    check: Check = partial(validate_record, validator=validator, rules=rule_list)
    fixer = load_fix(fix) if fix else None
    with CalibrationSession(path / INVALID if path.is_dir() else path, check) as session:
        outcome = apply_fix(session, fixer) if fixer else run_interactive(session, _ask, _edit)
    _print_calibration(session, outcome)


def _checks(schema: Path, rules: Path | None) -> tuple[Validator, list[Rule]]:
    """The validator and rule functions both commands check records with."""
    from llmkit.datagen.validate import load_rules, load_schema

    return load_schema(schema), load_rules(rules) if rules else []


def _print_report(report: ValidationReport) -> None:
    counts = Table(title=f"validated {escape(str(report.input))}", show_header=False)
    counts.add_row("rows read", str(report.rows))
    counts.add_row("[green]valid[/]", str(report.valid))
    counts.add_row("[red]invalid[/]", str(report.invalid))
    console.print(counts)
    reasons = report.top_reasons()
    if reasons:
        table = Table("failures", "check", "path", "example", title="top reasons")
        for reason in reasons:
            table.add_row(str(reason["count"]), *(escape(reason[key]) for key in ("check", "path", "example")))
        console.print(table)
    for file in report.files.values():
        console.print(f"wrote {escape(str(file))}", soft_wrap=True)


def _print_calibration(session: CalibrationSession, outcome: Counter[str]) -> None:
    from llmkit.datagen.calibrate import CALIBRATED, DROPPED, REMAINING

    table = Table("this session", "records", title="calibration")
    for how, count in sorted(outcome.items()):
        table.add_row(how, str(count))
    console.print(table)
    totals = session.totals()
    console.print(" · ".join(f"{name} {count}" for name, count in totals.items()) + f" of {len(session.originals)}")
    for name in (CALIBRATED, DROPPED, REMAINING):
        console.print(f"wrote {escape(str(session.path(name)))}", soft_wrap=True)
    valid, calibrated = session.path("valid.jsonl"), session.path(CALIBRATED)
    command = f"llmkit data merge {valid} {calibrated} -o {session.path('train.jsonl')}"
    console.print(f"train on valid.jsonl + calibrated.jsonl: {escape(command)}", soft_wrap=True)


def _ask(entry: InvalidRecord, position: int, total: int) -> Choice:
    """Show one invalid record with its errors and read a choice; the end of the input counts as quit."""
    from llmkit.datagen.calibrate import is_acceptable

    console.rule(f"record {position} of {total} · {escape(entry.source)}")
    _show(entry)
    offered = {key: choice for key, choice in CHOICES.items() if choice != "accept" or is_acceptable(entry)}
    question = " / ".join(f"[{key}]{choice[1:]}" for key, choice in offered.items())
    while True:
        try:
            answer = typer.prompt(question).strip().lower()
        except typer.Abort:  # end of input or Ctrl-C: stop, keeping every decision made so far
            return "quit"
        for key, choice in offered.items():
            if answer in (key, choice):
                return choice


def _edit(text: str) -> str | None:
    """The record as a person corrected it: in $EDITOR on a terminal, else one line of JSON read from the input."""
    if not sys.stdin.isatty():
        try:
            return typer.prompt("corrected record, as one line of JSON")
        except typer.Abort:
            return None
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "record.json"
        path.write_text(text, encoding="utf-8")
        try:
            subprocess.run([*shlex.split(editor), str(path)], check=True)
        except (OSError, subprocess.CalledProcessError) as error:
            err_console.print(f"[red]could not run the editor {escape(editor)}:[/] {escape(str(error))} (set $EDITOR)")
            return None
        edited = path.read_text(encoding="utf-8")
    return None if edited == text else edited


def _show(entry: InvalidRecord) -> None:
    """The record as indented JSON, lines under a failing path in red with the message beside; then every error."""
    if entry.text is not None:
        console.print(Text(entry.text, style="red"))
    else:
        failing = {failure.path: failure.message for failure in entry.errors if failure.path != "$"}
        highlight, marked = JSONHighlighter(), set()
        for line, path in _json_lines(entry.record):
            text = highlight(Text(line))
            owner = next((failed for failed in failing if _within(path, failed)), None)
            if owner is not None:
                text.stylize("bold red")
                if owner not in marked:
                    text.append(f"  ◀ {failing[owner]}", style="red")
                    marked.add(owner)
            console.print(text)
    for failure in entry.errors:
        console.print(f"[red]✗[/] {escape(failure.path)} [dim]{escape(failure.check)}[/] {escape(failure.message)}")


def _json_lines(
    value: Any, at: tuple[str | int, ...] = (), indent: int = 0, key: str = "", comma: str = ""
) -> Iterator[tuple[str, str]]:
    """`value` as indented JSON, line by line, each line with the JSON path of the value it belongs to."""
    from llmkit.datagen.validate import json_path

    pad, path = "  " * indent, json_path(at)
    children = list(value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else [])
    if not children:
        yield f"{pad}{key}{json.dumps(value, ensure_ascii=False)}{comma}", path
        return
    opening, closing = "{}" if isinstance(value, dict) else "[]"
    yield f"{pad}{key}{opening}", path
    for index, (name, child) in enumerate(children):
        label = json.dumps(name, ensure_ascii=False) + ": " if isinstance(value, dict) else ""
        yield from _json_lines(child, (*at, name), indent + 1, label, "," if index < len(children) - 1 else "")
    yield f"{pad}{closing}{comma}", path


def _within(path: str, failed: str) -> bool:
    """Whether the value at `path` is the failing value at `failed` or part of it."""
    return path == failed or path.startswith((failed + ".", failed + "["))
