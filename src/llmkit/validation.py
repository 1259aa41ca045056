"""Pydantic's validation errors as the one line users read, written once for every place that validates what they
give: training configs, YAML files, generation specs, sampling parameters and server requests.

Each problem reads `key: what is wrong`: the key as a path (`tasks[1].postprocess[0]`), a value error's own words,
"required" for a missing key, the caller's phrase for an unknown key, else pydantic's message with the value given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

ErrorItem = Mapping[str, Any]
MAX_SHOWN = 60


def key_path(loc: Sequence[Any]) -> str:
    """pydantic's location as users spell a key: `tasks[1].postprocess[0]`."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def problem(item: ErrorItem, unknown: str = "unknown key") -> str:
    """What is wrong with one key (`unknown`: the words for a key the model does not have)."""
    if item["type"] == "extra_forbidden":
        return unknown
    if item["type"] == "missing":
        return "required"
    if item["type"] == "value_error":
        return str(item["ctx"]["error"])
    shown = repr(item.get("input"))
    return f"{item['msg']} (got {shown if len(shown) <= MAX_SHOWN else shown[: MAX_SHOWN - 3] + '...'})"


def describe(
    errors: Iterable[ErrorItem], unknown: str = "unknown key", key: Callable[[Sequence[Any]], str] = key_path
) -> str:
    """Every problem as `key: what is wrong`, joined by "; " (duplicates once); `key` spells a location."""
    lines = []
    for item in errors:
        where = key(item["loc"])
        lines.append(f"{where}: {problem(item, unknown)}" if where else problem(item, unknown))
    return "; ".join(dict.fromkeys(lines))
