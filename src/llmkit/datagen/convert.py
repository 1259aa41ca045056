"""Turn records of any shape into training records `llmkit train` reads, through a field mapping.

A mapping sends each field of the target format to a spec, evaluated on one source record:

    question             a field path: that field's value; `answer.text` reaches into an object and
                         `answers.0` into a list. Text is taken as it is, anything else as JSON text.
    "{{ q }} ({{ c }})"  a Jinja2 template (it holds `{{`, `{%` or `{#`) over the record's fields. A field it
                         uses that is missing is an error; objects, lists and numbers print as JSON, and the
                         `tojson` filter keeps Chinese as written (Jinja's own escapes it).
    {json_of: [a, b]}    those top-level fields, in that order, as one JSON object text: how a structured
                         answer becomes the answer string (a model learns a JSON string better than an object).
    {json_of: "*", except: [question]}
                         every field but those (and `_meta`) as one JSON object text.
    {literal: "..."}     fixed text, e.g. a system prompt; "" is the empty text.

Target fields per format (the first ones are required and must not come out empty):

    alpaca       instruction, output; input, system  -> {instruction, input, output, system}
    sharegpt     user, assistant; system             -> {messages: [system, user, assistant]}
    preference   prompt, chosen, rejected; system    -> {instruction, input, chosen, rejected, system}

A null value prints as empty text. A record that fails (a missing field, an empty required field, a row
that is not JSON) is never dropped quietly: it goes to the rejects file with its file, location and reason.
A record's `_meta` bookkeeping is carried over as it is and never enters the text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmkit.datagen.records import META, RecordError, field_value, read_inputs
from llmkit.errors import LLMKitError
from llmkit.jsonl import write_jsonl
from llmkit.train.readers import Row

_PATH = re.compile(r"[^\s.{}]+(\.[^\s.{}]+)*")
_TEMPLATE_MARKS = ("{{", "{%", "{#")


class MappingError(LLMKitError):
    """A field mapping or output format that cannot be used; the message names the target field."""


Spec = Callable[[dict], str]


@dataclass(frozen=True)
class Format:
    """A training format: the target fields a mapping must and may fill, and how they become a record."""

    required: tuple[str, ...]
    optional: tuple[str, ...]
    build: Callable[[dict[str, str]], dict]


def _system(fields: dict[str, str]) -> dict:
    return {"system": fields["system"]} if fields.get("system") else {}


def _alpaca(fields: dict[str, str]) -> dict:
    prompt = {"instruction": fields["instruction"], "input": fields.get("input", "")}
    return prompt | {"output": fields["output"]} | _system(fields)


def _sharegpt(fields: dict[str, str]) -> dict:
    system = [{"role": "system", "content": fields["system"]}] if fields.get("system") else []
    turns = [{"role": "user", "content": fields["user"]}, {"role": "assistant", "content": fields["assistant"]}]
    return {"messages": system + turns}


def _preference(fields: dict[str, str]) -> dict:
    pair = {"chosen": fields["chosen"], "rejected": fields["rejected"]}
    return {"instruction": fields["prompt"], "input": ""} | pair | _system(fields)


FORMATS: dict[str, Format] = {
    "alpaca": Format(("instruction", "output"), ("input", "system"), _alpaca),
    "sharegpt": Format(("user", "assistant"), ("system",), _sharegpt),
    "preference": Format(("prompt", "chosen", "rejected"), ("system",), _preference),
}


@dataclass(frozen=True)
class ConvertResult:
    """What a conversion wrote: the training file, its record count, and the rejects (and their file, if any)."""

    output: Path
    written: int
    rejects: list[Row]  # each with its reason in `error`
    rejects_path: Path | None


def as_text(value: Any) -> str:
    """A value as training text: strings as they are, null as empty, anything else as JSON with Chinese unescaped."""
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, ensure_ascii=False)


class Converter:
    """A mapping compiled for one format: call it on a source record to get a training record."""

    def __init__(self, format: str, mapping: Mapping[str, Any]) -> None:
        if format not in FORMATS:
            raise MappingError(f"unknown format {format!r}; use {', '.join(FORMATS)}")
        self.format = FORMATS[format]
        allowed = self.format.required + self.format.optional
        unknown = [target for target in mapping if target not in allowed]
        if unknown:
            raise MappingError(f"{format} has no field {unknown[0]!r}; map {', '.join(allowed)}")
        missing = [target for target in self.format.required if target not in mapping]
        if missing:
            required = ", ".join(self.format.required)
            raise MappingError(f"{format} needs a mapping for {', '.join(missing)} (required: {required})")
        self.specs = {target: compile_spec(target, spec) for target, spec in mapping.items()}

    def __call__(self, record: dict) -> dict:
        fields = {target: spec(record) for target, spec in self.specs.items()}
        for target in self.format.required:
            if not fields[target].strip():
                raise RecordError(f"{target!r} comes out empty")
        converted = self.format.build(fields)
        return {**converted, META: record[META]} if META in record else converted


def compile_spec(target: str, spec: Any) -> Spec:
    """One mapping value (field path, template, `json_of` or `literal`) as a function of the record."""
    if isinstance(spec, str):
        if spec == "":
            return lambda record: ""
        if any(mark in spec for mark in _TEMPLATE_MARKS):
            return _template(target, spec)
        if _PATH.fullmatch(spec):
            return lambda record: as_text(field_value(record, spec))
        hint = "write fixed text as {literal: ...}"
        raise MappingError(f"{target}: {spec!r} is neither a field path nor a template; {hint}")
    if isinstance(spec, dict) and set(spec) == {"literal"} and isinstance(spec["literal"], str):
        return lambda record: spec["literal"]
    if isinstance(spec, dict) and "json_of" in spec and set(spec) <= {"json_of", "except"}:
        return _json_of(target, spec["json_of"], spec.get("except", []))
    raise MappingError(
        f"{target}: {spec!r} is not a spec; use a field path, a {{{{ template }}}}, {{json_of: [fields]}}, "
        '{json_of: "*", except: [fields]} or {literal: text}'
    )


def _template(target: str, source: str) -> Spec:
    """A Jinja2 template over the record's fields; an undefined field fails the record, naming the field."""
    try:
        template = _JINJA.from_string(source)
    except jinja2.TemplateSyntaxError as error:
        raise MappingError(f"{target}: bad template {source!r}: {error.message}") from None

    def render(record: dict) -> str:
        try:
            return template.render(record)
        except (jinja2.TemplateError, TypeError, ValueError) as error:
            raise RecordError(f"{target}: {error}") from None

    return render


