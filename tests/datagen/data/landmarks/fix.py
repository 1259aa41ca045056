"""Fix-ups for landmark records: numbers written as text, swapped coordinates; empty answers are dropped."""


def fix(record: dict) -> dict | None:
    if not record.get("answer_zh"):
        return None
    for axis in ("latitude", "longitude"):
        if isinstance(record.get(axis), str):
            record[axis] = float(record[axis])
    if abs(record.get("latitude", 0)) > 90:
        record["latitude"], record["longitude"] = record["longitude"], record["latitude"]
    return record
