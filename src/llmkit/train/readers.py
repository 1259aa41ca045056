"""Read dataset files row by row, each row tagged with its file and place, so a bad one can be reported and skipped.

.json (an array of objects), .jsonl, .csv (header row), .parquet, .txt (one document per line, as
`{"text": line}`), a `datasets.save_to_disk` folder (its train split for a DatasetDict), or a folder of
such files. A line that is not JSON comes back as a row with an `error` instead of failing the read.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.errors import LLMKitError


class DatasetError(LLMKitError):
    """A dataset that cannot be used: unknown name, unreadable file, or a format that does not fit the stage."""


@dataclass(frozen=True)
class Row:
    """One raw record: its file, where in it ("line 7", "row 3", "index 12"), the parsed data or why it failed."""

    file: Path
    location: str
    data: Any
    error: str | None = None


def read_rows(path: Path) -> Iterator[Row]:
    """Every row of a data file or folder, in order; `DatasetError` for a file that cannot be read at all."""
    if path.is_dir():
        return _read_folder(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DatasetError(f"{path}: unsupported file type; use one of {', '.join(READERS)} or a dataset folder")
    return _guarded(path, reader)


def _guarded(path: Path, reader: Callable[[Path], Iterator[Row]]) -> Iterator[Row]:
    """Run a reader, turning I/O and encoding failures into a `DatasetError` that names the file."""
    try:
        yield from reader(path)
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from error


def _read_folder(path: Path) -> Iterator[Row]:
    """A `save_to_disk` folder, or the supported files directly inside a folder (sorted by name)."""
    if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
        yield from _read_saved(path)
        return
    files = sorted(child for child in path.iterdir() if child.is_file() and child.suffix.lower() in READERS)
    if not files:
        raise DatasetError(f"{path} holds no data files ({', '.join(READERS)}) and is not a save_to_disk folder")
    for file in files:
        yield from _guarded(file, READERS[file.suffix.lower()])


def _read_json(path: Path) -> Iterator[Row]:
    """A JSON array of records; rows are located by their index in the array."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        hint = " (one object per line? name the file .jsonl)" if error.msg == "Extra data" else ""
        raise DatasetError(f"{path} is not valid JSON: {error.msg} at line {error.lineno}{hint}") from error
    if not isinstance(data, list):
        raise DatasetError(f"{path} must hold a JSON array of records, not a {type(data).__name__}")
    for index, record in enumerate(data):
        yield Row(path, f"index {index}", record)


def _read_jsonl(path: Path) -> Iterator[Row]:
    """One JSON object per line; blank lines are ignored, broken ones come back with an error."""
    with path.open(encoding="utf-8-sig") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                yield Row(path, f"line {number}", json.loads(line))
            except json.JSONDecodeError as error:
                yield Row(path, f"line {number}", None, f"not valid JSON: {error.msg} at column {error.colno}")


def _read_csv(path: Path) -> Iterator[Row]:
    """A CSV file with a header row; rows are numbered from 1 after the header."""
    with path.open(encoding="utf-8-sig", newline="") as file:
        for number, record in enumerate(csv.DictReader(file), 1):
            error = "more fields than the header names" if None in record else None
            yield Row(path, f"row {number}", None if error else record, error)


def _read_txt(path: Path) -> Iterator[Row]:
    """One document per non-blank line, as `{"text": line}`."""
    with path.open(encoding="utf-8-sig") as file:
        for number, line in enumerate(file, 1):
            text = line.rstrip("\r\n")
            if text.strip():
                yield Row(path, f"line {number}", {"text": text})


def _read_parquet(path: Path) -> Iterator[Row]:
    """A parquet file, read in batches so a large one is never held whole."""
    import pyarrow
    import pyarrow.parquet

    try:
        batches = pyarrow.parquet.ParquetFile(path).iter_batches(batch_size=1024)
    except pyarrow.ArrowException as error:
        raise DatasetError(f"{path} is not a readable parquet file: {error}") from error
    index = 0
    for batch in batches:
        for record in batch.to_pylist():
            yield Row(path, f"index {index}", record)
            index += 1


def _read_saved(path: Path) -> Iterator[Row]:
    """A folder written by `datasets`' `save_to_disk`: a Dataset, or a DatasetDict's train split."""
    import datasets

    saved = datasets.load_from_disk(str(path))
    if isinstance(saved, datasets.DatasetDict):
        if "train" not in saved:
            raise DatasetError(f"{path} has splits {', '.join(saved)} but no 'train' split to read")
        saved = saved["train"]
    yield from dataset_rows(path, saved)


def dataset_rows(path: Path, dataset: Iterable[dict]) -> Iterator[Row]:
    """The records of a `datasets.Dataset` read from `path` (a saved folder, a hub snapshot) as rows."""
    for index, record in enumerate(dataset):
        yield Row(path, f"index {index}", record)


READERS: dict[str, Callable[[Path], Iterator[Row]]] = {
    ".json": _read_json,
    ".jsonl": _read_jsonl,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
    ".txt": _read_txt,
}
