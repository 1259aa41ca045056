"""`datagen.merge`: files and folders of records joined into one JSONL, every unusable row reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmkit.datagen.merge import merge
from llmkit.datagen.records import read_inputs
from llmkit.train.readers import DatasetError


@pytest.fixture
def inputs(tmp_path: Path) -> list[Path]:
    """A folder of one-record files (one broken), a JSON array and a JSONL file with a bad line."""
    folder = tmp_path / "generated"
    folder.mkdir()
    (folder / "0001.json").write_text('{"question": "长城有多长？", "_meta": {"attempt": 1}}', encoding="utf-8")
    (folder / "0002.json").write_text('{"question": "黄河有多长？"', encoding="utf-8")
    (folder / "0003.json").write_text('{"question": "泰山有多高？"}', encoding="utf-8")
    array = tmp_path / "array.json"
    array.write_text(json.dumps([{"question": "What is K2?"}, "not an object"]), encoding="utf-8")
    lines = tmp_path / "lines.jsonl"
    lines.write_text('{"question": "Where is Lhasa?"}\n{broken\n', encoding="utf-8")
    return [folder, array, lines]


def test_merge_joins_records_in_order_and_reports_bad_rows(inputs, tmp_path):
    out = tmp_path / "merged.jsonl"
    result = merge(inputs, out)

    text = out.read_text(encoding="utf-8")
    assert [json.loads(line)["question"] for line in text.splitlines()] == [
        "长城有多长？", "泰山有多高？", "What is K2?", "Where is Lhasa?"
    ]
    assert "\\u" not in text
    assert result.written == 4
    assert [(Path(row.file).name, row.location) for row in result.bad] == [
        ("0002.json", "whole file"), ("array.json", "index 1"), ("lines.jsonl", "line 2")
    ]
    assert "expected a JSON object" in result.bad[1].error
    assert result.per_input == {str(inputs[0]): 2, str(inputs[1]): 1, str(inputs[2]): 1}


def test_keep_source_adds_the_origin_to_existing_meta(inputs, tmp_path):
    out = tmp_path / "merged.jsonl"
    merge(inputs, out, keep_source=True)

    first, *_, last = (json.loads(line) for line in out.read_text(encoding="utf-8").splitlines())
    assert first["_meta"] == {"attempt": 1, "source": {"file": str(inputs[0] / "0001.json"), "location": "whole file"}}
    assert last["_meta"] == {"source": {"file": str(inputs[2]), "location": "line 1"}}


def test_missing_and_empty_inputs_are_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_inputs([tmp_path / "absent.jsonl"])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="no records in"):
        read_inputs([empty])
    (tmp_path / "folder").mkdir()
    with pytest.raises(DatasetError, match="holds no data files"):
        read_inputs([tmp_path / "folder"])
