"""Let a person settle what validation rejected: accept, edit or drop each invalid record, or run a fix-up script.

A session works beside invalid.jsonl and keeps every invalid record in exactly one of three files:
- calibrated.jsonl: records fixed, edited or accepted, training-ready like valid.jsonl; their
  `_meta.calibration` says how (and, for accepted ones, which errors were let through);
- dropped.jsonl: invalid.jsonl lines given up on, each with the reason;
- remaining.jsonl: the records still undecided, in their latest version, with their current errors.
Decisions are appended and synced as they are made, so a stopped session resumes where it was (records
are known by the id validate gave them). Train on valid.jsonl plus calibrated.jsonl: `llmkit data merge`
joins them. The terminal side lives in `llmkit.cli.data_validate`; here, only the decisions.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from llmkit.datagen.records import META
from llmkit.datagen.validate import Failure, InvalidRecord, ValidationSetupError
from llmkit.jsonl import JsonlAppender, read_jsonl, write_jsonl
from llmkit.user_code import load_python_file

CALIBRATED = "calibrated.jsonl"
DROPPED = "dropped.jsonl"
REMAINING = "remaining.jsonl"

Check = Callable[[Any], list[Failure]]
Fix = Callable[[dict], "dict | None"]
Choice = Literal["edit", "accept", "drop", "skip", "quit"]
Ask = Callable[[InvalidRecord, int, int], Choice]
Edit = Callable[[str], "str | None"]


class CalibrationSession:
    """The state of calibrating one invalid.jsonl: which records are undecided, and the files decisions go to.

    Use it as a context manager: leaving it writes remaining.jsonl, on an error or Ctrl-C too.
    """

    def __init__(self, invalid_path: Path, check: Check) -> None:
        if not invalid_path.is_file():
            raise ValidationSetupError(f"{invalid_path} does not exist; run `llmkit data validate` first")
        self.check = check
        self.folder = invalid_path.parent
        self.originals = [InvalidRecord.from_dict(line) for line in read_jsonl(invalid_path)]
        self.calibrated = {_calibration_id(record) for record in read_jsonl(self.path(CALIBRATED))}
        self.dropped = {line.get("id") for line in read_jsonl(self.path(DROPPED))} - self.calibrated
        self.latest = {entry.id: entry for entry in map(InvalidRecord.from_dict, read_jsonl(self.path(REMAINING)))}
        self._calibrated = JsonlAppender(self.path(CALIBRATED))
        self._dropped = JsonlAppender(self.path(DROPPED))

    def path(self, name: str) -> Path:
        """A file of this session, beside invalid.jsonl."""
        return self.folder / name

    def undecided(self, latest: bool = True) -> list[InvalidRecord]:
        """The records not calibrated or dropped yet, in invalid.jsonl's order: as last edited, or as validated."""
        decided = self.calibrated | self.dropped
        pending = [entry for entry in self.originals if entry.id not in decided]
        return [self.latest.get(entry.id, entry) if latest else entry for entry in pending]

    def revise(self, entry: InvalidRecord, record: Any) -> InvalidRecord:
        """The entry with a new version of its record, checked again."""
        return replace(entry, record=record, text=None, errors=self.check(record))

    def revise_text(self, entry: InvalidRecord, text: str) -> InvalidRecord:
        """The entry after a person edited its JSON text; text that does not parse stays invalid, kept as typed."""
        try:
            return self.revise(entry, json.loads(text))
        except json.JSONDecodeError as error:
            message = f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
            return replace(entry, record=None, text=text, errors=[Failure("parse", "$", message, "json")])

    def calibrate(self, entry: InvalidRecord, how: str) -> None:
        """Send the record to calibrated.jsonl, noting how it got there and any errors it still has."""
        if not is_acceptable(entry):
            raise ValueError(f"record {entry.id} is not a JSON object and cannot be calibrated")
        note: dict[str, Any] = {"id": entry.id, "source": entry.source, "how": how}
        if entry.errors:
            note["accepted_errors"] = [asdict(failure) for failure in entry.errors]
        meta = entry.record.get(META)
        meta = meta if isinstance(meta, dict) else {}
        self._calibrated.write(entry.record | {META: meta | {"calibration": note}})
        self.calibrated.add(entry.id)
        self.latest.pop(entry.id, None)

    def drop(self, entry: InvalidRecord, reason: str) -> None:
        """Send the record to dropped.jsonl with the reason: a record given up on is still on disk."""
        self._dropped.write(entry.to_dict() | {"reason": reason})
        self.dropped.add(entry.id)
        self.latest.pop(entry.id, None)

    def keep(self, entry: InvalidRecord) -> None:
        """Leave the record undecided, remembering this version of it for the next session."""
        self.latest[entry.id] = entry

    def totals(self) -> dict[str, int]:
        """Where every record of invalid.jsonl is now; the three numbers add up to its length."""
        ids = {entry.id for entry in self.originals}
        calibrated, dropped = len(ids & self.calibrated), len(ids & self.dropped)
        return {"calibrated": calibrated, "dropped": dropped, "remaining": len(ids) - calibrated - dropped}

    def close(self) -> None:
        """Write remaining.jsonl (the undecided records, latest versions) and close the decision files."""
        write_jsonl(self.path(REMAINING), (entry.to_dict() for entry in self.undecided()))
        self._calibrated.close()
        self._dropped.close()

    def __enter__(self) -> CalibrationSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def is_acceptable(entry: InvalidRecord) -> bool:
    """Whether the record can go to training as it is: a JSON object, not the text of a line that did not parse."""
    return entry.text is None and isinstance(entry.record, dict)


