"""`llmkit data convert | merge | dedupe | split | stats` end to end, and bad input as one error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmkit.jsonl import write_jsonl

PLACES = [("故宫位于哪里？", "北京", 39.92), ("外滩在哪座城市？", "上海", 31.24), ("西湖在哪座城市？", "杭州", 30.25)]
RECORDS = [
    {"question_zh": question, "answer": {"city": city, "latitude": latitude}, "_meta": {"attempt": attempt}}
    for attempt, (question, city, latitude) in enumerate(PLACES + PLACES[-1:])  # the last one twice
]


@pytest.fixture
def generated(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "generated.jsonl", RECORDS)
    return tmp_path / "generated.jsonl"


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_convert_writes_alpaca_with_the_answer_as_json_text(llmkit, generated, tmp_path):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("instruction: question_zh\noutput: {json_of: [answer]}\n", encoding="utf-8")
    out = tmp_path / "alpaca.jsonl"
    result = llmkit("data", "convert", str(generated), "-o", str(out), "--mapping", str(mapping), "--map", "input=")

    assert result.returncode == 0, result.stderr
    assert "wrote 4 alpaca records" in result.stdout
    assert lines(out)[0]["output"] == '{"answer": {"city": "北京", "latitude": 39.92}}'


def test_merge_joins_a_folder_of_one_record_files(llmkit, tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    for i, record in enumerate(RECORDS):
        (folder / f"{i:03}.json").write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "merged.jsonl"
    result = llmkit("data", "merge", str(folder), "-o", str(out), "--keep-source")

    assert result.returncode == 0, result.stderr
    assert "wrote 4 records" in result.stdout
    assert lines(out)[3]["_meta"]["source"]["file"].endswith("003.json")


def test_dedupe_drops_the_repeated_record(llmkit, generated, tmp_path):
    out = tmp_path / "unique.jsonl"
    result = llmkit("data", "dedupe", str(generated), "-o", str(out))

    assert result.returncode == 0, result.stderr
    assert "kept 3 records" in result.stdout and "1 exact" in result.stdout
    assert lines(tmp_path / "unique.duplicates.jsonl")[0]["kept"]["location"] == "line 3"


def test_split_writes_three_files(llmkit, generated, tmp_path):
    result = llmkit("data", "split", str(generated), "-o", str(tmp_path / "splits"), "--ratios", "0.5,0.25,0.25")

    assert result.returncode == 0, result.stderr
    assert [len(lines(tmp_path / "splits" / f"{name}.jsonl")) for name in ("train", "validation", "test")] == [2, 1, 1]


def test_stats_prints_coverage_and_writes_a_report(llmkit, generated, tmp_path):
    result = llmkit("data", "stats", str(generated), "--report", str(tmp_path / "stats.md"))

    assert result.returncode == 0, result.stderr
    assert "4 records" in result.stdout and "answer.latitude" in result.stdout and "100.0%" in result.stdout
    assert (tmp_path / "stats.png").is_file() and "![token lengths](stats.png)" in (tmp_path / "stats.md").read_text()


MAP = ["-o", "{dir}/out.jsonl", "--map", "instruction=q", "--map"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["convert", "{dir}/absent.jsonl", *MAP, "output=a"], "absent.jsonl does not exist"),
        (["dedupe", "{dir}/empty.jsonl", "-o", "{dir}/out.jsonl"], "no records in"),
        (["convert", "{dir}/empty.jsonl", *MAP, "output=Where is it?"], "neither a field path nor a template"),
    ],
)
def test_bad_input_is_one_error_line(llmkit, tmp_path, args, message):
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    result = llmkit("data", *(arg.format(dir=tmp_path) for arg in args))

    assert result.returncode == 2
    assert message in result.stderr and result.stderr.startswith("error:")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
