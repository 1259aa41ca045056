"""Drop exact and near-duplicate records, keeping the first of each group and listing every record dropped.

A record is compared by its text: the string values of the chosen fields (all fields but `_meta` by default),
whitespace collapsed and case folded. Equal texts are exact duplicates; texts whose character 5-grams
overlap by at least the threshold (Jaccard; MinHash LSH finds the candidates) are near duplicates. Character
n-grams need no word segmentation, so Chinese is compared as well as English.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from datasketch import MinHash, MinHashLSH

from llmkit.datagen.records import read_inputs, record_text
from llmkit.jsonl import write_jsonl
from llmkit.train.readers import Row

SHINGLE = 5  # characters per n-gram: long enough to be specific, short enough for short Chinese texts
NUM_PERM = 128
LSH_CEILING = 0.95


@dataclass(frozen=True)
class Duplicate:
    """A dropped record, the kept record it repeats, and their similarity (1.0 for an exact duplicate)."""

    row: Row
    of: Row
    similarity: float
    exact: bool


@dataclass
class DedupeResult:
    """The records kept (first occurrences, in input order), the ones dropped, and the unusable input rows."""

    kept: list[Row] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    bad: list[Row] = field(default_factory=list)


def find_duplicates(rows: Sequence[Row], fields: Sequence[str] | None = None, threshold: float = 0.8) -> DedupeResult:
    """Walk `rows` in order, dropping each that repeats an earlier kept one exactly or with Jaccard >= threshold."""
    result = DedupeResult()
    exact: dict[str, int] = {}  # normalised text -> position in result.kept
    texts: dict[int, str] = {}
    # LSH only proposes candidates; the exact Jaccard decides. Above ~0.95 it cannot band 128 permutations.
    index = MinHashLSH(threshold=min(threshold, LSH_CEILING), num_perm=NUM_PERM)
    for row in rows:
        text = normalise(record_text(row.data, fields))
        if not text:
            result.kept.append(row)  # nothing to compare it by
            continue
        if text in exact:
            result.duplicates.append(Duplicate(row, result.kept[exact[text]], 1.0, exact=True))
            continue
        grams = shingles(text)
        signature = minhash(grams)
        scores = [(jaccard(grams, shingles(texts[key])), key) for key in index.query(signature)]
        similarity, key = max(scores, default=(0.0, -1))
        if similarity >= threshold:
            result.duplicates.append(Duplicate(row, result.kept[key], similarity, exact=False))
            continue
        key = exact[text] = len(result.kept)
        texts[key] = text
        index.insert(key, signature)
        result.kept.append(row)
    return result


def dedupe(
    inputs: Sequence[Path],
    output: Path,
    fields: Sequence[str] | None = None,
    threshold: float = 0.8,
    duplicates: Path | None = None,
) -> DedupeResult:
    """Write the kept records of `inputs` to `output` and the dropped ones, each beside the record it repeats,
    to `duplicates` (default: <output stem>.duplicates.jsonl)."""
    rows = read_inputs(inputs)
    result = find_duplicates(rows.records, fields, threshold)
    result.bad = rows.bad
    write_jsonl(output, (row.data for row in result.kept))
    write_jsonl(duplicates or output.with_name(f"{output.stem}.duplicates.jsonl"), map(_listing, result.duplicates))
    return result


def normalise(text: str) -> str:
    """Case folded, every run of whitespace one space: the differences that do not make a record new."""
    return " ".join(text.casefold().split())


def shingles(text: str) -> set[str]:
    """A text's character n-grams (the whole text when it is shorter than one)."""
    return {text[i : i + SHINGLE] for i in range(max(1, len(text) - SHINGLE + 1))}


def minhash(grams: set[str]) -> MinHash:
    """The MinHash signature of a set of n-grams: what the LSH index buckets records by."""
    signature = MinHash(num_perm=NUM_PERM)
    signature.update_batch([gram.encode("utf-8") for gram in grams])
    return signature


def jaccard(a: set[str], b: set[str]) -> float:
    """Shared n-grams over all n-grams of the two texts."""
    return len(a & b) / len(a | b)


def _listing(duplicate: Duplicate) -> dict:
    """One line of the duplicates file: how alike, and both records with their places."""
    return {
        "similarity": round(duplicate.similarity, 3),
        "kind": "exact" if duplicate.exact else "near",
        "dropped": {"file": str(duplicate.row.file), "location": duplicate.row.location, "record": duplicate.row.data},
        "kept": {"file": str(duplicate.of.file), "location": duplicate.of.location, "record": duplicate.of.data},
    }
