"""Route a record to its task: tasks are tried in the order the pipeline lists them, and the first match wins."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llmkit.pipeline.config import Match, Task


def matches(match: Match, record: Mapping[str, Any], prompt_field: str) -> bool:
    """Whether the record passes the test; a record without the tested field never does."""
    field = match.field or prompt_field
    if field not in record:
        return False
    value = record[field]
    if "equals" in match.model_fields_set:
        return value == match.equals
    if match.one_of is not None:
        return value in match.one_of
    if match.contains is not None:
        return match.contains in str(value)
    if match.regex is not None:
        return match.regex.search(str(value)) is not None
    return bool(value)


def route(tasks: Sequence[Task], record: Mapping[str, Any], prompt_field: str) -> Task | None:
    """The first task whose match the record passes (a task without one takes every record); None if none does."""
    return next((task for task in tasks if task.match is None or matches(task.match, record, prompt_field)), None)
