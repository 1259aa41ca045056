"""What the benchmark scripts share: the data folder, the machine line, tables, and sections of a markdown file."""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sys
from pathlib import Path

import torch
import transformers
from rich.console import Console
from rich.table import Table

DATA_DIR = Path(os.environ.get("LLMKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared/data"))

# Wide enough for the tables when the output goes to a file or a pipe (rich assumes 80 columns there).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def machine() -> str:
    """CPU model, core count, torch threads and library versions, in one line."""
    cpu = platform.processor() or "unknown CPU"
    try:
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        cpu = names[0].strip() if names else cpu
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; "
        f"torch {torch.__version__}, transformers {transformers.__version__}"
    )


def utc_now() -> str:
    """The current time as the sections record it."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def print_table(title: str, headers: list[str], rows: list[list[str]], left: int) -> None:
    """A rich table on the console: the first `left` columns left-aligned, the rest right-aligned."""
    table = Table(title=title)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i < left else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def markdown_table(headers: list[str], rows: list[list[str]], left: int) -> list[str]:
    """The same table as markdown lines."""
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(["---"] * left + ["---:"] * (len(headers) - left)) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def section(marker: str, lines: list[str]) -> str:
    """`lines` between `<!-- marker -->` and `<!-- /marker -->`, as `write_section` finds them."""
    return "\n".join([f"<!-- {marker} -->", *lines, f"<!-- /{marker} -->"]) + "\n"


def report_section(
    marker: str, heading: str, setup: list[str], table: list[str], notes: list[str], findings: list[str]
) -> str:
    """A script's whole section: heading, date, machine, setup, markdown table, notes, findings, the command run."""
    script = f"benchmarks/{Path(sys.argv[0]).name}"
    lines = [
        f"## {heading}",
        "",
        f"- Date: {utc_now()}",
        f"- Machine: {machine()}",
        *(f"- {line}" for line in setup),
        "",
        *table,
        "",
        *(f"- {note}" for note in notes),
        "",
        *(f"- {line}" for line in findings),
        "",
        f"Command: `{shlex.join(['python', script, *sys.argv[1:]])}`",
    ]
    return section(marker, lines)


def write_section(path: Path, marker: str, text: str) -> None:
    """Replace the section between this marker pair in `path` (append it if absent); the rest stays."""
    document = path.read_text() if path.exists() else "# Benchmarks\n\nWritten by the scripts in `benchmarks/`.\n"
    pattern = re.compile(rf"<!-- {re.escape(marker)} -->.*?<!-- /{re.escape(marker)} -->\n?", re.DOTALL)
    if pattern.search(document):
        document = pattern.sub(lambda _: text, document, count=1)
    else:
        document = document.rstrip("\n") + "\n\n" + text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document)
