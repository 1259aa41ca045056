"""Retrieval on the server: `POST /v1/rag/{kb}/query`, and chat models `rag:{kb}` that answer from a knowledge base.

A `rag:{kb}` request is answered like any chat request, after its last user message is replaced by the
grounded prompt of `llmkit.rag.answer` (the chunks retrieved for it, numbered for citation). When nothing
relevant is found, the answer is the not-found sentence and no tokens are generated.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from llmkit.rag.answer import (
    DEFAULT_MIN_SIMILARITY,
    NOT_FOUND,
    build_messages,
    relevant_hits,
)
from llmkit.rag.knowledge_base import Hit, KnowledgeBase
from llmkit.rag.store import Filters
from llmkit.serve.chat import message_text
from llmkit.serve.errors import invalid
from llmkit.serve.protocol import (
    AssistantMessage,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessage,
    DeltaMessage,
    RagChatCompletionResponse,
    RagChunk,
    RagQueryRequest,
    RagQueryResponse,
    RagSource,
    UsageInfo,
)
from llmkit.serve.streaming import SSE_DONE, sse

RAG_PREFIX = "rag:"
RAG_CONTEXT_CHUNKS = 4  # chunks given to a rag:{kb} model: enough to answer, few enough for a small context


class KnowledgeBases:
    """The knowledge bases of one store location, each opened on first use and kept open."""

    def __init__(self, location: str | None):
        self.location = location
        self._open: dict[str, KnowledgeBase] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> KnowledgeBase:
        """Knowledge base `name` (404 when there is none)."""
        with self._lock:
            if name not in self._open:
                self._open[name] = KnowledgeBase.open(name, self.location)
            return self._open[name]

    def close(self) -> None:
        """Close every open knowledge base."""
        with self._lock:
            for kb in self._open.values():
                kb.close()
            self._open.clear()


@dataclass(frozen=True)
class Grounded:
    """A rag:{kb} request rewritten to answer from retrieved chunks (`hits`; none means not found)."""

    request: ChatCompletionRequest
    hits: list[Hit]


async def query(kbs: KnowledgeBases, kb: str, request: RagQueryRequest) -> RagQueryResponse:
    """Search knowledge base `kb` (retrieval only, no model)."""
    filters = Filters(
        tuple(request.sources or ()),
        request.after.isoformat() if request.after else None,
        request.before.isoformat() if request.before else None,
    )
    hits = await asyncio.to_thread(
        lambda: kbs.get(kb).search(request.query, k=request.k, mode=request.mode, filters=filters, mmr=request.mmr)
    )
    if request.min_similarity is not None:
        hits = relevant_hits(hits, request.min_similarity)
    return RagQueryResponse(kb=kb, data=rag_chunks(hits))


def is_rag_model(model: str | None) -> bool:
    """Whether a chat request names a knowledge base (`rag:{kb}`) rather than a model."""
    return bool(model and model.startswith(RAG_PREFIX))


async def ground(kbs: KnowledgeBases, request: ChatCompletionRequest) -> Grounded:
    """Retrieve for the request's last user message and put the numbered chunks in its place."""
    kb = request.model.removeprefix(RAG_PREFIX)
    last = max((i for i, m in enumerate(request.messages) if m.role == "user"), default=None)
    question = message_text(request.messages[last], last) if last is not None else None
    if not isinstance(question, str) or not question.strip():
        raise invalid(f"a {RAG_PREFIX}{kb} request needs a last user message with text content", "messages")
    found = await asyncio.to_thread(lambda: kbs.get(kb).search(question, k=RAG_CONTEXT_CHUNKS))
    hits = relevant_hits(found, DEFAULT_MIN_SIMILARITY)
    system, user = build_messages(question, hits)
    history = [m for m in request.messages[:last] if m.role not in ("system", "developer")]
    messages = [ChatMessage(**system), *history, ChatMessage(**user)]
    return Grounded(request.model_copy(update={"model": None, "messages": messages}), hits)


def with_sources(response: ChatCompletionResponse, grounded: Grounded, model: str) -> RagChatCompletionResponse:
    """The chat response named after the rag model, with the chunks it was given."""
    return RagChatCompletionResponse(**{**response.model_dump(), "model": model}, sources=rag_chunks(grounded.hits))


def not_found(request: ChatCompletionRequest) -> ChatCompletionResponse | AsyncIterator[str]:
    """The answer when nothing relevant was retrieved: the not-found sentence, as a response or a stream."""
    request_id, model = f"chatcmpl-{uuid.uuid4().hex}", request.model
    if not request.stream:
        choice = ChatCompletionChoice(index=0, message=AssistantMessage(content=NOT_FOUND), finish_reason="stop")
        return ChatCompletionResponse(id=request_id, model=model, choices=[choice], usage=UsageInfo())

    async def events() -> AsyncIterator[str]:
        created = int(time.time())
        for delta, finish in ((DeltaMessage(role="assistant", content=NOT_FOUND), None), (DeltaMessage(), "stop")):
            choice = ChatCompletionChunkChoice(index=0, delta=delta, finish_reason=finish)
            yield sse(ChatCompletionChunk(id=request_id, created=created, model=model, choices=[choice]))
        yield SSE_DONE

    return events()


def rag_chunks(hits: list[Hit]) -> list[RagChunk]:
    """Hits as the API returns them, numbered from 1 as prompts cite them."""
    return [
        RagChunk(
            index=number,
            text=hit.chunk.text,
            score=hit.score,
            similarity=hit.similarity,
            source=RagSource(
                path=hit.chunk.path, title=hit.chunk.title, page=hit.chunk.page, heading=hit.chunk.heading
            ),
        )
        for number, hit in enumerate(hits, 1)
    ]
