"""OpenAI function schemas from Python functions: the description from the docstring, the `parameters` JSON schema
from the type hints, defaults and a Google-style `Args:` section. Pipeline configs check tools with it; tasks send it."""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}
_ARGS_HEADING = re.compile(r"^(Args|Arguments|Parameters):\s*$", re.MULTILINE)
_ARG_LINE = re.compile(r"^\s+(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")


def function_schema(function: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
    """A function's description (its docstring's first paragraph) and OpenAI `parameters` JSON schema, from its
    type hints, defaults and a Google-style `Args:` section."""
    summary, argument_docs = _read_docstring(inspect.getdoc(function) or "")
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # hints naming what the module never imported: describe the parameters without types
        hints = {}
    properties, required = {}, []
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        schema = _json_schema(hints.get(name))
        if name in argument_docs:
            schema["description"] = argument_docs[name]
        properties[name] = schema
        if parameter.default is parameter.empty:
            required.append(name)
    return summary, {"type": "object", "properties": properties, "required": required}


def _json_schema(hint: Any) -> dict[str, Any]:
    """The JSON schema of a type hint, as far as the OpenAI tools format uses them; {} when unknown."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        kept = [argument for argument in arguments if argument is not type(None)]
        return _json_schema(kept[0]) if len(kept) == 1 else {}
    if origin is typing.Literal:
        return {"enum": list(arguments)}
    if origin in (list, tuple, set) or hint in (list, tuple, set):
        return {"type": "array", **({"items": _json_schema(arguments[0])} if arguments else {})}
    json_type = _JSON_TYPES.get(origin or hint)
    return {"type": json_type} if json_type else {}


def _read_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """A docstring's first paragraph, and the description of each argument in its `Args:` section."""
    heading = _ARGS_HEADING.search(doc)
    summary = " ".join(doc[:heading.start() if heading else len(doc)].split("\n\n", 1)[0].split())
    if heading is None:
        return summary, {}
    described: dict[str, str] = {}
    name, base = None, None
    for line in doc[heading.end():].splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            break  # the next section
        indent = len(line) - len(line.lstrip())
        base = indent if base is None else base
        found = _ARG_LINE.match(line)
        if found and indent == base:
            name = found.group(1)
            described[name] = found.group(2).strip()
        elif name is not None:  # a description's continuation line
            described[name] += " " + line.strip()
    return summary, described
