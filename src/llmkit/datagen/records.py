"""The records every `llmkit data` command reads: many JSON / JSONL files and folders in, one stream of rows out,
and the few things said about a record (a field by dotted path, the text it holds).

Inputs are anything `llmkit.train.readers` reads, plus folders of one-record `.json` files (a file that
holds one object instead of an array), which is how many generators save their results.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from llmkit.train.readers import READERS, DatasetError, Row, read_rows

META = "_meta"  # the bookkeeping key of generated records: carried along, never part of the text


@dataclass(frozen=True)
class Rows:
    """The rows of some inputs in order; `records` hold a JSON object each, `bad` ones say why they cannot be used."""

    all: list[Row]

    @cached_property
    def records(self) -> list[Row]:
        return [row for row in self.all if row.error is None]

    @cached_property
    def bad(self) -> list[Row]:
        return [row for row in self.all if row.error is not None]


class RecordError(ValueError):
    """One source record the mapping cannot convert; the message becomes the reject's reason."""


def read_inputs(paths: Sequence[Path]) -> Rows:
    """Every row of every input, in order; `DatasetError` for a missing path or when no record is usable."""
    read = []
    for path in paths:
        if not path.exists():
            raise DatasetError(f"{path} does not exist")
        for file in _files(path):
            for row in _read_file(file):
                if row.error is None and not isinstance(row.data, dict):
                    row = replace(row, error=f"expected a JSON object, got {type(row.data).__name__}")
                read.append(row)
    rows = Rows(read)
    if not rows.records:
        names = ", ".join(str(path) for path in paths)
        first = f" ({len(rows.bad)} unusable rows; first: {describe(rows.bad[0])})" if rows.bad else ""
        raise DatasetError(f"no records in {names}{first}")
    return rows


def field_value(record: Any, path: str) -> Any:
    """The value at a dotted field path (`answer.text`, `answers.0`); `RecordError` naming the path if absent."""
    value = record
    for key in path.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise RecordError(f"missing field {path!r}")
    return value


def record_text(record: dict, fields: Sequence[str] | None = None) -> str:
    """The text a record holds: every string under the given field paths (all fields but `_meta` when None)."""
    if fields is None:
        values = [value for key, value in record.items() if key != META]
    else:
        values = []
        for path in fields:
            try:
                values.append(field_value(record, path))
            except RecordError:
                continue  # a record without the field contributes no text for it
    return "\n".join(_strings(values))


def describe(row: Row) -> str:
    """A bad row in one line: where it is and what is wrong with it."""
    return f"{row.file} {row.location}: {row.error}"


def _files(path: Path) -> list[Path]:
    """A file as itself; a folder as its data files by name (a `save_to_disk` folder stays whole)."""
    if path.is_file() or (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
        return [path]
    files = sorted(child for child in path.iterdir() if child.is_file() and child.suffix.lower() in READERS)
    if not files:
        raise DatasetError(f"{path} holds no data files ({', '.join(READERS)})")
    return files


def _read_file(file: Path) -> Iterator[Row]:
    """The rows of one file; a `.json` file holding one object is one record."""
    if file.suffix.lower() == ".json":
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            raise DatasetError(f"cannot read {file} as UTF-8 text: {error}") from error
        if text.lstrip().startswith("{"):
            try:
                yield Row(file, "whole file", json.loads(text))
            except json.JSONDecodeError as error:
                yield Row(file, "whole file", None, f"not valid JSON: {error.msg} at line {error.lineno}")
            return
    yield from read_rows(file)


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a value, depth first (object values and list items in order)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
