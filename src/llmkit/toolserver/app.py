"""The gazetteer tool server's HTTP surface (FastAPI): named places and map symbols for LLM tool calls.

Routes parse, call one `Gazetteer` method and return its result. API-key auth and the OpenAI-style error
bodies are `llmkit serve`'s own, so a client handles both servers alike.
"""

from __future__ import annotations

import re
import uuid

from fastapi import APIRouter, Depends, FastAPI, Query

from llmkit.serve.errors import add_exception_handlers, api_key_check, invalid
from llmkit.serve.protocol import ErrorResponse
from llmkit.toolserver.gazetteer import Gazetteer
from llmkit.toolserver.protocol import Health, NewId, Place, PlacesFound, SymbolsFound

ERRORS = {status: {"model": ErrorResponse} for status in (400, 401)}
NOT_FOUND = {404: {"model": ErrorResponse, "description": "None of the names is known"}}
NAME_TAKEN = {409: {"model": ErrorResponse, "description": "A name or alias belongs to another place"}}


def create_app(gazetteer: Gazetteer, *, api_key: str | None = None) -> FastAPI:
    """An app serving `gazetteer`; with `api_key`, every route but /health needs `Authorization: Bearer <api_key>`."""
    app = FastAPI(title="llmkit gazetteer", summary="Named places and map symbols for LLM tools")
    add_exception_handlers(app)
    app.include_router(_router(gazetteer), dependencies=[Depends(api_key_check(api_key))], responses=ERRORS)

    @app.get("/health", response_model=Health)
    def health() -> Health:
        """Liveness, with what the database holds (no API key, like `llmkit serve`'s /health)."""
        return gazetteer.health()

    return app


def _router(gazetteer: Gazetteer) -> APIRouter:
    router = APIRouter()

    @router.get("/places", response_model=PlacesFound, responses=NOT_FOUND)
    def find_places(names: list[str] = Depends(_names)) -> PlacesFound:
        """The places with these names or aliases, and the names that matched none."""
        return gazetteer.find_places(names)

    @router.post("/places", status_code=201, response_model=Place, responses=NAME_TAKEN)
    def add_place(place: Place) -> Place:
        """Add a place."""
        return gazetteer.add_place(place)

    @router.put("/places/{name}", response_model=Place, responses={**NOT_FOUND, **NAME_TAKEN})
    def update_place(name: str, place: Place) -> Place:
        """Replace the place with this name or alias (renaming it when the body's name differs)."""
        return gazetteer.update_place(name, place)

    @router.get("/symbols", response_model=SymbolsFound, responses=NOT_FOUND)
    def find_symbols(names: list[str] = Depends(_names)) -> SymbolsFound:
        """The map symbols with these Chinese or English names, and the names that matched none."""
        return gazetteer.find_symbols(names)

    @router.post("/ids", response_model=NewId)
    def new_id() -> NewId:
        """A fresh random id (UUID version 4) for an object a tool is about to create."""
        return NewId(id=str(uuid.uuid4()))

    return router


def _names(names: str = Query(description="Names separated by commas, e.g. 北京,Tianjin")) -> list[str]:
    """The distinct names of a comma-separated list (Chinese commas too), blanks dropped."""
    parsed = list(dict.fromkeys(part.strip() for part in re.split("[,，]", names) if part.strip()))
    if not parsed:
        raise invalid("names: give one or more names separated by commas", "names")
    return parsed
