"""The gazetteer's tables (SQLAlchemy ORM): places, every name they answer to, and map symbols.

Plain column types only, so the same tables work on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class PlaceRow(Base):
    """A place and its coordinates; its names (the main one included) live in `place_names`."""

    __tablename__ = "places"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    longitude: Mapped[float]
    latitude: Mapped[float]
    altitude: Mapped[float | None]
    names: Mapped[list[PlaceNameRow]] = relationship(
        back_populates="place", cascade="all, delete-orphan", order_by="PlaceNameRow.id", lazy="selectin"
    )


class PlaceNameRow(Base):
    """One name of one place; `key` (the case-folded name) is unique, so no two places share a name or alias."""

    __tablename__ = "place_names"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    place_id: Mapped[int] = mapped_column(ForeignKey("places.id", ondelete="CASCADE"), index=True)
    place: Mapped[PlaceRow] = relationship(back_populates="names")


class SymbolRow(Base):
    """A map symbol, found by its Chinese or English name."""

    __tablename__ = "symbols"

    id: Mapped[int] = mapped_column(primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(200), unique=True)
    name_en: Mapped[str] = mapped_column(String(200), unique=True)
    category: Mapped[str] = mapped_column(String(100))
    geometry: Mapped[str] = mapped_column(String(10))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
