"""Request and response bodies of the gazetteer tool server; values are range-checked here, so a bad one is a
400 naming the field before anything reaches the database."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Place(BaseModel):
    """A named place: its name, the other names it answers to, and where it is (WGS 84)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Name = Field(description="The place's main name, e.g. 北京.")
    aliases: list[Name] = Field(default_factory=list, max_length=100, description="Other names, e.g. Beijing, Peking.")
    longitude: float = Field(ge=-180, le=180, description="Degrees east, -180 to 180.")
    latitude: float = Field(ge=-90, le=90, description="Degrees north, -90 to 90.")
    altitude: float | None = Field(None, description="Metres above sea level, if known.")

    @model_validator(mode="after")
    def _distinct_aliases(self) -> Place:
        """Drop aliases that repeat the name or each other (names match regardless of case)."""
        seen, distinct = {self.name.casefold()}, []
        for alias in self.aliases:
            if alias.casefold() not in seen:
                seen.add(alias.casefold())
                distinct.append(alias)
        self.aliases = distinct
        return self

    @property
    def names(self) -> list[str]:
        """The name, then the aliases: every name the place can be looked up by."""
        return [self.name, *self.aliases]


class PlacesFound(BaseModel):
    """The places a lookup found (each once, in the order asked) and the names that matched none."""

    places: list[Place]
    missing: list[str]


class Symbol(BaseModel):
    """A map symbol: its names, what kind of feature it marks, how it is drawn."""

    name_zh: Name
    name_en: Name
    category: str = Field(description="What the symbol marks, e.g. command, area, obstacle.")
    geometry: Literal["point", "line", "polygon"]
    parameters: dict[str, Any] = Field(description="Drawing parameters: line style, colour, width, default offset …")


class SymbolsFound(BaseModel):
    """The symbols a lookup found (each once, in the order asked) and the names that matched none."""

    symbols: list[Symbol]
    missing: list[str]


class NewId(BaseModel):
    id: str = Field(description="A random UUID (version 4) for a new object.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    places: int
    symbols: int
