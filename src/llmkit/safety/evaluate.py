"""`llmkit safety eval`: run a policy's input checks over labelled prompts and count, per category, the unsafe
prompts it blocked and the safe prompts it wrongly blocked.

Records (.jsonl, .json or .csv): `{"prompt": "...", "unsafe": true, "category": "violence"}`; `category` may be
left out (counted under "(none)"). A prompt counts as blocked when the policy flags it, also in log_only mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmkit.errors import LLMKitError
from llmkit.safety.policy import SafetyPolicy
from llmkit.train.readers import DatasetError, read_rows
from llmkit.validation import describe

NO_CATEGORY = "(none)"


class SafetyEvalError(LLMKitError):
    """Prompts that cannot be evaluated: an unreadable file, a record without prompt or unsafe, no records."""


class PromptRecord(BaseModel):
    """One labelled prompt (other fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1)
    unsafe: bool
    category: str = NO_CATEGORY


@dataclass
class Counts:
    """One category's unsafe prompts and how many were blocked, safe prompts and how many were blocked."""

    unsafe: int = 0
    blocked: int = 0
    safe: int = 0
    wrongly_blocked: int = 0

    def add(self, record: PromptRecord, blocked: bool) -> None:
        if record.unsafe:
            self.unsafe += 1
            self.blocked += blocked
        else:
            self.safe += 1
            self.wrongly_blocked += blocked

    @property
    def block_rate(self) -> float | None:
        """Blocked unsafe prompts / unsafe prompts (recall); None without unsafe prompts."""
        return self.blocked / self.unsafe if self.unsafe else None

    @property
    def false_block_rate(self) -> float | None:
        """Blocked safe prompts / safe prompts; None without safe prompts."""
        return self.wrongly_blocked / self.safe if self.safe else None


@dataclass
class SafetyEvaluation:
    """Counts per category (sorted by name) and over all prompts, and the prompts the policy got wrong."""

    categories: dict[str, Counts] = field(default_factory=dict)
    total: Counts = field(default_factory=Counts)
    missed: list[dict] = field(default_factory=list)
    wrongly_blocked: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The numbers and mistakes as JSON-ready data, rates included."""
        def counts(c: Counts) -> dict:
            return {**asdict(c), "block_rate": c.block_rate, "false_block_rate": c.false_block_rate}

        return {
            "categories": {name: counts(c) for name, c in self.categories.items()},
            "total": counts(self.total),
            "missed": self.missed,
            "wrongly_blocked": self.wrongly_blocked,
        }


def read_prompts(path: str | Path) -> list[PromptRecord]:
    """The labelled prompts of a file; `SafetyEvalError` naming the first bad record."""
    path = Path(path)
    records = []
    try:
        for row in read_rows(path):
            if row.error:
                raise SafetyEvalError(f"{path}, {row.location}: {row.error}")
            try:
                records.append(PromptRecord.model_validate(row.data))
            except ValidationError as error:
                raise SafetyEvalError(f"{path}, {row.location}: {describe(error.errors())}") from None
    except DatasetError as error:
        raise SafetyEvalError(str(error)) from None
    if not records:
        raise SafetyEvalError(f"{path} holds no prompts")
    return records


def evaluate(
    policy: SafetyPolicy, records: Sequence[PromptRecord], progress: Callable[[int, int], None] | None = None
) -> SafetyEvaluation:
    """Check every prompt as user input and count the outcomes; `progress(done, total)` follows along."""
    if not policy.checks("user"):
        raise SafetyEvalError("the policy has no checker for user input (roles: [user]): it would block nothing")
    result = SafetyEvaluation()
    for done, record in enumerate(records, 1):
        decision = policy.check(record.prompt, role="user")
        result.categories.setdefault(record.category, Counts()).add(record, decision.flagged)
        result.total.add(record, decision.flagged)
        entry = {"prompt": record.prompt, "category": record.category, "reason": decision.reason}
        if record.unsafe and not decision.flagged:
            result.missed.append(entry)
        elif not record.unsafe and decision.flagged:
            result.wrongly_blocked.append(entry)
        if progress is not None:
            progress(done, len(records))
    result.categories = dict(sorted(result.categories.items()))
    return result