def load_fix(path: Path) -> Fix:
    """The `fix(record) -> dict | None` function of a fix-up script."""
    fix = getattr(load_python_file(path, "fix-up"), "fix", None)
    if not callable(fix):
        raise ValidationSetupError(f"fix-up file {path} defines no `def fix(record: dict) -> dict | None`")
    return fix


def apply_fix(session: CalibrationSession, fix: Fix) -> Counter[str]:
    """Run a fix-up function over the undecided records as validate wrote them (so a rerun never fixes twice).

    A valid result is calibrated, None drops the record, and anything else stays undecided with its
    remaining errors (a fix that raises adds its exception to them). Returns how many went each way.
    """
    outcome: Counter[str] = Counter()
    for entry in session.undecided(latest=False):
        if entry.text is not None:
            outcome["not JSON (edit by hand)"] += 1  # no record to hand the script
            continue
        try:
            fixed = fix(copy.deepcopy(entry.record))
        except Exception as error:
            failure = Failure("fix", "$", f"fix raised {type(error).__name__}: {error}", "fix")
            session.keep(replace(entry, errors=[failure, *entry.errors]))
            outcome["still invalid"] += 1
            continue
        if fixed is None:
            session.drop(entry, "dropped by fix script")
            outcome["dropped"] += 1
            continue
        revised = session.revise(entry, fixed)
        if _ready(revised):
            session.calibrate(revised, "fixed")
            outcome["fixed"] += 1
        else:
            session.keep(revised)
            outcome["still invalid"] += 1
    return outcome


def run_interactive(session: CalibrationSession, ask: Ask, edit: Edit) -> Counter[str]:
    """Put each undecided record to a person until they quit; returns how many went each way.

    `ask(entry, position, total)` shows the record and returns a choice; `edit(text)` returns the edited
    JSON text, or None when the person left it unchanged. An edit that is still invalid is asked again.
    """
    outcome: Counter[str] = Counter()
    pending = session.undecided()
    for position, entry in enumerate(pending, 1):
        choice = _settle(session, entry, lambda shown: ask(shown, position, len(pending)), edit)
        outcome[_OUTCOME[choice]] += 1
        if choice == "quit":
            break
    return outcome


def _settle(
    session: CalibrationSession, entry: InvalidRecord, ask: Callable[[InvalidRecord], Choice], edit: Edit
) -> Choice:
    """Ask about one record until it is decided or put off; returns the choice that ended it."""
    while True:
        choice = ask(entry)
        if choice == "edit":
            text = edit(editable_text(entry))
            if text is None:
                continue
            entry = session.revise_text(entry, text)
            if _ready(entry):
                session.calibrate(entry, "edited")
                return choice
        elif choice == "accept" and is_acceptable(entry):  # only a JSON object can be kept as it is
            session.calibrate(entry, "accepted")
            return choice
        elif choice == "drop":
            session.drop(entry, "dropped by hand")
            return choice
        elif choice in ("skip", "quit"):
            session.keep(entry)
            return choice


_OUTCOME: dict[Choice, str] = {
    "edit": "edited", "accept": "accepted", "drop": "dropped", "skip": "skipped", "quit": "skipped"
}


def editable_text(entry: InvalidRecord) -> str:
    """What a person edits: the record as indented JSON (Chinese as written), or the raw line that did not parse."""
    if entry.text is not None:
        return entry.text
    return json.dumps(entry.record, ensure_ascii=False, indent=2) + "\n"


def _ready(entry: InvalidRecord) -> bool:
    """Whether a revised record passes every check and can be calibrated as it is."""
    return is_acceptable(entry) and not entry.errors


def _calibration_id(record: Any) -> str | None:
    """The invalid.jsonl id a calibrated.jsonl record came from (None for a line added by hand)."""
    meta = record.get(META) if isinstance(record, dict) else None
    calibration = meta.get("calibration") if isinstance(meta, dict) else None
    return calibration.get("id") if isinstance(calibration, dict) else None
