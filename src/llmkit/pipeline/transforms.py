"""Input transforms and message templates: what a task does to a record before the model sees it.

A transform is `transform(record, **options) -> record`, returning the record with fields added or
changed (the built-in `split`, or a user's function by dotted path). The system and user messages are
Jinja templates over the transformed record's fields; a name a template uses but the record lacks is
an error for that record, never an empty string in the prompt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jinja2

from llmkit.pipeline.steps import Step, StepError

Record = dict[str, Any]
_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


def split(
    record: Record, *, field: str, separator: str | None = None, pattern: str | None = None,
    into: Sequence[str] = ("instruction", "input"),
) -> Record:
    """Split the text in `field` at the first `separator` (literal) or `pattern` (regex) into two fields
    named by `into` (instruction and input), each stripped; without a match the whole text is the input."""
    if (separator is None) == (pattern is None):
        raise ValueError("give split either separator (literal text) or pattern (a regular expression)")
    if len(into) != 2:
        raise ValueError(f"into names the two fields to fill, e.g. [instruction, input] (got {list(into)})")
    if field not in record:
        raise KeyError(f"the record has no field {field!r}")
    text = str(record[field])
    parts = re.split(pattern if pattern is not None else re.escape(separator), text, maxsplit=1)
    head, tail = parts if len(parts) == 2 else ("", text)
    return {**record, into[0]: head.strip(), into[1]: tail.strip()}


TRANSFORMS: dict[str, Callable[..., Record]] = {"split": split}


def apply_transforms(steps: Sequence[Step], record: Record) -> Record:
    """The record after each transform in turn; a transform that returns no mapping fails the record."""
    for step in steps:
        record = step(record)
        if not isinstance(record, Mapping):
            raise StepError(f"transform {step.name} returned {type(record).__name__}, not the record (a dict)")
        record = dict(record)
    return record


def compile_template(source: Any) -> jinja2.Template:
    """A Jinja template from its source; `ValueError` (reported under the template's key) for bad syntax."""
    if not isinstance(source, str):
        raise ValueError(f"a template is text (got {type(source).__name__})")
    try:
        return _JINJA.from_string(source)
    except jinja2.TemplateSyntaxError as error:
        raise ValueError(f"Jinja syntax error on line {error.lineno}: {error.message}") from None


def render(template: jinja2.Template, record: Mapping[str, Any], what: str) -> str:
    """The template filled with the record's fields (and the whole record as `record`)."""
    try:
        return template.render({**record, "record": record})
    except jinja2.TemplateError as error:
        raise StepError(f"{what} template: {error} (record fields: {', '.join(record) or 'none'})") from None
