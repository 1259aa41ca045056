"""Fields randomised in Python, not by the model: ids, choices, numbers, dates and CSV rows for each record.

Record i draws its fields from `random.Random(seed + i)`, so the spread is the one the spec asks for
(not the model's favourite answers) and a resumed run regenerates exactly the same fields for an index.
Each field type is one small model with a `draw(rng)`; files are read once, when the spec is validated.
"""

from __future__ import annotations

import csv
import io
import random
import uuid
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)


def resolve_spec_path(path: Path, info: ValidationInfo) -> Path:
    """Resolve a relative path against the spec file's folder (validation context `base_dir`), if there is one."""
    base = (info.context or {}).get("base_dir")
    return path if path.is_absolute() or base is None else Path(base) / path


SpecPath = Annotated[Path, AfterValidator(resolve_spec_path)]
"""A path written in a spec: relative paths are relative to the spec file, not to the working directory."""


def read_text(path: Path) -> str:
    """A UTF-8 file's text, or a ValueError a spec error can show (pydantic names the key it came from)."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None


class _Field(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Range(_Field):
    """A field drawn between two bounds (named by `bounds`) that must be in order."""

    bounds: ClassVar[tuple[str, str]] = ("min", "max")

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        low, high = (getattr(self, name) for name in self.bounds)
        if low > high:
            raise ValueError(f"{self.bounds[0]} ({low}) must not exceed {self.bounds[1]} ({high})")
        return self


class UuidField(_Field):
    """A random UUID (version 4) taken from the record's RNG, so the same index always gets the same id."""

    type: Literal["uuid"]

    def draw(self, rng: random.Random) -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class ChoiceField(_Field):
    """One value picked from a list, or from a text file with one value per line."""

    type: Literal["choice"]
    values: list[Any] | None = Field(None, description="The values to pick from.")
    file: SpecPath | None = Field(None, description="UTF-8 text file, one value per line (blank lines skipped).")
    weights: list[float] | None = Field(None, description="Relative weight of each value (default: all equal).")
    _pool: list[Any] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _load_values(self) -> ChoiceField:
        if (self.values is None) == (self.file is None):
            raise ValueError("give either values (a list) or file (one value per line)")
        self._pool = self.values if self.file is None else [v for v in read_text(self.file).splitlines() if v.strip()]
        if not self._pool:
            raise ValueError(f"nothing to choose from in {self.file or 'values'}")
        if self.weights is not None and len(self.weights) != len(self._pool):
            raise ValueError(f"weights has {len(self.weights)} entries for {len(self._pool)} values")
        return self

    def draw(self, rng: random.Random) -> Any:
        return rng.choices(self._pool, self.weights)[0] if self.weights else rng.choice(self._pool)


class IntegerField(_Range):
    """A whole number between min and max, both included."""

    type: Literal["integer"]
    min: int = Field(description="Smallest value.")
    max: int = Field(description="Largest value.")

    def draw(self, rng: random.Random) -> int:
        return rng.randint(self.min, self.max)


class NumberField(_Range):
    """A real number drawn uniformly between min and max, optionally rounded."""

    type: Literal["number"]
    min: float = Field(description="Smallest value.")
    max: float = Field(description="Largest value.")
    decimals: int | None = Field(None, ge=0, description="Round to this many decimal places (default: no rounding).")

    def draw(self, rng: random.Random) -> float:
        value = rng.uniform(self.min, self.max)
        return value if self.decimals is None else round(value, self.decimals)


class DateField(_Range):
    """A calendar day between start and end (both included), as text in `format`."""

    type: Literal["date"]
    bounds: ClassVar[tuple[str, str]] = ("start", "end")
    start: date = Field(description="First possible day (YYYY-MM-DD).")
    end: date = Field(description="Last possible day (YYYY-MM-DD).")
    format: str = Field("%Y-%m-%d", description="strftime format of the value.")

    def draw(self, rng: random.Random) -> str:
        return (self.start + timedelta(days=rng.randint(0, (self.end - self.start).days))).strftime(self.format)


class CsvField(_Field):
    """A row sampled from a CSV file with a header: the whole row as a dict of strings, or one column's value."""

    type: Literal["csv"]
    file: SpecPath = Field(description="UTF-8 CSV file whose first line names the columns.")
    column: str | None = Field(None, description="Take only this column (default: the whole row).")
    _rows: list[dict[str, str]] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _load_rows(self) -> CsvField:
        reader = csv.DictReader(io.StringIO(read_text(self.file).removeprefix("\ufeff"), newline=""))
        self._rows = list(reader)
        if not self._rows:
            raise ValueError(f"{self.file} has no rows under its header")
        if self.column is not None and self.column not in (reader.fieldnames or []):
            columns = ", ".join(reader.fieldnames or [])
            raise ValueError(f"{self.file} has no column {self.column!r} (columns: {columns})")
        return self

    def draw(self, rng: random.Random) -> dict[str, str] | str:
        row = rng.choice(self._rows)
        return dict(row) if self.column is None else row[self.column]


FIELD_TYPES: dict[str, type[_Field]] = {
    "uuid": UuidField, "choice": ChoiceField, "integer": IntegerField, "number": NumberField, "date": DateField,
    "csv": CsvField,
}
"""Each field model by its `type`, for messages that list what a field of that type accepts."""

FieldSpec = Annotated[
    Union[UuidField, ChoiceField, IntegerField, NumberField, DateField, CsvField], Field(discriminator="type")
]
"""One randomised field, chosen by its `type`: uuid, choice, integer, number, date or csv."""


def draw_fields(fields: Mapping[str, FieldSpec], seed: int) -> dict[str, Any]:
    """Every field's value for the record with this seed; the same seed always gives the same values."""
    rng = random.Random(seed)
    return {name: field.draw(rng) for name, field in fields.items()}
