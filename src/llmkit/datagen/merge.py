"""`llmkit data merge`: many JSON / JSONL files and folders (of one-record files too) into one JSONL dataset."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from llmkit.datagen.records import META, read_inputs
from llmkit.jsonl import write_jsonl
from llmkit.train.readers import Row


@dataclass(frozen=True)
class MergeResult:
    """What a merge wrote: the output file, records per input (file or folder), and the rows it could not use."""

    output: Path
    written: int
    per_input: dict[str, int]
    bad: list[Row]


def merge(paths: Sequence[Path], output: Path, keep_source: bool = False) -> MergeResult:
    """Join all records of `paths` into one JSONL file; `keep_source` records each one's origin in `_meta.source`."""
    rows = read_inputs(paths)
    merged, bad = [], list(rows.bad)
    for row in rows.records:
        meta = row.data.get(META, {})
        if keep_source and not isinstance(meta, dict):
            bad.append(replace(row, error=f"{META} is a {type(meta).__name__}, so no source can be added to it"))
        elif keep_source:
            source = {"file": str(row.file), "location": row.location}
            merged.append(replace(row, data={**row.data, META: {**meta, "source": source}}))
        else:
            merged.append(row)
    written = write_jsonl(output, (row.data for row in merged))
    inputs = set(paths)  # a row's file is an input itself or a file directly inside an input folder
    per_input = Counter(str(row.file if row.file in inputs else row.file.parent) for row in merged)
    return MergeResult(output, written, dict(per_input), bad)


