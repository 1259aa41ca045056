"""docs/serving.md lists every request field: a field added to a request body (or a part of one) without a
row in the doc's "Request fields" section fails here, so the tables cannot fall behind the code."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from llmkit.engine.params import ResponseFormat
from llmkit.serve.protocol import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    ContentPart,
    DetokenizeRequest,
    EmbeddingRequest,
    FunctionDefinition,
    LoadAdapterRequest,
    ModerationRequest,
    NamedToolChoice,
    RagQueryRequest,
    SamplingRequest,
    StreamOptions,
    TokenizeRequest,
    Tool,
    UnloadAdapterRequest,
)

DOC = Path(__file__).parents[2] / "docs" / "serving.md"
ROUTE_BODIES = [
    ChatCompletionRequest, CompletionRequest, EmbeddingRequest, TokenizeRequest, DetokenizeRequest,
    ModerationRequest, RagQueryRequest, LoadAdapterRequest, UnloadAdapterRequest,
]


def _parts(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models inside a field's type (through lists, dicts, unions and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _parts(arg)]


def request_models() -> list[type[BaseModel]]:
    """Every route body, its base classes that are requests too, and every model nested in their fields."""
    found: list[type[BaseModel]] = []
    todo = list(ROUTE_BODIES)
    while todo:
        model = todo.pop(0)
        if model in found:
            continue
        found.append(model)
        todo += [base for base in model.__bases__ if base.__name__ not in ("BaseModel", "RequestModel")]
        todo += [part for field in model.model_fields.values() for part in _parts(field.annotation)]
    return found


REQUEST_MODELS = request_models()


def request_fields_section() -> str:
    """The text of the "## Request fields" section, up to the next top-level section."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("\n## Request fields\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_walk_reaches_every_part() -> None:
    parts = {SamplingRequest, ChatMessage, ContentPart, Tool, FunctionDefinition, NamedToolChoice, StreamOptions,
             ResponseFormat}
    assert parts <= set(REQUEST_MODELS)


@pytest.mark.parametrize("model", REQUEST_MODELS, ids=lambda model: model.__name__)
def test_every_request_field_is_documented(model: type[BaseModel]) -> None:
    section = request_fields_section()
    missing = [name for name in model.model_fields if f"`{name}`" not in section]
    assert not missing, f"docs/serving.md's Request fields do not list {model.__name__}.{missing}: add a row"
