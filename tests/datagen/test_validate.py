"""`validate`: every record checked against a JSON Schema and rule functions, split into valid and invalid files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llmkit.datagen.validate import (
    Failure,
    ValidationSetupError,
    default_out_dir,
    json_path,
    load_rules,
    load_schema,
    validate_file,
    validate_record,
)
from llmkit.errors import LLMKitError
from llmkit.train.readers import DatasetError
from llmkit.user_code import UserCodeError

LANDMARKS = Path(__file__).parent / "data" / "landmarks"
RECORDS = LANDMARKS / "records.jsonl"


@pytest.fixture(scope="module")
def validator():
    return load_schema(LANDMARKS / "schema.json")


@pytest.fixture(scope="module")
def rules():
    return load_rules(LANDMARKS / "rules.py")


def landmark(line: int) -> dict:
    """The record on a (1-based) line of records.jsonl."""
    return json.loads(RECORDS.read_text(encoding="utf-8").splitlines()[line - 1])


def test_a_good_record_passes_with_its_meta_left_out_of_the_schema(validator, rules):
    record = landmark(1)
    assert "_meta" in record  # the schema forbids unknown keys, so `_meta` must not be checked against it
    assert validate_record(record, validator, rules) == []


def test_schema_failures_name_the_json_path_of_nested_values(validator, rules):
    alias = validate_record(landmark(7), validator, rules)
    assert alias == [Failure("schema", "$.aliases[1]", "'' should be non-empty", "minLength")]

    broken = {key: value for key, value in landmark(6).items() if key != "longitude"}
    failures = validate_record(broken, validator, rules)
    assert {(f.path, f.rule) for f in failures} == {("$", "required"), ("$.latitude", "type")}
    assert any("'longitude' is a required property" == f.message for f in failures)


def test_json_path_is_written_like_jsonschemas():
    assert json_path(["aliases", 1]) == "$.aliases[1]"
    assert json_path(["名称", "it's"]) == "$['名称']['it\\'s']"


def test_a_rule_that_returns_a_message_fails_the_record(validator, rules):
    coordinates = validate_record(landmark(3), validator, rules)
    assert coordinates == [
        Failure("rule", "$", "latitude 40.08 is more than 0.005 from 颐和园's 39.9999", "check_coordinates")
    ]
    answer = validate_record(landmark(11), validator, rules)
    assert [(f.rule, f.message) for f in answer] == [("check_answer_names_landmark", "answer_zh does not mention 鼓浪屿")]


def test_a_rule_that_raises_fails_the_record_with_the_exception_text(validator, rules):
    failures = validate_record(landmark(10), validator, rules)  # its _meta has no `fields`
    assert failures == [Failure("rule", "$", "raised KeyError: 'fields'", "check_coordinates")]


def test_rules_run_only_on_records_that_match_the_schema(validator, rules):
    """A rule may read required fields without guarding: a record missing them fails on the schema alone."""
    failures = validate_record({"id": "lm-0099"}, validator, rules)
    assert {f.kind for f in failures} == {"schema"}


def test_a_rule_cannot_change_the_record_that_is_written(validator):
    def check_and_scribble(record: dict) -> None:
        record["landmark"] = "changed"
        record["_meta"].clear()

    record = landmark(1)
    assert validate_record(record, validator, [check_and_scribble]) == []
    assert record == landmark(1)


def test_a_value_that_is_not_an_object_is_invalid(validator, rules):
    assert validate_record(["故宫"], validator, rules) == [
        Failure("parse", "$", "a record must be a JSON object, not an array", "object")
    ]


def test_validate_file_splits_every_row_into_valid_or_invalid(tmp_path, validator, rules):
    report = validate_file(RECORDS, validator, rules, tmp_path)
    rows = [line for line in RECORDS.read_text(encoding="utf-8").splitlines() if line.strip()]
    valid = (tmp_path / "valid.jsonl").read_text(encoding="utf-8").splitlines()
    invalid = [json.loads(line) for line in (tmp_path / "invalid.jsonl").read_text(encoding="utf-8").splitlines()]

    assert (report.rows, report.valid, report.invalid) == (10, 2, 8)
    assert len(valid) + len(invalid) == len(rows) == report.rows
    assert [json.loads(line) for line in valid] == [landmark(1), landmark(2)]  # `_meta` kept as it was
    assert "故宫位于北京市中心" in valid[0] and "\\u" not in valid[0]
    assert [entry["source"] for entry in invalid][:2] == ["records.jsonl line 3", "records.jsonl line 5"]
    assert invalid[0]["record"] == landmark(3)
    assert invalid[1]["errors"] == [
        {"kind": "schema", "path": "$.latitude", "message": "121.49 is greater than the maximum of 90", "rule": "maximum"}
    ]


def test_a_line_that_is_not_json_is_an_invalid_record_that_keeps_its_text(tmp_path, validator, rules):
    validate_file(RECORDS, validator, rules, tmp_path)
    lines = (tmp_path / "invalid.jsonl").read_text(encoding="utf-8").splitlines()
    broken = next(json.loads(line) for line in lines if '"parse"' in line)
    assert broken["source"] == "records.jsonl line 9" and broken["record"] is None
    assert broken["text"] == RECORDS.read_text(encoding="utf-8").splitlines()[8]
    assert broken["errors"][0]["message"].startswith("not valid JSON")
    assert "line 9" in broken["errors"][0]["message"]
    assert "兵马俑" in lines[lines.index(json.dumps(broken, ensure_ascii=False, separators=(", ", ": ")))]


def test_the_report_groups_failures_by_check_and_by_path(tmp_path, validator, rules):
    validate_file(RECORDS, validator, rules, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert (report["rows"], report["valid"], report["invalid"]) == (10, 2, 8)
    assert report["failures_by_check"]["rule check_coordinates"] == 2
    assert report["failures_by_check"]["parse json"] == 1
    assert report["failures_by_path"]["$.latitude"] == 2
    assert report["top_reasons"][0] == {
        "check": "rule check_coordinates",
        "path": "$",
        "count": 2,
        "example": "latitude 40.08 is more than 0.005 from 颐和园's 39.9999",
    }
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "rows read: 10 (valid 2, invalid 8)" in markdown
    assert "| schema minLength | $.aliases[1] | 1 | '' should be non-empty |" in markdown
    assert "answer_zh does not mention 鼓浪屿" in markdown


def test_a_second_run_replaces_the_files_and_gives_the_same_ids(tmp_path, validator, rules):
    validate_file(RECORDS, validator, rules, tmp_path)
    first = (tmp_path / "invalid.jsonl").read_text(encoding="utf-8")
    validate_file(RECORDS, validator, rules, tmp_path)
    assert (tmp_path / "invalid.jsonl").read_text(encoding="utf-8") == first
    assert len((tmp_path / "valid.jsonl").read_text(encoding="utf-8").splitlines()) == 2


def test_a_folder_is_validated_into_a_subfolder_so_a_rerun_reads_only_the_inputs(tmp_path, validator, rules):
    shutil.copy(RECORDS, tmp_path / "records.jsonl")
    for _ in range(2):
        report = validate_file(tmp_path, validator, rules, default_out_dir(tmp_path))
    assert report.out_dir == tmp_path / "validated" and report.rows == 10


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _write_gbk(path: Path) -> Path:
    """A JSONL file of good records (more than one read buffer, so output has begun) and then one saved as GBK."""
    path.write_bytes(RECORDS.read_bytes().splitlines(keepends=True)[0] * 100 + '{"landmark": "故宫"}\n'.encode("gbk"))
    return path


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda tmp: load_schema(tmp / "missing.json"), ValidationSetupError, "schema file .*missing.json does not exist"),
        (lambda tmp: load_schema(_write(tmp / "s.json", "{'type': 1}")), ValidationSetupError, "is not valid JSON: .* line 1"),
        (lambda tmp: load_schema(_write(tmp / "s.json", '{"type": "strin"}')), ValidationSetupError, "not a valid JSON Schema: .* at \\$.type"),
        (lambda tmp: load_schema(_write(tmp / "s.json", "[]")), ValidationSetupError, "must hold a JSON object, not an array"),
        (lambda tmp: load_rules(_write(tmp / "r.py", "def rule(record):\n    return None\n")), ValidationSetupError, "defines no check_\\* functions"),
        (lambda tmp: load_rules(_write(tmp / "r.py", "def check_x(record)\n")), UserCodeError, "failed to import: SyntaxError"),
        (lambda tmp: load_rules(tmp / "nope.py"), UserCodeError, "rules file .*nope.py does not exist"),
        (lambda tmp: validate_file(_write(tmp / "in.jsonl", "\n\n"), load_schema(LANDMARKS / "schema.json"), [], tmp), DatasetError, "holds no records"),
        (lambda tmp: validate_file(tmp / "absent.jsonl", load_schema(LANDMARKS / "schema.json"), [], tmp), DatasetError, "does not exist"),
        (lambda tmp: validate_file(_write_gbk(tmp / "in.jsonl"), load_schema(LANDMARKS / "schema.json"), [], tmp), DatasetError, "is not UTF-8 text"),
        (lambda tmp: validate_file(_write(tmp / "valid.jsonl", "{}\n"), load_schema(LANDMARKS / "schema.json"), [], tmp), ValidationSetupError, "would write over its input"),
    ],
    ids=["missing schema", "schema not JSON", "invalid schema", "schema not an object", "no check functions", "rules do not import", "missing rules", "empty input", "missing input", "input not UTF-8", "output over input"],
)
def test_unusable_inputs_raise_one_clear_user_error(tmp_path, make, error, message):
    with pytest.raises(error, match=message) as raised:
        make(tmp_path)
    assert isinstance(raised.value, LLMKitError) and "\n" not in str(raised.value)
    assert not list(tmp_path.glob("*.partial"))  # a run that stops half way leaves no half-written file
