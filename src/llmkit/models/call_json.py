"""Tool calls written as JSON, read as far as the model has written them.

A streamed answer is read again each time it grows, so every reader here takes text that may stop anywhere:
it reads what is there into a `Draft` and says where a value ends, or None while it is still open. Text that
can no longer become what is expected raises `Malformed`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]]|"')  # a whole string, a bracket, or a string still open
_SCALAR = re.compile(r"[^\s,\]}]*")
_SPACE = re.compile(r"\s*")
_NUMBER_TAIL = re.compile(r"[-+.eE0-9]+")
_LITERALS = ("true", "false", "null")


@dataclass
class CallDraft:
    """One call as far as it is written: its name once whole, and its arguments' JSON text so far."""

    name: str | None = None
    arguments: str | None = None


@dataclass
class Draft:
    """Text read so far: the content outside calls, the calls begun, whether the text is a whole answer, and
    whether it cannot be one (`malformed`); `consumed` is where the text not accounted for by both begins."""

    content: str = ""
    calls: list[CallDraft] = field(default_factory=list)
    complete: bool = False
    malformed: bool = False
    consumed: int = 0


class Malformed(Exception):
    """The text cannot become calls in this format."""


def read_call_list(text: str, position: int, draft: Draft) -> int | None:
    """Read call objects separated by commas up to the closing `]`; where the list ends (None while open)."""
    while True:
        draft.consumed = position
        end = read_call(text, position, draft)
        if end is None:
            return None
        position, closed = next_item(text, end, ",", "]")
        if position is None or closed:
            return position


def read_call(text: str, position: int, draft: Draft, argument_keys: tuple[str, ...] = ("arguments",)) -> int | None:
    """Read the call object `{"name": …, "arguments": {…}}` at `position` (other keys skipped) into a new call of
    `draft`, as far as it is written; where the object ends (None while open)."""
    call = CallDraft()
    draft.calls.append(call)
    position = skip_space(text, position)
    if position == len(text):
        return None
    if text[position] != "{":
        raise Malformed
    position += 1
    while True:
        key, position = read_key(text, position)
        if position is None:
            return None
        if key in argument_keys:
            if call.arguments is not None:
                raise Malformed
            end = read_arguments(text, position, call)
        else:
            end = value_end(text, position)
            if key == "name" and end is not None:
                call.name = load_json(text[position:end])
                if not isinstance(call.name, str):
                    raise Malformed
        if end is None:
            return None
        position, closed = next_item(text, end, ",", "}")
        if position is None:
            return None
        if closed:
            if call.name is None or call.arguments is None:
                raise Malformed
            return position


def next_item(text: str, end: int, separator: str, closer: str | None) -> tuple[int | None, bool]:
    """After an item ending at `end`: where the next begins (after `separator`) or the enclosing list or
    object ends (after `closer`, and True); (None, False) when the text ends first."""
    position = skip_space(text, end)
    if position == len(text):
        return None, False
    if text[position] not in (separator, closer):
        raise Malformed
    return position + 1, text[position] == closer


def read_key(text: str, position: int) -> tuple[str | None, int | None]:
    """An object key at `position` and where its value starts; (None, None) while either is still to come."""
    position = skip_space(text, position)
    if position == len(text):
        return None, None
    if text[position] != '"':
        raise Malformed
    end = value_end(text, position)
    if end is None:
        return None, None
    colon = skip_space(text, end)
    if colon == len(text):
        return None, None
    if text[colon] != ":":
        raise Malformed
    value = skip_space(text, colon + 1)
    return (load_json(text[position:end]), value) if value < len(text) else (None, None)


def read_arguments(text: str, position: int, call: CallDraft) -> int | None:
    """The arguments object at `position` into `call` as written so far; where it ends (None while open)."""
    position = skip_space(text, position)
    if position == len(text):
        return None
    if text[position] != "{":
        raise Malformed
    end = value_end(text, position)
    call.arguments = text[position:end]
    if end is None:
        _check_prefix(call.arguments)
    elif not isinstance(load_json(call.arguments), dict):
        raise Malformed
    return end


def _check_prefix(piece: str) -> None:
    """`Malformed` unless `piece` can still grow into JSON (read by where `json` stops and why)."""
    try:
        json.loads(piece, strict=False)
    except json.JSONDecodeError as error:
        rest = piece[error.pos :]
        number = _NUMBER_TAIL.fullmatch(rest) is not None
        growing = (
            error.pos == len(piece)
            or error.msg.startswith("Unterminated string")
            or (error.msg.startswith("Invalid \\uXXXX") and len(rest) < 5)  # a \u escape still being written
            or (error.msg == "Expecting value" and (number or any(w.startswith(rest) for w in _LITERALS)))
            or (error.msg == "Expecting ',' delimiter" and number and piece[error.pos - 1].isdigit())  # "1." of "1.5"
        )
        if not growing:
            raise Malformed from None


def value_end(text: str, start: int) -> int | None:
    """Where the JSON value at `start` ends (strings and nesting followed, not checked), or None while it is open."""
    if text[start] not in '{["':  # a number, true, false or null: ended by what follows it
        end = _SCALAR.match(text, start).end()
        if end == len(text):
            return None
        load_json(text[start:end])
        return end
    depth = 0
    for token in _JSON_TOKEN.finditer(text, start):
        piece = token.group()
        if piece == '"':  # a string that does not close (yet)
            return None
        depth += 1 if piece in "{[" else -1 if piece in "}]" else 0
        if depth == 0:
            return token.end()
    return None


def partial_string(body: str) -> str:
    """The text of a JSON string cut off after `body`, up to its last whole character (escapes included)."""
    for cut in range(len(body), max(len(body) - 12, -1), -1):  # an escape is at most 12 characters (a \u pair)
        try:
            text = json.loads(f'"{body[:cut]}"', strict=False)
        except json.JSONDecodeError:
            continue
        return text[:-1] if text and "\ud800" <= text[-1] <= "\udbff" else text  # half a surrogate pair
    return ""


def load_json(piece: str) -> Any:
    """The JSON value `piece` holds; `Malformed` when it is not JSON."""
    try:
        return json.loads(piece, strict=False)
    except json.JSONDecodeError:
        raise Malformed from None


def skip_space(text: str, position: int) -> int:
    return _SPACE.match(text, position).end()
