"""Post-processors: turn a model's raw answer into the value a task wants, however badly the answer is formed.

Each is a pure function `(text, record, **options) -> value`; `record` is the input record after the
task's transforms, so a step can read, say, how many items the prompt listed. They never raise on odd
model output: a value that cannot be found comes back as None (or an empty list), and a chain stops at
the first None. A user's own post-processor is any function of that shape, named by dotted path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llmkit.pipeline.steps import Step

Record = Mapping[str, Any]
_INTEGER = re.compile(r"\d+")
_NUMBERED_LINE = re.compile(r"^\s*(\d+)[.)]\s", re.MULTILINE)
_PYTHON_LITERALS = {"True": "true", "False": "false", "None": "null"}


def strip(text: str, record: Record) -> str:
    """The answer without surrounding whitespace."""
    return text.strip()


def first_digit(text: str, record: Record) -> int | None:
    """The first digit in the answer (a multiple-choice option number), or None when there is none."""
    found = re.search(r"\d", text)
    return int(found.group()) if found else None


def digits_list(
    text: str, record: Record, *, k: int | None = None, low: int = 1, high: int | None = None,
    items_field: str | None = None,
) -> list[int]:
    """The first `k` distinct integers of the answer within [low, high], in the order given.

    `items_field` names a record field holding a numbered list ("1. …" lines): its last number is `high`.
    """
    high = high if items_field is None else numbered_items(record.get(items_field, ""))
    numbers = [number for number in _integers(text) if number >= low and (high is None or number <= high)]
    return _distinct(numbers)[:k]


def permutation(text: str, record: Record, *, n: int | None = None, items_field: str | None = None) -> list[int]:
    """A full ranking of 1..n from the answer: repeats and numbers out of range dropped, missing items appended
    in ascending order. `n` comes from `items_field`'s numbered list, else the largest number named."""
    if items_field is not None:
        n = numbered_items(record.get(items_field, ""))
    numbers = _integers(text)
    if n is None:
        n = max(numbers, default=0)
    ranked = _distinct([number for number in numbers if 1 <= number <= n])
    return ranked + sorted(set(range(1, n + 1)) - set(ranked))


def choice_letter(text: str, record: Record, *, letters: str = "ABCD", as_index: bool = False) -> str | int | None:
    """The option letter the answer picks ("B", "(B)", "Answer: B", "B. …"), or its 0-based index with `as_index`."""
    options = re.escape(letters)
    patterns = (
        rf"(?i:answer)\s*(?:is|:)?\s*\(?([{options}])\b",  # "the answer is (C)"
        rf"\(([{options}])\)",  # "(C)"
        rf"^\s*([{options}])(?:[).:,]|\s*$)",  # "C", "C) …", "C. …" at the start
        rf"\b([{options}])\b(?!\s+[a-z])",  # a lone letter, but not the article in "A good choice is B"
        rf"\b([{options}])\b",
    )
    for pattern in patterns:
        found = re.search(pattern, text)
        if found:
            return letters.index(found.group(1)) if as_index else found.group(1)
    return None


def json_object(text: str, record: Record) -> dict[str, Any] | None:
    """The first JSON object in the answer, repaired if need be: single quotes, trailing commas, Python's
    True/False/None, and an object cut off by max_tokens (its open strings and brackets closed). None if no `{`."""
    start = text.find("{")
    if start < 0:
        return None
    segments, closers = _scan_object(text[start:])
    raw = "".join(piece for _, piece in segments)
    for candidate in (raw + "".join(reversed(closers)), _repaired(segments, closers)):
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        return value if isinstance(value, dict) else None
    return None


def regex(text: str, record: Record, *, pattern: str, group: int | str | None = None, all: bool = False) -> Any:
    """The first match of `pattern` (every match with `all`): group `group`, by default group 1 if the
    pattern has groups, else the whole match. None when nothing matches."""
    compiled = re.compile(pattern)
    chosen = group if group is not None else (1 if compiled.groups else 0)
    if all:
        return [found.group(chosen) for found in compiled.finditer(text)]
    found = compiled.search(text)
    return found.group(chosen) if found else None


