"""The gazetteer: places and map symbols in one database (a SQLite file, or PostgreSQL through the same URL form).

The routes call these methods and nothing else. Failures are `llmkit.errors` carrying their status code
(404 nothing found, 409 a name already taken); nothing here knows about HTTP.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from typing import TypeVar

from sqlalchemy import create_engine, func, or_, select
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from llmkit.errors import LLMKitError
from llmkit.toolserver.models import Base, PlaceNameRow, PlaceRow, SymbolRow
from llmkit.toolserver.protocol import Health, Place, PlacesFound, Symbol, SymbolsFound

Row = TypeVar("Row")
PLACE_COLUMNS = {"name", "longitude", "latitude", "altitude"}  # the rest of a `Place` is its names


class NotFoundError(LLMKitError):
    """No place or symbol has any of the names asked for."""

    status_code = 404


class NameTakenError(LLMKitError):
    """A new name or alias that another place already has."""

    status_code = 409


class Gazetteer:
    """Look up, add and update places; look up map symbols. Each call is one transaction."""

    def __init__(self, url: str) -> None:
        """Open the database at SQLAlchemy `url`; create missing tables and fill empty ones from the shipped data."""
        try:
            self.engine = create_engine(url)
        except (ArgumentError, ImportError) as error:
            raise LLMKitError(f"not a usable database URL ({error}); write sqlite:///path.db or "
                              "postgresql://user@host/name") from None
        try:
            Base.metadata.create_all(self.engine)
        except OperationalError as error:
            raise LLMKitError(f"cannot open the database {self.url}: {error.orig}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._seed()

    @property
    def url(self) -> str:
        """The database URL, password hidden, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def find_places(self, names: list[str]) -> PlacesFound:
        """The places with these names or aliases (any case); `NotFoundError` when none has one."""
        with self._sessions() as session:
            rows = session.scalars(select(PlaceNameRow).where(PlaceNameRow.key.in_([n.casefold() for n in names])))
            found, missing = _in_order(names, {row.key: row.place for row in rows})
            if not found:
                raise NotFoundError(f"no place is named {', '.join(names)}")
            return PlacesFound(places=[_place(row) for row in found], missing=missing)

    def add_place(self, place: Place) -> Place:
        """Store a new place; `NameTakenError` when another place already has its name or one of its aliases."""
        with self._writing(place) as session:
            self._check_names_free(session, place)
            session.add(_place_row(place))
        return place

    def update_place(self, name: str, place: Place) -> Place:
        """Replace the place called `name` (a name or alias) with `place`, renaming it if the name differs."""
        with self._writing(place) as session:
            row = self._place_named(session, name)
            self._check_names_free(session, place, row.id)
            row.names.clear()
            session.flush()  # delete the old names before inserting new ones: a kept name would clash otherwise
            row.names.extend(_name_rows(place))
            for column, value in place.model_dump(include=PLACE_COLUMNS).items():
                setattr(row, column, value)
        return place

    def find_symbols(self, names: list[str]) -> SymbolsFound:
        """The map symbols with these Chinese or English names (English in any case); `NotFoundError` when none."""
        keys = [name.casefold() for name in names]
        with self._sessions() as session:
            query = select(SymbolRow).where(or_(SymbolRow.name_zh.in_(names), func.lower(SymbolRow.name_en).in_(keys)))
            by_key = {key: row for row in session.scalars(query) for key in (row.name_zh.casefold(), row.name_en.casefold())}
        found, missing = _in_order(names, by_key)
        if not found:
            raise NotFoundError(f"no map symbol is named {', '.join(names)}")
        return SymbolsFound(symbols=[Symbol.model_validate(row, from_attributes=True) for row in found], missing=missing)

    def health(self) -> Health:
        """How many places and symbols the database holds (a query, so it also proves the database answers)."""
        with self._sessions() as session:
            return Health(places=_count(session, PlaceRow), symbols=_count(session, SymbolRow))

    @contextmanager
    def _writing(self, place: Place) -> Iterator[Session]:
        """A write transaction; a name another request took meanwhile (a unique key) is a 409, not a 500."""
        try:
            with self._sessions.begin() as session:
                yield session
        except IntegrityError:
            taken = ", ".join(place.names)
            raise NameTakenError(f"one of the names {taken} was just taken by another place") from None

    def _place_named(self, session: Session, name: str) -> PlaceRow:
        row = session.scalar(select(PlaceNameRow).where(PlaceNameRow.key == name.casefold()))
        if row is None:
            raise NotFoundError(f"no place is named {name}")
        return row.place

    def _check_names_free(self, session: Session, place: Place, place_id: int | None = None) -> None:
        """`NameTakenError` naming the first of `place`'s names that a place other than `place_id` has."""
        query = select(PlaceNameRow).where(PlaceNameRow.key.in_([name.casefold() for name in place.names]))
        if place_id is not None:
            query = query.where(PlaceNameRow.place_id != place_id)
        taken = session.scalars(query).first()
        if taken is not None:
            raise NameTakenError(f"{taken.name!r} is already a name of the place {taken.place.name!r}")

    def _seed(self) -> None:
        """Fill an empty places or symbols table from the data shipped with llmkit (see data/README.md)."""
        with self._sessions.begin() as session:
            if not _count(session, PlaceRow):
                session.add_all(_place_row(place) for place in shipped_places())
            if not _count(session, SymbolRow):
                session.add_all(SymbolRow(**symbol.model_dump()) for symbol in shipped_symbols())


def shipped_places() -> list[Place]:
    """The places of `data/places.csv`: Chinese provincial-level capitals and world capitals (GeoNames)."""
    return [
        Place(
            name=row["name"], aliases=row["aliases"].split("|") if row["aliases"] else [],
            longitude=row["longitude"], latitude=row["latitude"], altitude=row["altitude"] or None,
        )
        for row in _shipped_csv("places.csv")
    ]


def shipped_symbols() -> list[Symbol]:
    """The map symbols of `data/symbols.csv`."""
    return [Symbol(**{**row, "parameters": json.loads(row["parameters"])}) for row in _shipped_csv("symbols.csv")]


def _shipped_csv(name: str) -> list[dict[str, str]]:
    text = (files("llmkit.toolserver") / "data" / name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _in_order(names: list[str], by_key: dict[str, Row]) -> tuple[list[Row], list[str]]:
    """The rows `names` refer to (looked up case-folded), each once in the order asked, and the names matching none."""
    found, missing = [], []
    for name in names:
        row = by_key.get(name.casefold())
        if row is None:
            missing.append(name)
        elif row not in found:
            found.append(row)
    return found, missing


def _count(session: Session, table: type[Base]) -> int:
    return session.scalar(select(func.count()).select_from(table))


def _place_row(place: Place) -> PlaceRow:
    return PlaceRow(names=_name_rows(place), **place.model_dump(include=PLACE_COLUMNS))


def _name_rows(place: Place) -> list[PlaceNameRow]:
    return [PlaceNameRow(key=name.casefold(), name=name) for name in place.names]


def _place(row: PlaceRow) -> Place:
    aliases = [entry.name for entry in row.names if entry.name != row.name]
    return Place(name=row.name, aliases=aliases, longitude=row.longitude, latitude=row.latitude, altitude=row.altitude)
