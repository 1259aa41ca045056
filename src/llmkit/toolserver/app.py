"""The gazetteer tool server's HTTP surface (FastAPI): named places and map symbols for LLM tool calls.

Routes parse, call one `Gazetteer` method and return its result. API-key auth, the OpenAI-style error
bodies and the request-body limit are `llmkit serve`'s own, so a client handles both servers alike. Writes
need a key: a server started without one is read-only, so no local client can change the places.
"""

from __future__ import annotations

import re
import uuid

from fastapi import APIRouter, Depends, FastAPI, Query

from llmkit.serve.body_limit import BodySizeLimit
from llmkit.serve.errors import PermissionDeniedError, add_exception_handlers, api_key_check, invalid
from llmkit.serve.protocol import ErrorResponse
from llmkit.toolserver.gazetteer import Gazetteer
from llmkit.toolserver.protocol import Health, NewId, Place, PlacesFound, SymbolsFound

ERRORS = {status: {"model": ErrorResponse} for status in (400, 401)}
NOT_FOUND = {404: {"model": ErrorResponse, "description": "None of the names is known"}}
NAME_TAKEN = {409: {"model": ErrorResponse, "description": "A name or alias belongs to another place"}}
READ_ONLY = {403: {"model": ErrorResponse, "description": "The server was started without an API key"}}


def create_app(gazetteer: Gazetteer, *, api_key: str | None = None, max_body_bytes: int = 1_000_000) -> FastAPI:
    """An app serving `gazetteer`; with `api_key`, every route but /health needs `Authorization: Bearer <api_key>`,
    and without one the app is read-only (writes answer 403). Bodies over `max_body_bytes` answer 413."""
    app = FastAPI(title="llmkit gazetteer", summary="Named places and map symbols for LLM tools")
    add_exception_handlers(app)
    app.include_router(_router(gazetteer, api_key), dependencies=[Depends(api_key_check(api_key))], responses=ERRORS)

    @app.get("/health", response_model=Health)
    def health() -> Health:
        """Liveness, with what the database holds (no API key, like `llmkit serve`'s /health)."""
        return gazetteer.health()

    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    return app


def _writes_allowed(api_key: str | None):
    """A dependency refusing writes (403) on a server started without an API key: anyone could reach those."""

    async def check() -> None:
        if api_key is None:
            raise PermissionDeniedError("this tool server is read-only: writes need a server started with --api-key")

    return check


def _router(gazetteer: Gazetteer, api_key: str | None) -> APIRouter:
    router = APIRouter()
    writes = [Depends(_writes_allowed(api_key))]

    @router.get("/places", response_model=PlacesFound, responses=NOT_FOUND)
    def find_places(names: list[str] = Depends(_names)) -> PlacesFound:
        """The places with these names or aliases, and the names that matched none."""
        return gazetteer.find_places(names)

    @router.post("/places", status_code=201, response_model=Place, responses={**NAME_TAKEN, **READ_ONLY},
                 dependencies=writes)
    def add_place(place: Place) -> Place:
        """Add a place."""
        return gazetteer.add_place(place)

    @router.put("/places/{name}", response_model=Place, responses={**NOT_FOUND, **NAME_TAKEN, **READ_ONLY},
                dependencies=writes)
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
