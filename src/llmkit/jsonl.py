"""JSON Lines the way every `llmkit data` command writes them: UTF-8 text people can read (no `\\uXXXX`),
one record per line, flushed as it is written, and read back safely after a crash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from llmkit.atomic import atomic_text
from llmkit.errors import NotAFileError


def dumps(record: Any) -> str:
    """One record as one line of JSON, Chinese and other text kept as written."""
    return json.dumps(record, ensure_ascii=False, separators=(", ", ": "))


class JsonlAppender:
    """Appends records to a JSONL file, each flushed to disk at once: a killed job keeps every finished line."""

    def __init__(self, path: str | Path) -> None:
        self.path = file_path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _end_partial_line(self.path)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, record: Any) -> None:
        self._file.write(dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """The complete records of a JSONL file this module wrote; a last line cut off by a crash is ignored."""
    path = file_path(path)
    if not path.exists():
        return
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.endswith("\n"):
                return  # the write that was interrupted; JsonlAppender starts a fresh line after it
            if line.strip():
                yield json.loads(line)


def write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Write a whole JSONL file atomically (`atomic_text`); return the record count."""
    count = 0
    with atomic_text(file_path(path)) as out:
        for record in records:
            out.write(dumps(record) + "\n")
            count += 1
    return count


def file_path(path: str | Path) -> Path:
    """`path` as a `Path`; `NotAFileError` when it names a directory (which open() would refuse with a traceback)."""
    path = Path(path)
    if path.is_dir():
        raise NotAFileError(f"{path} is a directory: give a file path")
    return path


def _end_partial_line(path: Path) -> None:
    """Drop an unfinished last line (a crash mid-write) so the next record starts on its own line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as data:
        data.seek(-1, os.SEEK_END)
        if data.read(1) == b"\n":
            return
        data.seek(0)
        data.truncate(data.read().rfind(b"\n") + 1)
