"""A `llmkit data generate` spec: which endpoint to ask, the prompt, the randomised fields, how many records, where.

`load_spec("spec.yaml")` reads the YAML, resolves its paths against the spec's folder, reads the files
it names (template, schema, choice lists, CSVs) once, and raises `SpecError` naming any bad key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import jinja2
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from llmkit.datagen.fields import (
    FIELD_TYPES,
    FieldSpec,
    SpecPath,
    read_text,
    resolve_spec_path,
)
from llmkit.errors import LLMKitError
from llmkit.validation import key_path, problem
from llmkit.yaml_files import read_yaml_mapping


class SpecError(LLMKitError):
    """A generation spec that cannot run: unreadable file, bad YAML, unknown key, wrong value or template."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Endpoint(_Section):
    """The OpenAI-compatible server that writes the records."""

    base_url: str | None = Field(
        None, description="API root such as https://api.openai.com/v1; empty: a local `llmkit serve` on the "
        "default model (the one at 127.0.0.1:8000, or one started for this run)."
    )
    model: str | None = Field(None, description="Model id to ask (default: the first model the endpoint lists).")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the API key (default: none; the local server: LLMKIT_API_KEY)."
    )
    timeout: float = Field(600.0, gt=0, description="Seconds to wait for one answer.")


def _jinja() -> jinja2.Environment:
    """Templates fail on unknown names; `tojson` keeps Chinese as written (the model should read it, not \\uXXXX)."""
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    environment.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
    return environment


JINJA = _jinja()


class Prompt(_Section):
    """The messages sent for each record: Jinja templates that see every field by name, and `examples`."""

    system: str | None = Field(None, description="System message (a Jinja template too).")
    template: str | None = Field(None, description="Jinja template of the user message.")
    template_file: SpecPath | None = Field(None, description="UTF-8 file holding the user message template.")
    examples: list[dict[str, Any]] = Field(
        default_factory=list, description="Example records for the template, e.g. `{{ examples | tojson(indent=2) }}`."
    )
    _user: jinja2.Template = PrivateAttr()
    _system: jinja2.Template | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _compile(self) -> Prompt:
        if (self.template is None) == (self.template_file is None):
            raise ValueError("give either template (the text) or template_file (a path)")
        if self.template_file is not None:
            self.template = read_text(self.template_file)
        try:
            self._user = JINJA.from_string(self.template)
            self._system = None if self.system is None else JINJA.from_string(self.system)
        except jinja2.TemplateSyntaxError as error:
            raise ValueError(f"Jinja syntax error on line {error.lineno}: {error.message}") from None
        return self

    def render(self, fields: Mapping[str, Any]) -> list[dict[str, str]]:
        """The chat messages for one record; a name the template uses but nothing defines is a `SpecError`."""
        context = {**fields, "examples": self.examples}
        try:
            user = self._user.render(context)
            system = None if self._system is None else self._system.render(context)
        except jinja2.TemplateError as error:
            raise SpecError(f"prompt: {error} (templates see the fields {', '.join(fields) or '(none)'} "
                            "and examples)") from None
        return ([{"role": "system", "content": system}] if system is not None else []) + [
            {"role": "user", "content": user}
        ]


class Sampling(_Section):
    """Decoding settings sent with every request."""

    temperature: float = Field(0.8, ge=0, le=2, description="Randomness of the answer; 0 is greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: keep this much probability mass.")
    max_tokens: int = Field(512, ge=1, description="Longest answer in tokens; a record cut off here is retried.")


def _read_schema(value: Any, info: ValidationInfo) -> Any:
    """A schema given as a path is read from that JSON file (relative to the spec)."""
    if not isinstance(value, (str, Path)):
        return value
    path = resolve_spec_path(Path(value), info)
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def _check_schema(schema: dict[str, Any]) -> dict[str, Any]:
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as error:
        raise ValueError(f"not a valid JSON schema: {error.message}") from None
    return schema


JsonSchema = Annotated[dict[str, Any], BeforeValidator(_read_schema), AfterValidator(_check_schema)]


