"""`datagen.split`: seeded, disjoint, complete train / validation / test files in the ratios asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmkit.datagen.split import SplitError, parse_ratios, split
from llmkit.jsonl import write_jsonl


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [{"id": i, "question": f"第{i}题", "topic": "山" if i % 4 else "河"} for i in range(200)])
    return path


def read_splits(folder: Path) -> dict[str, list[dict]]:
    return {
        name: [json.loads(line) for line in (folder / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
        for name in ("train", "validation", "test")
    }


def test_split_is_complete_disjoint_in_ratio_and_seeded(data, tmp_path):
    result = split([data], tmp_path / "a", (0.8, 0.1, 0.1), seed=7)
    splits = read_splits(tmp_path / "a")

    assert result.counts == {"train": 160, "validation": 20, "test": 20}
    ids = {name: [record["id"] for record in records] for name, records in splits.items()}
    assert sorted(sum(ids.values(), [])) == list(range(200))  # every record once
    assert all(part == sorted(part) for part in ids.values())  # input order kept inside a split
    assert "第" in (tmp_path / "a" / "test.jsonl").read_text(encoding="utf-8")

    split([data], tmp_path / "b", (0.8, 0.1, 0.1), seed=7)
    split([data], tmp_path / "c", (0.8, 0.1, 0.1), seed=8)
    assert read_splits(tmp_path / "b") == splits
    assert read_splits(tmp_path / "c") != splits


def test_stratified_split_keeps_each_value_in_proportion(data, tmp_path):
    split([data], tmp_path, (0.6, 0.2, 0.2), seed=1, stratify="topic")
    for records in read_splits(tmp_path).values():
        rivers = sum(record["topic"] == "河" for record in records)
        assert rivers / len(records) == 0.25  # 50 of the 200 records are rivers


@pytest.mark.parametrize("text", ["0.8,0.2", "0.8,0.3,0.1", "a,b,c", "1.2,-0.1,-0.1", ""])
def test_bad_ratios_are_an_error(text):
    with pytest.raises(SplitError, match="three numbers"):
        parse_ratios(text)


def test_ratios_parse():
    assert parse_ratios("0.7, 0.2, 0.1") == (0.7, 0.2, 0.1)
