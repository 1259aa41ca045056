"""The FastAPI app: routes, API-key auth, body-size limit, CORS, metrics and the engine's lifetime.

Routes only parse, call the serving function (`serve/chat.py`, `serve/completions.py`, `serve/embeddings.py`,
`serve/models.py`, `serve/moderation.py`) and turn its result into JSON or a server-sent-event stream. `GET /` serves a
self-contained web chat page (`serve/static/chat.html`) that talks to these routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import TYPE_CHECKING, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST

from llmkit.api import LLM
from llmkit.engine.async_engine import AsyncEngine
from llmkit.serve import chat, completions, embeddings, models, moderation, rag
from llmkit.serve.body_limit import BodySizeLimit
from llmkit.serve.engine_client import ServingEngine
from llmkit.serve.errors import (
    PermissionDeniedError,
    add_exception_handlers,
    api_key_check,
)
from llmkit.serve.metrics import RequestCounter, ServerMetrics
from llmkit.serve.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    DetokenizeRequest,
    DetokenizeResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorResponse,
    HealthResponse,
    LoadAdapterRequest,
    ModelCard,
    ModelDeleted,
    ModelList,
    ModerationRequest,
    ModerationResponse,
    RagQueryRequest,
    RagQueryResponse,
    TokenizeRequest,
    TokenizeResponse,
    UnloadAdapterRequest,
)
from llmkit.serve.serving import ServingContext

if TYPE_CHECKING:
    from llmkit.safety import SafetyPolicy

ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 429)}
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a request its client abandoned: nobody reads it, the log does
T = TypeVar("T")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def create_app(
    llm: LLM | Callable[[], ServingEngine],
    *,
    model_id: str,
    api_key: str | None = None,
    max_queue: int = 256,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = 1_000_000,
    rag_store: str | None = None,
    safety: SafetyPolicy | None = None,
    tool_call_parser: str | None = None,
) -> FastAPI:
    """An OpenAI-compatible app serving `llm` as `model_id`; its engine lives as long as the app.

    `llm` is an `LLM` (our engine, run on a thread with at most `max_queue` requests in flight) or a
    function that starts another backend's `ServingEngine` (called when the app starts). Knowledge bases
    (`/v1/rag/{kb}/query`, chat models `rag:{kb}`) are read from `rag_store`, a folder or PostgreSQL URL.
    With a `safety` policy, chat and completion inputs and answers are checked and `/v1/moderations` answers.
    `tool_call_parser` names the format the model writes tool calls in (vLLM's names; default: its template's).
    """
    metrics = ServerMetrics()
    start_engine = (lambda: AsyncEngine(llm.engine, max_queue=max_queue)) if isinstance(llm, LLM) else llm

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = start_engine()
        metrics.watch(engine)
        app.state.serving = ServingContext(engine, model_id, metrics, safety, tool_call_parser)
        app.state.rag = rag.KnowledgeBases(rag_store)
        try:
            yield
        finally:
            engine.shutdown()
            app.state.rag.close()

    app = FastAPI(title="llmkit", summary="OpenAI-compatible server for open LLMs", lifespan=lifespan)
    add_exception_handlers(app)
    authorized = [Depends(api_key_check(api_key))]
    app.include_router(_openai_router(), prefix="/v1", dependencies=authorized, responses=ERRORS)
    app.include_router(
        _adapter_router(), prefix="/v1", dependencies=[*authorized, Depends(_adapter_loading_allowed(api_key))],
        responses={**ERRORS, 403: {"model": ErrorResponse}},
    )
    app.include_router(_tokenizer_router(), dependencies=authorized, responses=ERRORS)

    @app.get("/health", response_model=HealthResponse)
    async def health(request: Request) -> HealthResponse:
        """Liveness: answers while the engine is busy (the engine runs off the event loop)."""
        return HealthResponse(requests_in_flight=request.app.state.serving.engine.num_requests)

    @app.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    async def metrics_text() -> Response:
        """Prometheus metrics (no API key: scrapers rarely send one)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    chat_page = (files("llmkit.serve") / "static" / "chat.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def chat_ui() -> HTMLResponse:
        """The web chat page (no API key: it holds no data; the API calls it makes carry the key)."""
        return HTMLResponse(chat_page)

    if cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["*"], allow_headers=["*"]
        )
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.add_middleware(RequestCounter, metrics=metrics)  # outermost: counts 413s and CORS refusals too
    return app


def _serving(request: Request) -> ServingContext:
    return request.app.state.serving


