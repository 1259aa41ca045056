"""Rules for landmark records: the coordinates must be those of the landmark the prompt named."""

TOLERANCE = 0.005


def check_coordinates(record: dict) -> str | None:
    """Latitude and longitude within ±0.005° of the point the generator asked about."""
    point = record["_meta"]["fields"]["landmark"]
    for axis in ("latitude", "longitude"):
        if abs(record[axis] - point[axis]) > TOLERANCE:
            return f"{axis} {record[axis]} is more than {TOLERANCE} from {point['name']}'s {point[axis]}"
    return None


def check_answer_names_landmark(record: dict) -> str | None:
    """The answer has to mention the landmark it is about."""
    if record["landmark"] not in record["answer_zh"]:
        return f"answer_zh does not mention {record['landmark']}"
    return None
