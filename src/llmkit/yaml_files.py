"""Read the YAML files users write (training configs, generation specs, pipelines, safety policies) with one-line
errors: `ConfigSection` refuses unknown keys naming the allowed ones, `describe` turns pydantic's errors into one
line that names each bad key, and `load_yaml_model` does both for a whole file."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from llmkit.errors import LLMKitError

Model = TypeVar("Model", bound=BaseModel)


class ConfigSection(BaseModel):
    """A section of a user's YAML file: unknown keys are errors naming the allowed keys (and the likely one meant)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, values: Any) -> Any:
        if isinstance(values, dict):
            for key in values:
                if key not in cls.model_fields:
                    close = difflib.get_close_matches(str(key), cls.model_fields, n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    raise ValueError(f"unknown key {key!r} ({hint}allowed: {', '.join(cls.model_fields)})")
        return values


def read_yaml_mapping(path: Path, kind: str, error: type[LLMKitError]) -> dict:
    """The mapping a YAML file holds; `error` (naming the file as a `kind`, e.g. "config") when it cannot be read,
    is not UTF-8, is not YAML, or holds something other than a mapping."""
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as problem:
        raise error(f"cannot read {kind} {path}: {problem.strerror}") from None
    except UnicodeDecodeError as problem:
        raise error(f"{kind} {path} must be UTF-8 text (byte {problem.start} is not): save it as UTF-8") from None
    except yaml.YAMLError as problem:
        raise error(f"{path} is not valid YAML: {_one_line(problem)}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise error(f"{path} must be a mapping of keys to values, not {type(values).__name__}")
    return values


def load_yaml_model(path: str | Path, model: type[Model], kind: str, error: type[LLMKitError]) -> Model:
    """A YAML file validated as `model` (relative paths in it resolve against its folder, `context["base_dir"]`);
    `error` naming every bad key when it does not validate."""
    path = Path(path)
    values = read_yaml_mapping(path, kind, error)
    try:
        return model.model_validate(values, context={"base_dir": path.parent})
    except ValidationError as problem:
        raise error(f"invalid {kind} {path}: {describe(problem)}") from None


def describe(error: ValidationError) -> str:
    """Pydantic's errors as one line, each naming its key: `tasks[1].postprocess[0]: unknown post-processor …`."""
    problems = []
    for item in error.errors():
        key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"]).lstrip(".")
        if item["type"] == "value_error":
            problem = str(item["ctx"]["error"])
        elif item["type"] == "missing":
            problem = "required"
        else:
            got = repr(item.get("input"))
            problem = f"{item['msg']} (got {got if len(got) <= 60 else got[:57] + '...'})"
        problems.append(f"{key}: {problem}" if key else problem)
    return "; ".join(problems)


def _one_line(problem: yaml.YAMLError) -> str:
    """What is wrong and where (PyYAML's own message spans several lines)."""
    mark = getattr(problem, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{getattr(problem, 'problem', None) or problem}{where}"