def _json_of(target: str, keep: Any, drop: Any) -> Spec:
    """The listed fields (or `*`: all but `drop` and `_meta`) as one JSON object text."""
    if not (keep == "*" or _names(keep)) or not _names(drop) or (drop and keep != "*"):
        raise MappingError(f'{target}: use {{json_of: [field, ...]}} or {{json_of: "*", except: [field, ...]}}')

    def render(record: dict) -> str:
        if keep == "*":
            return as_text({key: value for key, value in record.items() if key != META and key not in drop})
        absent = [name for name in keep if name not in record]
        if absent:
            raise RecordError(f"{target}: missing field {absent[0]!r}")
        return as_text({name: record[name] for name in keep})

    return render


def _names(value: Any) -> bool:
    """True for a list of field names (the empty list included)."""
    return isinstance(value, list) and all(isinstance(name, str) for name in value)


def _tojson(value: Any, indent: int | None = None) -> str:
    """Jinja's `tojson` without its `\\uXXXX` and HTML escapes: the JSON text a model should learn to write."""
    return json.dumps(_defined(value), ensure_ascii=False, indent=indent)


def _defined(value: Any) -> Any:
    """The value; for a missing field, the UndefinedError that names it (a StrictUndefined raises it when printed)."""
    if isinstance(value, jinja2.Undefined):
        str(value)
    return value


_JINJA = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, finalize=lambda value: as_text(_defined(value)), keep_trailing_newline=True
)
_JINJA.filters["tojson"] = _tojson


def read_mapping(file: Path | None, pairs: Sequence[str] = ()) -> dict[str, Any]:
    """A mapping from a YAML/JSON file and `target=spec` pairs (which win); a pair's `{...}` value is read as YAML."""
    mapping: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise MappingError(f"cannot read mapping file {file}: {_one_line(error)}") from None
        if not isinstance(loaded, dict):
            raise MappingError(f"{file} must map target fields to specs, e.g. output: answer")
        mapping.update(loaded)
    for pair in pairs:
        target, sep, spec = pair.partition("=")
        if not sep or not target.strip():
            raise MappingError(f"--map {pair!r}: write target=spec, e.g. --map output=answer")
        mapping[target.strip()] = _pair_value(spec)
    if not mapping:
        raise MappingError("no mapping: give --mapping FILE or --map target=spec")
    return mapping


def _pair_value(spec: str) -> Any:
    """A `--map` value: `{json_of: ...}`-style YAML when it starts with one `{`, else the string as it is."""
    if not spec.startswith("{") or spec.startswith(_TEMPLATE_MARKS):
        return spec
    try:
        return yaml.safe_load(spec)
    except yaml.YAMLError as error:
        raise MappingError(f"--map value {spec!r} is not valid YAML: {_one_line(error)}") from None


def _one_line(error: Exception) -> str:
    """An error message (YAML's span several lines) folded into one line for the terminal."""
    return " ".join(str(error).split())


def convert(
    inputs: Sequence[Path], output: Path, format: str, mapping: Mapping[str, Any], rejects: Path | None = None
) -> ConvertResult:
    """Convert every record of `inputs` into `output` (JSONL); the rows that fail go to `rejects`
    (default: <output stem>.rejects.jsonl), each with its file, location and reason."""
    converter = Converter(format, mapping)
    rows = read_inputs(inputs)
    converted, rejected = [], []
    for row in rows.all:
        if row.error is None:
            try:
                converted.append(converter(row.data))
                continue
            except RecordError as error:
                row = replace(row, error=str(error))
        rejected.append(row)
    written = write_jsonl(output, converted)
    rejects = rejects or output.with_name(f"{output.stem}.rejects.jsonl")
    if rejected:
        lines = ({"file": str(r.file), "location": r.location, "reason": r.error, "record": r.data} for r in rejected)
        write_jsonl(rejects, lines)
    else:
        rejects.unlink(missing_ok=True)  # a stale file from an earlier run would list rejects that no longer exist
    return ConvertResult(output, written, rejected, rejects if rejected else None)