def split_list(text: str, record: Record, *, separator: str = ",") -> list[str]:
    """The items of a list answer ("shoes, red shoes"): split on `separator` and newlines, stripped of
    whitespace, bullets and quotes, empty and repeated items dropped."""
    pieces = re.split(f"{re.escape(separator)}|\n", text)
    items = (piece.strip().lstrip("-*•").strip().strip("\"'") for piece in pieces)
    return _distinct([item for item in items if item])


POSTPROCESSORS: dict[str, Callable[..., Any]] = {
    "strip": strip,
    "first_digit": first_digit,
    "digits_list": digits_list,
    "permutation": permutation,
    "choice_letter": choice_letter,
    "json_object": json_object,
    "regex": regex,
    "split_list": split_list,
}


def run_chain(steps: Sequence[Step], text: str, record: Record) -> tuple[Any, list[dict[str, Any]]]:
    """The value after every step, and each step's output in turn (the trace); stops at the first None."""
    value: Any = text
    trail = []
    for step in steps:
        if value is None:
            break
        value = step(value, record)
        trail.append({"step": step.name, "output": value})
    return value, trail


def numbered_items(text: Any) -> int | None:
    """How many items a numbered list ("1. …" / "1) …" lines) has: its largest number; None without one."""
    numbers = [int(number) for number in _NUMBERED_LINE.findall(str(text))]
    return max(numbers) if numbers else None


def _integers(text: str) -> list[int]:
    return [int(number) for number in _INTEGER.findall(text)]


def _distinct(values: list[Any]) -> list[Any]:
    """The values in order, each kept at its first place only."""
    return list(dict.fromkeys(values))


def _scan_object(text: str) -> tuple[list[tuple[bool, str]], list[str]]:
    """Cut `text` (starting at `{`) after its balanced object: the pieces as (inside a string?, text), and the
    closing brackets still owed when the text ends first (an answer cut off by max_tokens)."""
    segments: list[tuple[bool, str]] = []
    closers: list[str] = []
    quote, piece, escaped = None, "", False
    for char in text:
        piece += char
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                segments.append((True, piece))
                quote, piece = None, ""
            continue
        if char in "\"'":
            segments.append((False, piece[:-1]))
            quote, piece = char, char
        elif char in "{[":
            closers.append("}" if char == "{" else "]")
        elif char in "}]" and closers:
            closers.pop()
            if not closers:
                break
    if quote:  # the text ended inside a string: close it (after a dangling backslash, which would escape the quote)
        piece = piece.removesuffix("\\") if escaped else piece
    segments.append((quote is not None, piece + (quote or "")))
    return segments, closers


def _repaired(segments: list[tuple[bool, str]], closers: list[str]) -> str:
    """The scanned object as JSON: strings double-quoted, Python literals and trailing commas fixed, closed."""
    text = "".join(_double_quoted(piece) if in_string else _json_punctuation(piece) for in_string, piece in segments)
    text = text.rstrip()
    if closers and text.endswith(":"):
        text += " null"  # cut off after a key
    return text.removesuffix(",") + "".join(reversed(closers)) if closers else text


def _double_quoted(piece: str) -> str:
    """A string written in single quotes as a JSON string; double-quoted ones stay as they are."""
    if piece.startswith('"'):
        return piece
    inner = piece[1:-1].replace("\\'", "'").replace('"', '\\"')
    return f'"{inner}"'


def _json_punctuation(piece: str) -> str:
    """Text between strings with Python's True/False/None as JSON literals and commas before `}` or `]` dropped."""
    piece = re.sub(r"\b(True|False|None)\b", lambda found: _PYTHON_LITERALS[found[1]], piece)
    return re.sub(r",(\s*)(?=[}\]])", r"\1", piece)
