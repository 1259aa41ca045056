"""What every `llmkit eval` task shares: records read from a JSONL file with errors that name the line, an output
folder that a re-run resumes, and the scores and reports written at the end.

The folder holds `run.json` (the settings the run started with: a different run is refused), `results.jsonl` (one
row per finished record, appended chunk by chunk, so an interrupted run loses at most one chunk), then `scores.json`,
`report.md`, `report.html` and, for tasks lm-evaluation-harness also scores, `results.json` in its shape, all
computed from the saved rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from llmkit.atomic import atomic_text
from llmkit.errors import LLMKitError
from llmkit.eval.report import Report, write_report
from llmkit.jsonl import JsonlAppender, read_jsonl

if TYPE_CHECKING:
    from llmkit.api import LLM

Progress = Callable[[int, int], None]
"""Called as (done, total) before each chunk of records is evaluated, and once more when all are."""


class EvalError(LLMKitError):
    """Evaluation input that cannot be used: a missing or malformed data file, a record without its fields, a bad
    setting."""


class ResumeError(LLMKitError):
    """An output directory that holds the results of a different run."""


class OtherTask(Exception):
    """Raised while reading a record that belongs to another task (a ShopBench ranking record in a multiple-choice
    run): the record is skipped, and the message says why in the report's notes."""


class Indexed(Protocol):
    """An item to evaluate: its `index` (the record's line in the data file) keys its saved row."""

    @property
    def index(self) -> int: ...


Item = TypeVar("Item", bound=Indexed)


@dataclass(frozen=True)
class Evaluation:
    """What an evaluation did: its report, how many records it evaluated now (the rest were saved), its files, and
    its scores in lm-evaluation-harness's results shape where the task has one (results.json)."""

    report: Report
    evaluated: int
    files: dict[str, Path]
    harness: dict[str, Any] | None = None


def read_records(path: Path) -> list[tuple[int, dict]]:
    """The JSON objects of a JSONL file with their line numbers; blank lines are passed over."""
    if not path.is_file():
        raise EvalError(f"{path} does not exist: give a JSONL file with one record per line")
    records = []
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise EvalError(f"{path} line {number}: not JSON ({error.msg}, column {error.colno})") from None
                if not isinstance(record, dict):
                    raise EvalError(
                        f"{path} line {number}: a record must be a JSON object, not {type(record).__name__}"
                    )
                records.append((number, record))
    except UnicodeDecodeError:
        raise EvalError(f"{path} is not UTF-8 text") from None
    return records


def load_items(path: Path, to_item: Callable[[int, dict], Item]) -> tuple[list[Item], list[str]]:
    """`to_item(line number, record)` for every record of `path`, and notes on the records of other tasks it skipped.

    `to_item` raises `EvalError` for a broken record (reported with its line) and `OtherTask` for one to skip.
    """
    items, skipped = [], {}
    for number, record in read_records(path):
        try:
            items.append(to_item(number, record))
        except OtherTask as reason:
            skipped.setdefault(str(reason), []).append(number)
        except EvalError as error:
            raise EvalError(f"{path} line {number}: {error}") from None
    notes = [
        f"skipped records {reason}: line{'s' * (len(lines) > 1)} {', '.join(map(str, lines))}"
        for reason, lines in skipped.items()
    ]
    if not items:
        raise EvalError(f"{path} holds no records for this evaluation" + "".join(f"; {note}" for note in notes))
    return items, notes


def text_field(record: dict, key: str) -> str:
    """`record[key]` when it is text that is not blank; an `EvalError` naming the key otherwise."""
    if key not in record:
        raise EvalError(f"no {key!r} field (the record has {', '.join(map(repr, record)) or 'no fields'})")
    value = record[key]
    if not isinstance(value, str):
        raise EvalError(f"{key!r} must be text, not {type(value).__name__}")
    if not value.strip():
        raise EvalError(f"{key!r} is empty")
    return value


def claim_run(path: Path, settings: dict[str, Any]) -> None:
    """Record in `path` (run.json) which run its folder holds, or refuse to mix another run's results into it."""
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        changed = [
            f"{key} was {saved.get(key)!r}, now {new!r}" for key, new in settings.items() if saved.get(key) != new
        ]
        if changed:
            raise ResumeError(
                f"{path.parent} holds the results of another run ({'; '.join(changed)}): "
                "choose a new --out directory or delete this one"
            )
    else:
        path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def load_llm(model: str) -> LLM:
    """`LLM.build(model)` with its defaults; imported on call, since it loads torch."""
    from llmkit.api import LLM

    return LLM.build(model)


class EvalRun:
    """An evaluation's output folder (see the module docstring): claimed for `settings`, its saved rows loaded."""

    def __init__(self, out: Path, settings: dict[str, Any]) -> None:
        out.mkdir(parents=True, exist_ok=True)
        claim_run(out / "run.json", settings)
        self.out, self.settings = out, settings
        self.results = out / "results.jsonl"
        self.rows: dict[int, dict] = {row["index"]: row for row in read_jsonl(self.results)}

    def pending(self, items: Sequence[Item]) -> list[Item]:
        """The items that have no saved row yet."""
        return [item for item in items if item.index not in self.rows]

    def complete(
        self,
        items: Sequence[Item],
        evaluate: Callable[[list[Item]], list[dict]],
        *,
        chunk: int = 1,
        progress: Progress | None = None,
    ) -> None:
        """Evaluate `items` `chunk` at a time; each chunk's rows (keyed by item index) are saved before the next."""
        with JsonlAppender(self.results) as out:
            for start in range(0, len(items), chunk):
                if progress:
                    progress(start, len(items))
                batch = list(items[start : start + chunk])
                for item, row in zip(batch, evaluate(batch)):
                    self.rows[item.index] = {"index": item.index, **row}
                    out.write(self.rows[item.index])
        if progress:
            progress(len(items), len(items))

    def finish(
        self, report: Report, scores: dict[str, Any], evaluated: int, *, harness: dict[str, Any] | None = None
    ) -> Evaluation:
        """Write scores.json (the settings, then `scores`), report.md, report.html, and results.json when the
        scores have lm-evaluation-harness's shape too (`harness`); the run's outcome."""
        path = self.out / "scores.json"
        write_json(path, {**self.settings, **scores})
        markdown, page = write_report(report, self.out)
        files = {"results": self.results, "scores": path, "markdown": markdown, "html": page}
        if harness is not None:
            files["harness"] = write_json(self.out / "results.json", harness)
        return Evaluation(report, evaluated, files, harness)


def write_json(path: Path, value: Any) -> Path:
    """`value` as indented UTF-8 JSON in `path` (non-ASCII text kept readable), written whole or not at all."""
    with atomic_text(path) as out:
        out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    return path
