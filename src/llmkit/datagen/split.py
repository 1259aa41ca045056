"""Split records into train / validation / test by ratios, reproducibly (a seeded shuffle), optionally stratified."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

from llmkit.datagen.records import RecordError, field_value, read_inputs
from llmkit.errors import LLMKitError
from llmkit.jsonl import write_jsonl
from llmkit.train.readers import Row

SPLITS = ("train", "validation", "test")


class SplitError(LLMKitError):
    """Split ratios that cannot be used."""


@dataclass
class SplitResult:
    """The file each split was written to, how many records it got, and the unusable input rows."""

    files: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    bad: list[Row] = field(default_factory=list)


def parse_ratios(text: str) -> tuple[float, float, float]:
    """"0.8,0.1,0.1" → (0.8, 0.1, 0.1): three non-negative shares of train, validation and test that sum to 1."""
    try:
        ratios = tuple(float(part) for part in text.split(","))
    except ValueError:
        ratios = ()
    if len(ratios) != 3 or any(ratio < 0 for ratio in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise SplitError(
            f"ratios {text!r}: give train,validation,test as three numbers >= 0 that sum to 1, e.g. 0.8,0.1,0.1"
        )
    return ratios


def split_indices(keys: Sequence[str], ratios: Sequence[float], seed: int) -> list[list[int]]:
    """Deal positions 0..n-1 into one list per ratio: each group of equal keys shuffled with `seed` and cut by
    the ratios (so every split gets its share of every group); each list in input order."""
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    rng = random.Random(seed)
    splits: list[list[int]] = [[] for _ in ratios]
    for members in groups.values():
        rng.shuffle(members)
        cuts = [0] + [round(len(members) * total) for total in accumulate(ratios)]
        for split, start, end in zip(splits, cuts, cuts[1:]):
            split.extend(members[start:end])
    return [sorted(split) for split in splits]


def split(
    inputs: Sequence[Path], out_dir: Path, ratios: Sequence[float], seed: int = 42, stratify: str | None = None
) -> SplitResult:
    """Write train.jsonl, validation.jsonl and test.jsonl in `out_dir`; `stratify` keeps a field's values in
    the same proportions in every split."""
    rows = read_inputs(inputs)
    keys = [_stratum(row.data, stratify) for row in rows.records] if stratify else [""] * len(rows.records)
    result = SplitResult(bad=rows.bad)
    for name, indices in zip(SPLITS, split_indices(keys, ratios, seed)):
        result.files[name] = out_dir / f"{name}.jsonl"
        result.counts[name] = write_jsonl(result.files[name], (rows.records[i].data for i in indices))
    return result


def _stratum(record: dict, path: str) -> str:
    """The group a record falls in: its field value as JSON text ("" when the field is missing)."""
    try:
        return json.dumps(field_value(record, path), ensure_ascii=False, sort_keys=True)
    except RecordError:
        return ""
