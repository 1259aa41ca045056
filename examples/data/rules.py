"""Rules for the landmark records of spec.yaml: `llmkit data validate FILE --schema schema.json --rules rules.py`.

Every top-level function named `check_*` takes one record and returns None when it is fine, or a
string saying what is wrong. A record carries the fields it was generated from in
record["_meta"]["fields"], so a rule can compare the model's answer with the facts it was given.
"""

from __future__ import annotations

import re

# About 500 m: inside a landmark's own grounds, never at the neighbouring one.
COORDINATE_TOLERANCE_DEG = 0.005
CHINESE = re.compile(r"[\u4e00-\u9fff]")


def _landmark(record: dict) -> dict:
    """The landmarks.csv row the record was generated from."""
    return record["_meta"]["fields"]["landmark"]


def check_coordinates_match_landmark(record: dict) -> str | None:
    """Latitude and longitude within ±0.005° of the landmark's coordinates in landmarks.csv."""
    row = _landmark(record)
    for axis in ("latitude", "longitude"):
        expected, given = float(row[axis]), record[axis]
        if abs(given - expected) > COORDINATE_TOLERANCE_DEG:
            return f"{axis} {given} is not {row['name_en']}'s {expected} (±{COORDINATE_TOLERANCE_DEG})"
    return None


def check_id_is_the_given_one(record: dict) -> str | None:
    """The model repeats the id drawn for the record instead of inventing one."""
    given = record["_meta"]["fields"]["id"]
    return None if record["id"] == given else f"id {record['id']!r} is not the record id {given!r}"


def check_landmark_is_the_given_one(record: dict) -> str | None:
    """The record is about the landmark it was asked about, not the example's."""
    expected = _landmark(record)["name_en"]
    return None if record["landmark"] == expected else f"landmark {record['landmark']!r} is not {expected!r}"


def check_chinese_is_chinese(record: dict) -> str | None:
    """The Chinese question and answer are written in Chinese characters."""
    for key in ("question_zh", "answer_zh"):
        if not CHINESE.search(record[key]):
            return f"{key} has no Chinese characters: {record[key]!r}"
    return None


def check_english_is_english(record: dict) -> str | None:
    """The English question and answer contain no Chinese characters."""
    for key in ("question_en", "answer_en"):
        if CHINESE.search(record[key]):
            return f"{key} contains Chinese characters: {record[key]!r}"
    return None
