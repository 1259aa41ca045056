"""`datagen.dedupe` on real alpaca records: exact and near duplicates dropped and listed, distinct records kept."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmkit.datagen.dedupe import dedupe, find_duplicates
from llmkit.jsonl import write_jsonl
from llmkit.train.readers import Row

DATA = Path(os.environ["LLMKIT_SHARED_DATA"]) / "llama-factory"


def originals(name: str, count: int) -> list[dict]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))[:count]


def edited(record: dict, old: str, new: str) -> dict:
    """A copy with one small edit in the output (a typo fixed, a word swapped)."""
    assert old in record["output"]
    return {**record, "output": record["output"].replace(old, new, 1)}


@pytest.fixture
def records() -> list[dict]:
    """40 Chinese and 40 English records, then copies: exact (case / spacing changed) and lightly edited."""
    zh, en = originals("alpaca_zh_demo.json", 40), originals("alpaca_en_demo.json", 40)
    copies = [
        {**en[3], "output": "  " + en[3]["output"].upper().replace(" ", "   ")},
        edited(en[0], "delicious", "tasty"),
        edited(zh[0], "巨大贡献", "重大贡献"),
        {**zh[5], "_meta": {"attempt": 2}},
    ]
    return zh + en + copies


def test_exact_and_near_duplicates_are_dropped_and_listed(records, tmp_path):
    write_jsonl(tmp_path / "data.jsonl", records)
    out = tmp_path / "kept.jsonl"
    result = dedupe([tmp_path / "data.jsonl"], out)

    kept = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert kept == records[:80]
    listing = (tmp_path / "kept.duplicates.jsonl").read_text(encoding="utf-8")
    listed = [json.loads(line) for line in listing.splitlines()]
    assert [(d["kind"], d["dropped"]["location"], d["kept"]["location"]) for d in listed] == [
        ("exact", "line 81", "line 44"),
        ("near", "line 82", "line 41"),
        ("near", "line 83", "line 1"),
        ("exact", "line 84", "line 6"),  # `_meta` is not compared
    ]
    assert all(0.8 <= d["similarity"] <= 1 for d in listed)
    assert listed[2]["dropped"]["record"]["output"].count("重大贡献") == 1  # Chinese kept as written
    assert len(result.duplicates) == 4 and len(result.kept) == 80


def test_the_threshold_decides_what_counts_as_near(records):
    rows = [Row(Path("data"), f"line {i}", record) for i, record in enumerate(records, 1)]
    strict = find_duplicates(rows, threshold=0.99)  # the edited copies are 0.97 and 0.98 alike
    assert [d.exact for d in strict.duplicates] == [True, True]


def test_fields_choose_the_text_compared():
    question = {"instruction": "What is the capital of France?", "input": ""}
    answers = ["Paris.", "It is Paris, on the Seine."]
    rows = [Row(Path("data"), f"line {i}", {**question, "output": answer}) for i, answer in enumerate(answers)]
    assert find_duplicates(rows).duplicates == []
    [duplicate] = find_duplicates(rows, fields=["instruction"]).duplicates
    assert duplicate.of is rows[0] and duplicate.exact
