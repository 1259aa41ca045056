"""`llmkit data validate` and `llmkit data calibrate` as a user runs them: files in, tables and files out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

LANDMARKS = Path(__file__).resolve().parents[1] / "datagen" / "data" / "landmarks"
CHECKS = ("--schema", str(LANDMARKS / "schema.json"), "--rules", str(LANDMARKS / "rules.py"))


@pytest.fixture(scope="module")
def validated(llmkit, tmp_path_factory):
    """`llmkit data validate` run once on the landmark records: its result and output folder."""
    out = tmp_path_factory.mktemp("validated")
    return llmkit("data", "validate", str(LANDMARKS / "records.jsonl"), *CHECKS, "--out", str(out)), out


@pytest.fixture
def workdir(validated, tmp_path) -> Path:
    """A private copy of the validate output, for a calibrate run to write into."""
    return Path(shutil.copytree(validated[1], tmp_path / "out"))


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_validate_prints_the_counts_and_top_reasons_and_writes_the_files(validated):
    result, out = validated
    assert result.returncode == 0, result.stderr
    assert "rows read │ 10" in result.stdout and "valid     │ 2" in result.stdout and "invalid   │ 8" in result.stdout
    assert "check_coordinates" in result.stdout and "$.aliases[1]" in result.stdout
    assert f"llmkit data calibrate {out}" in result.stdout
    assert [record["landmark"] for record in lines(out / "valid.jsonl")] == ["故宫", "天坛"]
    assert "故宫位于北京市中心" in (out / "valid.jsonl").read_text(encoding="utf-8")
    assert len(lines(out / "invalid.jsonl")) == 8
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["invalid"] == 8


def test_calibrate_with_a_fix_script_settles_what_it_can(llmkit, workdir):
    result = llmkit("data", "calibrate", str(workdir), *CHECKS, "--fix", str(LANDMARKS / "fix.py"))
    assert result.returncode == 0, result.stderr
    assert "calibrated 2 · dropped 1 · remaining 5 of 8" in result.stdout
    assert [record["landmark"] for record in lines(workdir / "calibrated.jsonl")] == ["外滩", "西湖"]
    assert lines(workdir / "dropped.jsonl")[0]["reason"] == "dropped by fix script"
    assert len(lines(workdir / "remaining.jsonl")) == 5


def test_calibrate_asks_on_the_terminal_and_stops_cleanly_when_the_input_ends(llmkit, workdir):
    result = llmkit("data", "calibrate", str(workdir / "invalid.jsonl"), *CHECKS, stdin="a\nx\nd\n")
    assert result.returncode == 0, result.stderr
    assert "record 1 of 8" in result.stdout and '"landmark": "颐和园"' in result.stdout
    assert '"latitude": 121.49,  ◀ 121.49 is greater than the maximum of 90' in result.stdout
    assert "[e]dit / [a]ccept / [d]rop / [s]kip / [q]uit" in result.stdout
    assert "calibrated 1 · dropped 1 · remaining 6 of 8" in result.stdout
    accepted = lines(workdir / "calibrated.jsonl")
    assert [(record["landmark"], record["_meta"]["calibration"]["how"]) for record in accepted] == [("颐和园", "accepted")]
    assert [entry["record"]["landmark"] for entry in lines(workdir / "dropped.jsonl")] == ["外滩"]


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda tmp: [str(LANDMARKS / "records.jsonl"), "--schema", str(tmp / "nope.json")], "schema file"),
        (lambda tmp: [str(_empty(tmp)), "--schema", str(LANDMARKS / "schema.json")], "holds no records"),
    ],
    ids=["missing schema", "empty input"],
)
def test_unusable_input_is_one_red_line_and_exit_code_2(llmkit, tmp_path, make_args, message):
    result = llmkit("data", "validate", *make_args(tmp_path), "--out", str(tmp_path))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _empty(folder: Path) -> Path:
    path = folder / "records.jsonl"
    path.write_text("\n", encoding="utf-8")
    return path
