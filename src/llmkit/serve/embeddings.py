"""`/v1/embeddings`: texts -> a sentence-transformers model (`llmkit.embeddings`) -> vectors, as floats or base64."""

from __future__ import annotations

import asyncio
import base64
import struct

from llmkit.embeddings import DEFAULT_EMBEDDING_MODEL, Embedder
from llmkit.errors import LLMKitError
from llmkit.serve.errors import invalid
from llmkit.serve.protocol import (
    EmbeddingData,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
)
from llmkit.serve.serving import ServingContext


async def create_embeddings(ctx: ServingContext, request: EmbeddingRequest) -> EmbeddingResponse:
    """Embed every input text; loading and encoding run in a worker thread, off the event loop."""
    texts = _texts(request.input)
    embedder = await asyncio.to_thread(_load, request.model or DEFAULT_EMBEDDING_MODEL)
    if request.dimensions is not None and request.dimensions != embedder.dimension:
        raise invalid(
            f"{embedder.name} returns {embedder.dimension} dimensions and cannot shorten them: "
            f"leave dimensions out or set it to {embedder.dimension}",
            "dimensions",
        )
    vectors, counts = await asyncio.to_thread(_embed, embedder, texts)
    encode = _base64 if request.encoding_format == "base64" else list
    data = [EmbeddingData(index=i, embedding=encode(vector)) for i, vector in enumerate(vectors)]
    tokens = sum(counts)
    return EmbeddingResponse(
        data=data, model=embedder.name, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
    )


def _texts(value: str | list) -> list[str]:
    """The input as a list of strings; token ids are refused (our models tokenize for themselves)."""
    texts = [value] if isinstance(value, str) else value
    if any(not isinstance(text, str) for text in texts):
        raise invalid("input as token ids is not supported: send a string or a list of strings", "input")
    return texts


def _load(name: str) -> Embedder:
    try:
        return Embedder.load(name, device="cpu")
    except LLMKitError as error:
        error.param = "model"
        raise


def _embed(embedder: Embedder, texts: list[str]) -> tuple[list[list[float]], list[int]]:
    try:
        return embedder.embed(texts), embedder.count_tokens(texts)
    except LLMKitError as error:  # empty input or an empty text
        error.param = "input"
        raise


def _base64(vector: list[float]) -> str:
    """OpenAI's base64 encoding: the vector's little-endian float32 bytes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
