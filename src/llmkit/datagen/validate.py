"""Check records against a JSON Schema and Python rules, and split a data file into valid and invalid records.

The schema sees each record without its `_meta` key (the generator's bookkeeping); rules see the whole
record, `_meta.fields` included, and run only on records that match the schema, so they can read the
fields the schema requires without guarding. Nothing is dropped: every row read ends in exactly one of
valid.jsonl and invalid.jsonl, a line that is not JSON included (its text is kept for `calibrate`).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any, Literal

from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from llmkit.atomic import atomic_text
from llmkit.datagen.records import META
from llmkit.errors import LLMKitError
from llmkit.jsonl import dumps
from llmkit.train.readers import DatasetError, Row, read_rows
from llmkit.user_code import load_python_file

Rule = Callable[[dict], "str | None"]
FailureKind = Literal["schema", "rule", "parse", "fix"]

VALID = "valid.jsonl"
INVALID = "invalid.jsonl"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"

_PLAIN_KEY = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]*$")


class ValidationSetupError(LLMKitError):
    """A schema, rules or fix-up file that cannot be used: missing, not JSON or Python, or not a valid schema."""


@dataclass(frozen=True)
class Failure:
    """One reason a record is invalid: the kind of check, where (a JSON path such as `$.latitude`), and what.

    `rule` names the check that failed: the rule function, the schema keyword ("type", "required"), or
    "json" / "object" for a row that is not a JSON object.
    """

    kind: FailureKind
    path: str
    message: str
    rule: str

    @property
    def check(self) -> str:
        """The failing check as a report groups it, e.g. "schema required" or "rule check_coordinates"."""
        return f"{self.kind} {self.rule}"


@dataclass(frozen=True)
class InvalidRecord:
    """One line of invalid.jsonl: a stable id, where the record came from, the record (or the raw text of a
    line that is not JSON), and every reason it failed."""

    id: str
    source: str
    record: Any
    errors: list[Failure]
    text: str | None = None

    def to_dict(self) -> dict:
        line = {"id": self.id, "source": self.source, "record": self.record}
        if self.text is not None:
            line["text"] = self.text
        return line | {"errors": [asdict(failure) for failure in self.errors]}

    @classmethod
    def from_dict(cls, line: dict) -> InvalidRecord:
        """Read an invalid.jsonl line back; a line without an id (written by another tool) gets one."""
        source, record, text = line.get("source", ""), line.get("record"), line.get("text")
        errors = [Failure(**failure) for failure in line.get("errors", [])]
        return cls(line.get("id") or record_id(source, record, text), source, record, errors, text)


def record_id(source: str, record: Any, text: str | None = None) -> str:
    """A short hash of a record and its place: the same invalid line gets the same id on every run."""
    return hashlib.sha256(dumps([source, record, text]).encode()).hexdigest()[:16]


def json_path(elements: Iterable[str | int]) -> str:
    """A JSON path (`$.items[2].name`, `$['名称']`) written the way jsonschema writes `error.json_path`."""
    path = "$"
    for element in elements:
        if isinstance(element, int):
            path += f"[{element}]"
        elif _PLAIN_KEY.match(element):
            path += f".{element}"
        else:
            path += "['" + element.replace("\\", "\\\\").replace("'", "\\'") + "']"
    return path


def load_schema(path: Path) -> Validator:
    """The JSON Schema in `path`, checked, as a validator (its draft picked by `$schema`, formats checked)."""
    _require_file(path, "schema")
    try:
        schema = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as error:
        raise ValidationSetupError(f"schema file {path} is not UTF-8 text ({error.reason})") from error
    except json.JSONDecodeError as error:
        raise ValidationSetupError(
            f"schema file {path} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from error
    if not isinstance(schema, (dict, bool)):
        raise ValidationSetupError(f"schema file {path} must hold a JSON object, not {_json_type(schema)}")
    kind = validator_for(schema)
    try:
        kind.check_schema(schema)
    except SchemaError as error:
        message = f"{path} is not a valid JSON Schema: {error.message} at {error.json_path}"
        raise ValidationSetupError(message) from error
    return kind(schema, format_checker=kind.FORMAT_CHECKER)


def load_rules(path: Path) -> list[Rule]:
    """The `check_*` functions of a Python file, in the order written; each returns None or what is wrong."""
    module = load_python_file(path, "rules")
    rules = [value for name, value in vars(module).items() if name.startswith("check_") and inspect.isfunction(value)]
    if not rules:
        raise ValidationSetupError(
            f"rules file {path} defines no check_* functions; add one such as "
            "`def check_coordinates(record: dict) -> str | None`"
        )
    return rules


def validate_record(record: Any, validator: Validator, rules: Iterable[Rule]) -> list[Failure]:
    """Every reason `record` is invalid (none when valid): the schema on the record minus `_meta`, then the rules."""
    if not isinstance(record, dict):
        return [Failure("parse", "$", f"a record must be a JSON object, not {_json_type(record)}", "object")]
    failures = [_schema_failure(error) for error in validator.iter_errors(_without_meta(record))]
    if failures:
        return failures
    shown = copy.deepcopy(record)  # a rule that changes its argument must not change what is written
    return [failure for rule in rules if (failure := _run_rule(rule, shown))]


@dataclass
class ValidationReport:
    """What `validate_file` read and wrote: counts that add up, and the failures grouped by check and by path."""

    input: Path
    out_dir: Path
    valid: int = 0
    invalid: int = 0
    by_check: Counter[str] = field(default_factory=Counter)
    by_path: Counter[str] = field(default_factory=Counter)
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.valid + self.invalid

    @property
    def files(self) -> dict[str, Path]:
        return {name: self.out_dir / name for name in (VALID, INVALID, REPORT_MD, REPORT_JSON)}

    def count(self, failures: list[Failure]) -> None:
        """Tally one record's verdict; an empty list is a valid record."""
        if not failures:
            self.valid += 1
            return
        self.invalid += 1
        for failure in failures:
            self.by_check[failure.check] += 1
            self.by_path[failure.path] += 1
            self.reasons[failure.check, failure.path] += 1
            self.examples.setdefault((failure.check, failure.path), failure.message)

    def top_reasons(self, limit: int = 10) -> list[dict[str, Any]]:
        """The commonest (check, path) pairs with their count and one example message."""
        return [
            {"check": check, "path": path, "count": count, "example": self.examples[check, path]}
            for (check, path), count in self.reasons.most_common(limit)
        ]

    def to_dict(self) -> dict[str, Any]:
        """report.json: the counts, the failures grouped, and where the files are."""
        return {
            "input": str(self.input),
            "rows": self.rows,
            "valid": self.valid,
            "invalid": self.invalid,
            "failures_by_check": dict(self.by_check.most_common()),
            "failures_by_path": dict(self.by_path.most_common()),
            "top_reasons": self.top_reasons(),
            "files": {name: str(path) for name, path in self.files.items()},
        }


