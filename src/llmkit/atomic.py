"""Files written whole or not at all: write to a temporary path beside the target, flush it to disk, rename it over
the target. A run stopped halfway (Ctrl-C, a crash, a full disk) leaves the old file, never half a new one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary path beside `target` for the block to write (by any means: a library's `save(path)` too); synced
    and renamed over `target` when the block ends, deleted if it raises."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        yield partial
        _sync(partial)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _sync(target.parent)  # the rename itself survives a power cut only once the folder is synced


@contextmanager
def atomic_text(target: str | Path) -> Iterator[TextIO]:
    """A UTF-8 text stream whose whole content replaces `target` when the block ends (see `atomic_path`)."""
    with atomic_path(target) as partial, partial.open("w", encoding="utf-8") as stream:
        yield stream


def _sync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