class GenerateSpec(_Section):
    """Everything one `llmkit data generate` run needs; paths are relative to the spec file."""

    endpoint: Endpoint = Field(default_factory=Endpoint, description="Where to send the requests.")
    prompt: Prompt = Field(description="The messages sent for each record.")
    count: int = Field(ge=1, description="How many records the output should hold.")
    fields: dict[str, FieldSpec] = Field(
        default_factory=dict, description="Values drawn in Python for each record, by name: uuid, choice, integer, "
        "number, date or csv (see `llmkit.datagen.fields`)."
    )
    json_schema: JsonSchema | None = Field(
        None, alias="schema", description="JSON schema the records must follow (a file, or inline): requests use "
        "json_schema mode and answers are validated; without it, json_object mode."
    )
    sampling: Sampling = Field(default_factory=Sampling, description="temperature, top_p, max_tokens.")
    concurrency: int = Field(4, ge=1, le=256, description="Requests in flight at once.")
    max_retries: int = Field(3, ge=0, description="Retries per record (429, 5xx, connection, unusable output).")
    seed: int = Field(0, ge=0, description="Record i uses seed + i, for its fields and the request's `seed`.")
    output: SpecPath = Field(
        Path("generated.jsonl"), validate_default=True, description="JSONL file of records; a re-run resumes it."
    )

    @field_validator("fields")
    @classmethod
    def _names_free(cls, fields: dict[str, Any]) -> dict[str, Any]:
        if "examples" in fields:
            raise ValueError("'examples' is taken by prompt.examples in templates; rename the field")
        return fields

    @property
    def failed_output(self) -> Path:
        """Where records that failed every retry go, with their cause: `records.jsonl` → `records.failed.jsonl`."""
        return self.output.with_name(self.output.stem + ".failed.jsonl")


def load_spec(path: str | Path, overrides: Mapping[str, Any] | None = None) -> GenerateSpec:
    """Read a YAML spec, with top-level `overrides` (None values ignored) applied; raise `SpecError` naming bad keys.

    Paths in the file are relative to it; give paths in `overrides` as absolute paths.
    """
    path = Path(path)
    values = read_yaml_mapping(path, "spec", SpecError)
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    try:
        return GenerateSpec.model_validate(values, context={"base_dir": path.parent})
    except ValidationError as error:
        raise SpecError(f"invalid spec {path}: {describe(error)}") from None


def describe(error: ValidationError) -> str:
    """Pydantic's errors as one line, each naming its key (`prompt.tmplate: unknown key (allowed: …)`): the shared
    wording, plus the allowed keys of each section and the field types."""
    problems = []
    for item in error.errors():
        loc = tuple(item["loc"])
        if len(loc) >= 3 and loc[0] == "fields":
            loc = loc[:2] + loc[3:]  # drop the field type pydantic adds to the path: fields.NAME.TYPE.key
        key = key_path(loc) or "spec"
        if item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            ctx = item.get("ctx", {})
            got = f"got {ctx['tag']!r}" if "tag" in ctx else "missing"
            problems.append(f"{key}.type: must be one of {', '.join(FIELD_TYPES)} ({got})")
            continue
        allowed = _allowed_keys(tuple(item["loc"])[:-1]) if item["type"] == "extra_forbidden" else []
        unknown = f"unknown key (allowed: {', '.join(allowed)})" if allowed else "unknown key"
        problems.append(f"{key}: {problem(item, unknown)}")
    return "; ".join(problems)


def _allowed_keys(parent: tuple[Any, ...]) -> list[str]:
    """The keys accepted at pydantic's path `parent`: (), ("prompt",), ("fields", NAME, TYPE) and so on."""
    sections = {(): GenerateSpec, ("endpoint",): Endpoint, ("prompt",): Prompt, ("sampling",): Sampling}
    model = FIELD_TYPES.get(parent[-1]) if parent[:1] == ("fields",) else sections.get(parent)
    return [field.alias or name for name, field in model.model_fields.items()] if model else []