def default_out_dir(input: Path) -> Path:
    """Where validate writes when not told: beside an input file, or in a `validated` folder inside an input folder
    (never the folder itself, where a second run would read its own output back as input)."""
    return input / "validated" if input.is_dir() else input.parent


def validate_file(input: Path, validator: Validator, rules: list[Rule], out_dir: Path) -> ValidationReport:
    """Check every row of a data file or folder, stream valid and invalid records to `out_dir`, write the report."""
    if not input.exists():
        raise DatasetError(f"{input} does not exist")
    report = ValidationReport(input, out_dir)
    if input.resolve() in {out_dir.resolve(), report.files[VALID].resolve(), report.files[INVALID].resolve()}:
        raise ValidationSetupError(f"validating {input} into {out_dir} would write over its input; pass another --out")
    rows = iter(read_rows(input))
    first = next(rows, None)
    if first is None:
        raise DatasetError(f"{input} holds no records to validate")
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_text(report.files[VALID]) as valid, atomic_text(report.files[INVALID]) as invalid:
        for row in chain([first], rows):
            entry = _check_row(row, validator, rules)
            if entry is None:
                valid.write(dumps(row.data) + "\n")
                report.count([])
            else:
                invalid.write(dumps(entry.to_dict()) + "\n")
                report.count(entry.errors)
    summary = json.dumps(report.to_dict(), ensure_ascii=False, indent=2)
    report.files[REPORT_JSON].write_text(summary + "\n", encoding="utf-8")
    report.files[REPORT_MD].write_text(_markdown(report), encoding="utf-8")
    return report


