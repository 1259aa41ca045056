"""Randomised fields: each type draws what its spec allows, the same seed always gives the same values."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from llmkit.datagen.fields import FieldSpec, draw_fields

ROOT = Path(__file__).resolve().parents[2]
FIELDS = TypeAdapter(dict[str, FieldSpec])


def fields(specs: dict, base_dir: Path = ROOT) -> dict:
    """Field specs as `load_spec` validates them: files relative to `base_dir`."""
    return FIELDS.validate_python(specs, context={"base_dir": base_dir})


def draws(specs: dict, n: int = 300, base_dir: Path = ROOT) -> list[dict]:
    validated = fields(specs, base_dir)
    return [draw_fields(validated, seed) for seed in range(n)]


def test_uuid_is_a_version_4_uuid_drawn_from_the_record_seed():
    values = [record["id"] for record in draws({"id": {"type": "uuid"}}, 50)]
    assert all(uuid.UUID(value).version == 4 for value in values)
    assert len(set(values)) == 50
    assert draws({"id": {"type": "uuid"}}, 50) == draws({"id": {"type": "uuid"}}, 50)


def test_choice_picks_every_listed_value_and_honours_weights():
    picked = {record["style"] for record in draws({"style": {"type": "choice", "values": ["短", "long", 3]}})}
    assert picked == {"短", "long", 3}
    weighted = {record["style"] for record in draws({"style": {"type": "choice", "values": ["a", "b"], "weights": [1, 0]}})}
    assert weighted == {"a"}


def test_choice_from_a_file_reads_one_value_per_line(tmp_path):
    (tmp_path / "cities.txt").write_text("北京\n\nShanghai\n", encoding="utf-8")
    picked = {record["city"] for record in draws({"city": {"type": "choice", "file": "cities.txt"}}, base_dir=tmp_path)}
    assert picked == {"北京", "Shanghai"}


def test_integer_covers_its_range_with_both_ends_included():
    values = {record["n"] for record in draws({"n": {"type": "integer", "min": -2, "max": 2}})}
    assert values == {-2, -1, 0, 1, 2}


def test_number_stays_in_range_and_is_rounded():
    values = [record["x"] for record in draws({"x": {"type": "number", "min": 1.5, "max": 2.5, "decimals": 2}})]
    assert all(1.5 <= value <= 2.5 and round(value, 2) == value for value in values)
    assert len(set(values)) > 50


def test_date_is_a_day_in_range_in_the_requested_format():
    spec = {"day": {"type": "date", "start": "2024-02-27", "end": "2024-03-02", "format": "%d.%m.%Y"}}
    days = {datetime.strptime(record["day"], "%d.%m.%Y").date() for record in draws(spec)}
    assert days == {date(2024, 2, 27), date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1), date(2024, 3, 2)}


def test_csv_samples_whole_rows_from_every_part_of_the_file():
    rows = [record["landmark"] for record in draws({"landmark": {"type": "csv", "file": "examples/data/landmarks.csv"}})]
    assert set(rows[0]) == {"name_en", "name_zh", "city", "country", "latitude", "longitude"}
    names = {row["name_en"] for row in rows}
    assert {"Eiffel Tower", "Forbidden City", "Sydney Opera House"} <= names and len(names) == 33
    forbidden_city = next(row for row in rows if row["name_en"] == "Forbidden City")
    assert forbidden_city == {"name_en": "Forbidden City", "name_zh": "故宫", "city": "Beijing", "country": "China",
                              "latitude": "39.9160", "longitude": "116.3907"}


def test_csv_column_takes_one_value_and_reads_quoted_newlines_and_a_bom(tmp_path):
    (tmp_path / "notes.csv").write_text('\ufeffname,note\nA,"two\nlines"\n', encoding="utf-8")
    validated = fields({"note": {"type": "csv", "file": "notes.csv", "column": "note"}}, tmp_path)
    assert draw_fields(validated, 0) == {"note": "two\nlines"}


def test_the_same_seed_gives_the_same_fields_and_seeds_differ():
    spec = {
        "id": {"type": "uuid"}, "n": {"type": "integer", "min": 0, "max": 10**9},
        "row": {"type": "csv", "file": "examples/data/landmarks.csv"},
    }
    assert draws(spec, 20) == draws(spec, 20)
    assert len({record["id"] for record in draws(spec, 20)}) == 20


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "integer", "min": 5, "max": 1}, "min (5) must not exceed max (1)"),
        ({"type": "date", "start": "2024-05-01", "end": "2024-01-01"}, "start (2024-05-01) must not exceed end"),
        ({"type": "choice"}, "give either values"),
        ({"type": "choice", "values": ["a"], "weights": [1, 2]}, "weights has 2 entries for 1 values"),
        ({"type": "choice", "values": []}, "nothing to choose from"),
        ({"type": "csv", "file": "examples/data/landmarks.csv", "column": "height"}, "no column 'height'"),
        ({"type": "csv", "file": "missing.csv"}, "cannot read"),
        ({"type": "colour"}, "does not match any of the expected tags"),
        ({"type": "integer", "min": 1, "max": 2, "step": 1}, "Extra inputs are not permitted"),
    ],
)
def test_a_bad_field_spec_is_refused_with_the_reason(spec, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        fields({"f": spec})
