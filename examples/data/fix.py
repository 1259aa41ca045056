"""Fix-ups for landmark records the model got partly wrong: `llmkit data calibrate DIR --schema schema.json
--rules rules.py --fix fix.py`. The facts the record was generated from are in record["_meta"]["fields"],
so the id, the landmark's name and its coordinates are put back from there; the text the model wrote is
kept, and a record whose Chinese is missing still fails the rules and waits for a person.
"""

from __future__ import annotations


def fix(record: dict) -> dict | None:
    """The record with the given id, landmark name and coordinates; None drops a record with no answer at all."""
    if not record.get("answer_zh") and not record.get("answer_en"):
        return None
    fields = record["_meta"]["fields"]
    landmark = fields["landmark"]
    record["id"] = fields["id"]
    record["landmark"] = landmark["name_en"]
    record["latitude"] = float(landmark["latitude"])
    record["longitude"] = float(landmark["longitude"])
    return record