def _check_row(row: Row, validator: Validator, rules: list[Rule]) -> InvalidRecord | None:
    """The invalid.jsonl entry for a row that fails (a line that is not JSON keeps its text), None for a valid one."""
    source = f"{row.file.name} {row.location}"
    if row.error is not None:
        text = _line_text(row)
        failure = Failure("parse", "$", f"{row.error} ({source})", "json")
        return InvalidRecord(record_id(source, None, text), source, None, [failure], text)
    failures = validate_record(row.data, validator, rules)
    return InvalidRecord(record_id(source, row.data), source, row.data, failures) if failures else None


def _line_text(row: Row) -> str | None:
    """The raw text of a JSONL row that failed to parse, so a person can still repair it."""
    if not row.location.startswith("line "):
        return None
    number = int(row.location.removeprefix("line "))
    with row.file.open(encoding="utf-8-sig") as lines:
        return next(islice(lines, number - 1, None), "").rstrip("\r\n")


def _schema_failure(error: ValidationError) -> Failure:
    return Failure("schema", json_path(error.absolute_path), error.message, str(error.validator))


def _run_rule(rule: Rule, record: dict) -> Failure | None:
    """A rule's verdict as a Failure; a rule that raises fails the record with the exception's text."""
    try:
        problem = rule(record)
    except Exception as error:
        return Failure("rule", "$", f"raised {type(error).__name__}: {error}", rule.__name__)
    return None if problem is None else Failure("rule", "$", str(problem), rule.__name__)


def _without_meta(record: dict) -> dict:
    return {key: value for key, value in record.items() if key != META}


def _json_type(value: Any) -> str:
    """The JSON type of a value with its article, for messages: "an array", "a string", "null"."""
    names = (
        (bool, "a boolean"), ((int, float), "a number"), (str, "a string"), (list, "an array"), (dict, "an object"),
    )
    return next((name for kind, name in names if isinstance(value, kind)), "null")


def _require_file(path: Path, role: str) -> None:
    if not path.is_file():
        raise ValidationSetupError(f"{role} file {path} does not exist")


def _markdown(report: ValidationReport) -> str:
    """report.md: the counts, then the failures by check, by path, and the commonest reasons with an example."""
    lines = [
        f"# Validation of {report.input.name}",
        "",
        f"- input: `{report.input}`",
        f"- rows read: {report.rows} (valid {report.valid}, invalid {report.invalid})",
        f"- valid records: `{report.files[VALID]}`",
        f"- invalid records: `{report.files[INVALID]}` (fix them with `llmkit data calibrate`)",
    ]
    sections = [
        ("Failures by check", ["check", "failures"], [[check, n] for check, n in report.by_check.most_common()]),
        ("Failures by path", ["path", "failures"], [[path, n] for path, n in report.by_path.most_common()]),
        ("Top reasons", ["check", "path", "failures", "example"], [list(r.values()) for r in report.top_reasons()]),
    ]
    for title, header, rows in sections:
        if rows:
            lines += ["", f"## {title}", "", _table_row(header), _table_row(["---"] * len(header))]
            lines += [_table_row(row) for row in rows]
    return "\n".join(lines) + "\n"


def _table_row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"
