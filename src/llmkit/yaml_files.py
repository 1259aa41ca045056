"""Read the YAML files users write (training configs, generation specs, pipelines) with one-line errors."""

from __future__ import annotations

from pathlib import Path

import yaml

from llmkit.errors import LLMKitError


def read_yaml_mapping(path: Path, kind: str, error: type[LLMKitError]) -> dict:
    """The mapping a YAML file holds; `error` (naming the file as a `kind`, e.g. "config") when it cannot be read,
    is not YAML, or holds something other than a mapping."""
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as problem:
        raise error(f"cannot read {kind} {path}: {problem.strerror}") from None
    except yaml.YAMLError as problem:
        raise error(f"{path} is not valid YAML: {_one_line(problem)}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise error(f"{path} must be a mapping of keys to values, not {type(values).__name__}")
    return values


def _one_line(problem: yaml.YAMLError) -> str:
    """What is wrong and where (PyYAML's own message spans several lines)."""
    mark = getattr(problem, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{getattr(problem, 'problem', None) or problem}{where}"
