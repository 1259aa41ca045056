"""`calibrate`: a person or a fix-up script settles each invalid record; every one ends somewhere, nothing twice."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

from llmkit.datagen.calibrate import (
    CalibrationSession,
    apply_fix,
    editable_text,
    load_fix,
    run_interactive,
)
from llmkit.datagen.validate import (
    InvalidRecord,
    ValidationSetupError,
    load_rules,
    load_schema,
    validate_file,
    validate_record,
)
from llmkit.jsonl import read_jsonl

LANDMARKS = Path(__file__).parent / "data" / "landmarks"


@pytest.fixture(scope="module")
def check():
    return partial(validate_record, validator=load_schema(LANDMARKS / "schema.json"), rules=load_rules(LANDMARKS / "rules.py"))


@pytest.fixture
def invalid(tmp_path, check) -> Path:
    """invalid.jsonl of the landmark records: 8 rejects (lines 3, 5-11 of records.jsonl, line 9 not JSON)."""
    validate_file(LANDMARKS / "records.jsonl", check.keywords["validator"], check.keywords["rules"], tmp_path)
    return tmp_path / "invalid.jsonl"


def placement(folder: Path) -> dict[str, list[str]]:
    """Every invalid.jsonl id with the files it ended in: the invariant is exactly one each."""
    found: dict[str, list[str]] = {entry["id"]: [] for entry in read_jsonl(folder / "invalid.jsonl")}
    for record in read_jsonl(folder / "calibrated.jsonl"):
        found[record["_meta"]["calibration"]["id"]].append("calibrated")
    for name in ("dropped", "remaining"):
        for entry in read_jsonl(folder / f"{name}.jsonl"):
            found[entry["id"]].append(name)
    return found


def landmarks(folder: Path, name: str) -> list[str]:
    """The landmark of each line of calibrated.jsonl (plain records) or of an invalid.jsonl-style file."""
    if name == "calibrated.jsonl":
        return [record["landmark"] for record in read_jsonl(folder / name)]
    return [entry["record"]["landmark"] for entry in read_jsonl(folder / name)]


class Scripted:
    """A person who answers from a script: choices in order and the texts they type in the editor."""

    def __init__(self, choices: list[str], edits: list[str | None] | None = None) -> None:
        self.choices, self.edits = list(choices), list(edits or [])
        self.asked: list[tuple[str, int]] = []

    def ask(self, entry: InvalidRecord, position: int, total: int) -> str:
        self.asked.append((entry.source, len(entry.errors)))
        return self.choices.pop(0)

    def edit(self, text: str) -> str | None:
        return self.edits.pop(0)


def test_a_fix_script_calibrates_what_it_repairs_drops_what_it_rejects_and_keeps_the_rest(invalid, check):
    with CalibrationSession(invalid, check) as session:
        outcome = apply_fix(session, load_fix(LANDMARKS / "fix.py"))
    folder = invalid.parent

    assert outcome == {"fixed": 2, "dropped": 1, "still invalid": 4, "not JSON (edit by hand)": 1}
    assert landmarks(folder, "calibrated.jsonl") == ["外滩", "西湖"]
    bund = next(read_jsonl(folder / "calibrated.jsonl"))
    assert (bund["latitude"], bund["longitude"]) == (31.24, 121.49)
    assert bund["_meta"]["fields"]["landmark"]["name"] == "外滩"  # the generator's bookkeeping survives
    assert bund["_meta"]["calibration"]["how"] == "fixed"
    assert bund["_meta"]["calibration"]["source"] == "records.jsonl line 5"

    dropped = list(read_jsonl(folder / "dropped.jsonl"))
    assert [(entry["record"]["landmark"], entry["reason"]) for entry in dropped] == [("黄鹤楼", "dropped by fix script")]
    assert dropped[0]["errors"][0]["path"] == "$.answer_zh"

    remaining = {entry["source"]: entry for entry in read_jsonl(folder / "remaining.jsonl")}
    assert list(remaining) == [f"records.jsonl line {n}" for n in (3, 7, 9, 10, 11)]
    assert remaining["records.jsonl line 7"]["errors"][0]["path"] == "$.aliases[1]"
    assert session.totals() == {"calibrated": 2, "dropped": 1, "remaining": 5}


def test_running_a_fix_again_starts_from_the_records_validate_wrote(invalid, check):
    for _ in range(2):
        with CalibrationSession(invalid, check) as session:
            apply_fix(session, load_fix(LANDMARKS / "fix.py"))
    assert landmarks(invalid.parent, "calibrated.jsonl") == ["外滩", "西湖"]  # nothing calibrated twice
    assert all(len(places) == 1 for places in placement(invalid.parent).values())


def test_a_fix_that_raises_leaves_the_record_with_the_exception_among_its_errors(invalid, check, tmp_path):
    script = tmp_path / "fix_raises.py"
    script.write_text("def fix(record):\n    return record['missing']\n", encoding="utf-8")
    with CalibrationSession(invalid, check) as session:
        outcome = apply_fix(session, load_fix(script))
    assert outcome == {"still invalid": 7, "not JSON (edit by hand)": 1}
    first = next(read_jsonl(invalid.parent / "remaining.jsonl"))
    assert first["errors"][0] == {"kind": "fix", "path": "$", "message": "fix raised KeyError: 'missing'", "rule": "fix"}
    assert first["record"]["landmark"] == "颐和园"


def test_a_person_edits_accepts_and_drops_then_quits_and_resumes_with_only_the_undecided(invalid, check):
    summer_palace = json.loads(editable_text(InvalidRecord.from_dict(next(read_jsonl(invalid)))))
    summer_palace["latitude"] = 39.9999
    person = Scripted(
        ["edit", "edit", "accept", "drop", "edit", "edit", "quit"],
        [None, json.dumps(summer_palace, ensure_ascii=False), '{"landmark": "布达拉宫"', '{"landmark": "布达拉宫"}'],
    )
    with CalibrationSession(invalid, check) as session:
        outcome = run_interactive(session, person.ask, person.edit)

    assert outcome == {"edited": 1, "accepted": 1, "dropped": 1, "skipped": 1}
    # 颐和园 is asked again after an edit left unchanged (None); 布达拉宫 after each edit that is still
    # invalid: first not JSON, then missing five fields
    asked = [(3, 1), (3, 1), (5, 1), (6, 1), (7, 1), (7, 1), (7, 5)]
    assert person.asked == [(f"records.jsonl line {n}", errors) for n, errors in asked]
    calibrated = list(read_jsonl(invalid.parent / "calibrated.jsonl"))
    assert [(record["landmark"], record["_meta"]["calibration"]["how"]) for record in calibrated] == [
        ("颐和园", "edited"),
        ("外滩", "accepted"),
    ]
    assert "accepted_errors" not in calibrated[0]["_meta"]["calibration"]
    assert calibrated[1]["_meta"]["calibration"]["accepted_errors"][0]["rule"] == "maximum"
    assert landmarks(invalid.parent, "dropped.jsonl") == ["西湖"]

    terracotta = {
        "id": "lm-0008", "landmark": "兵马俑", "question_zh": "兵马俑在哪里？", "answer_zh": "兵马俑在陕西西安临潼区。",
        "latitude": 34.3841, "longitude": 109.2785,
        "_meta": {"fields": {"landmark": {"name": "兵马俑", "latitude": 34.3841, "longitude": 109.2785}}},
    }
    resumed = Scripted(["skip", "accept", "accept", "edit", "drop", "quit"], [json.dumps(terracotta, ensure_ascii=False)])
    with CalibrationSession(invalid, check) as session:
        run_interactive(session, resumed.ask, resumed.edit)
    # only the undecided come back, 布达拉宫 as it was last edited; accepting a line that is not JSON is refused
    assert resumed.asked == [(f"records.jsonl line {n}", errors) for n, errors in [(7, 5), (8, 1), (9, 1), (9, 1), (10, 1), (11, 1)]]
    assert landmarks(invalid.parent, "calibrated.jsonl") == ["颐和园", "外滩", "黄鹤楼", "兵马俑"]
    assert landmarks(invalid.parent, "remaining.jsonl") == ["布达拉宫", "鼓浪屿"]
    assert session.totals() == {"calibrated": 4, "dropped": 2, "remaining": 2}


def test_every_invalid_record_ends_in_exactly_one_place(invalid, check):
    with CalibrationSession(invalid, check) as session:
        apply_fix(session, load_fix(LANDMARKS / "fix.py"))
    person = Scripted(["accept", "drop", "skip", "quit"])
    with CalibrationSession(invalid, check) as session:
        run_interactive(session, person.ask, person.edit)

    places = placement(invalid.parent)
    assert len(places) == 8 and all(len(found) == 1 for found in places.values())
    assert sorted(found[0] for found in places.values()) == ["calibrated"] * 3 + ["dropped"] * 2 + ["remaining"] * 3


def test_a_session_needs_an_invalid_jsonl_and_a_fix_script_needs_a_fix_function(tmp_path, check):
    with pytest.raises(ValidationSetupError, match="does not exist; run `llmkit data validate` first"):
        CalibrationSession(tmp_path / "invalid.jsonl", check)
    script = tmp_path / "fixes.py"
    script.write_text("def repair(record):\n    return record\n", encoding="utf-8")
    with pytest.raises(ValidationSetupError, match="defines no `def fix"):
        load_fix(script)