def _openai_router() -> APIRouter:
    router = APIRouter()

    @router.get("/models", response_model=ModelList)
    async def list_models(ctx: ServingContext = Depends(_serving)) -> ModelList:
        return models.list_models(ctx)

    @router.get("/models/{model_id:path}", response_model=ModelCard)
    async def get_model(model_id: str, ctx: ServingContext = Depends(_serving)) -> ModelCard:
        return models.get_model(ctx, model_id)

    @router.post(
        "/chat/completions",
        response_model=ChatCompletionResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE chunks with stream"}},
    )
    async def create_chat_completion(
        body: ChatCompletionRequest, request: Request, ctx: ServingContext = Depends(_serving)
    ):
        return await _unless_disconnected(request, _chat_completion(body, request, ctx))

    @router.post("/rag/{kb}/query", response_model=RagQueryResponse)
    async def query_knowledge_base(kb: str, body: RagQueryRequest, request: Request) -> RagQueryResponse:
        """Retrieval only: the chunks of knowledge base `kb` that best match the query."""
        return await rag.query(request.app.state.rag, kb, body)

    @router.post("/embeddings", response_model=EmbeddingResponse)
    async def create_embeddings(body: EmbeddingRequest, ctx: ServingContext = Depends(_serving)) -> EmbeddingResponse:
        return await embeddings.create_embeddings(ctx, body)

    @router.post(
        "/completions",
        response_model=CompletionResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE chunks with stream"}},
    )
    async def create_completion(body: CompletionRequest, request: Request, ctx: ServingContext = Depends(_serving)):
        return await _unless_disconnected(request, _completion(body, ctx))

    @router.post("/moderations", response_model=ModerationResponse)
    async def create_moderation(body: ModerationRequest, ctx: ServingContext = Depends(_serving)) -> ModerationResponse:
        """Classify text with the server's safety policy (404 when it has none)."""
        return await moderation.moderate(ctx, body)

    return router


async def _chat_completion(body: ChatCompletionRequest, request: Request, ctx: ServingContext):
    """A chat completion, or a `rag:{kb}` model's grounded one (with its sources)."""
    await moderation.check_messages(ctx, body.messages)  # the user's own words, before any grounding
    if not rag.is_rag_model(body.model):
        return _respond(await chat.create_chat_completion(ctx, body))
    grounded = await rag.ground(request.app.state.rag, body)
    if grounded.hits:
        result = await chat.create_chat_completion(ctx, grounded.request, served_as=body.model)
    else:
        result = rag.not_found(body)
    if isinstance(result, AsyncIterator):
        return _respond(result)
    # Returned as JSON directly: the route's response model would drop the sources.
    return JSONResponse(rag.with_sources(result, grounded, body.model).model_dump(mode="json"))


async def _completion(body: CompletionRequest, ctx: ServingContext):
    return _respond(await completions.create_completion(ctx, body))


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T | Response:
    """`work`'s result, unless the client goes away first: then `work` is cancelled, which closes its engine
    streams and so aborts its requests (a stream's own response aborts them the same way once it has started)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(request))
    await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        gone.cancel()
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return Response(status_code=CLIENT_CLOSED_REQUEST)


async def _disconnect(request: Request) -> None:
    """Return once the client has closed the connection (the body is already read: nothing else arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _adapter_router() -> APIRouter:
    """Load and unload LoRA adapters at run time (also under vLLM's route names)."""
    router = APIRouter()

    @router.post("/load_adapter", response_model=ModelCard)
    @router.post("/load_lora_adapter", response_model=ModelCard, include_in_schema=False)
    async def load_adapter(body: LoadAdapterRequest, ctx: ServingContext = Depends(_serving)) -> ModelCard:
        return await models.load_adapter(ctx, body)

    @router.post("/unload_adapter", response_model=ModelDeleted)
    @router.post("/unload_lora_adapter", response_model=ModelDeleted, include_in_schema=False)
    async def unload_adapter(body: UnloadAdapterRequest, ctx: ServingContext = Depends(_serving)) -> ModelDeleted:
        return await models.unload_adapter(ctx, body)

    return router


def _adapter_loading_allowed(api_key: str | None):
    """A dependency refusing run-time adapter loading (a path on this machine) on a server without an API key."""

    async def check() -> None:
        if api_key is None:
            raise PermissionDeniedError(
                "loading and unloading adapters needs a server started with --api-key (it reads paths on the server)"
            )

    return check


def _tokenizer_router() -> APIRouter:
    router = APIRouter()

    @router.post("/tokenize", response_model=TokenizeResponse)
    async def tokenize(body: TokenizeRequest, ctx: ServingContext = Depends(_serving)) -> TokenizeResponse:
        return models.tokenize(ctx, body)

    @router.post("/detokenize", response_model=DetokenizeResponse)
    async def detokenize(body: DetokenizeRequest, ctx: ServingContext = Depends(_serving)) -> DetokenizeResponse:
        return models.detokenize(ctx, body)

    return router


def _respond(result):
    if isinstance(result, AsyncIterator):
        return StreamingResponse(result, media_type="text/event-stream", headers=SSE_HEADERS)
    return result
