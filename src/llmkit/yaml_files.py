"""Read the YAML files users write (training configs, generation specs, pipelines, safety policies) with one-line
errors: `ConfigSection` refuses unknown keys naming the allowed ones (or where to find them), and `load_yaml_model`
validates a whole file, naming each bad key (`llmkit.validation.describe`)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from llmkit.errors import LLMKitError
from llmkit.validation import describe

Model = TypeVar("Model", bound=BaseModel)


class ConfigSection(BaseModel):
    """A section of a user's YAML file: unknown keys are errors naming the allowed keys (and the likely one meant)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    # Where the keys are listed, for sections with too many to name in one line (else they are named).
    keys_listed_by: ClassVar[str | None] = None

    @classmethod
    def known_keys(cls) -> Iterable[str]:
        """The names an unknown key is compared with for "did you mean" (a section may know more than its fields)."""
        return cls.model_fields

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, values: Any) -> Any:
        if isinstance(values, dict):
            for key in values:
                if key not in cls.model_fields:
                    close = difflib.get_close_matches(str(key), list(cls.known_keys()), n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    listed = f"see {cls.keys_listed_by}" if cls.keys_listed_by else f"allowed: {', '.join(cls.model_fields)}"
                    raise ValueError(f"unknown key {key!r} ({hint}{listed})")
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
        raise error(f"invalid {kind} {path}: {describe(problem.errors())}") from None


def _one_line(problem: yaml.YAMLError) -> str:
    """What is wrong and where (PyYAML's own message spans several lines)."""
    mark = getattr(problem, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{getattr(problem, 'problem', None) or problem}{where}"
