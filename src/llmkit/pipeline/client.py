"""The one model client of a pipeline: OpenAI chat completions, over HTTP or to an in-process `llmkit serve` app.

In-process, the model is served by the same FastAPI app `llmkit serve` runs, reached through httpx's ASGI
transport instead of a socket, so both paths share every line (tool calls included). Requests run
concurrently; the server's engine batches them (continuous batching), which is the pipeline's batching.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import openai

from llmkit.endpoint import EndpointError, check_endpoint
from llmkit.pipeline.config import ModelConfig, Sampling
from llmkit.pipeline.tools import Toolset

if TYPE_CHECKING:
    from fastapi import FastAPI

    from llmkit.api import LLM

IN_PROCESS_URL = "http://llmkit/v1"


@dataclass
class Completion:
    """A model's final answer to one record, with the tool calls made on the way and the tokens spent."""

    text: str
    finish_reason: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatClient:
    """Chat completions for one model id; `complete` runs the tool-call rounds a task allows."""

    def __init__(self, client: openai.AsyncOpenAI, model: str) -> None:
        self.client, self.model = client, model

    async def complete(
        self, messages: list[dict[str, Any]], sampling: Sampling, tools: Toolset | None = None, *,
        max_tool_rounds: int = 0, tool_choice: str = "auto",
    ) -> Completion:
        """Ask until the model answers without calling tools; after `max_tool_rounds` rounds of calls it must
        answer (tool_choice "none"). Each round's calls run concurrently and go back as `role: tool` messages."""
        messages = list(messages)
        request = sampling.model_dump(exclude_none=True)
        completion = Completion("", None)
        for round_number in range(max_tool_rounds + 1):
            if tools is not None and tools.tools:
                last = round_number == max_tool_rounds
                request |= {"tools": tools.specs, "tool_choice": "none" if last else tool_choice}
            reply = await self.client.chat.completions.create(model=self.model, messages=messages, **request)
            if reply.usage is not None:
                completion.prompt_tokens += reply.usage.prompt_tokens
                completion.completion_tokens += reply.usage.completion_tokens
            choice = reply.choices[0]
            completion.text, completion.finish_reason = choice.message.content or "", choice.finish_reason
            calls = choice.message.tool_calls or []
            if not calls or tools is None or round_number == max_tool_rounds:
                break
            messages.append(choice.message.model_dump(include={"role", "content", "tool_calls"}))
            results = await asyncio.gather(*(tools.call(call.id, call.function.name, call.function.arguments)
                                             for call in calls))
            messages += [{"role": "tool", "tool_call_id": result.id, "content": result.result} for result in results]
            completion.tool_calls += [{"round": round_number + 1, **asdict(result)} for result in results]
        return completion


@asynccontextmanager
async def open_client(
    config: ModelConfig, load_llm: Callable[[ModelConfig], LLM] | None = None,
) -> AsyncIterator[ChatClient]:
    """A client for the pipeline's model, open for the block: a server at `base_url`, else the model loaded here
    (by `load_llm`, default `LLM.build`) and served in-process."""
    if config.base_url is None:
        from llmkit.serve import create_app  # loads torch: only for in-process models

        llm = (load_llm or _build_llm)(config)
        async with serve_in_process(create_app(llm, model_id=config.name), config.name, config.timeout) as client:
            yield client
        return
    async with openai.AsyncOpenAI(base_url=config.base_url, api_key=_api_key(config), timeout=config.timeout) as api:
        yield ChatClient(api, await check_endpoint(api, config.model, "model", "the pipeline"))


@asynccontextmanager
async def serve_in_process(app: FastAPI, model: str, timeout: float = 600.0) -> AsyncIterator[ChatClient]:
    """A client of an OpenAI-compatible ASGI app run in this event loop, its lifespan (the engine) included:
    httpx's ASGI transport does not run lifespan events, so they run here."""
    transport = httpx.ASGITransport(app=app)
    http = httpx.AsyncClient(transport=transport, base_url=IN_PROCESS_URL)
    async with app.router.lifespan_context(app), http:
        api = openai.AsyncOpenAI(base_url=IN_PROCESS_URL, api_key="in-process", http_client=http, max_retries=0,
                                 timeout=timeout)
        yield ChatClient(api, model)


def _build_llm(config: ModelConfig) -> LLM:
    from llmkit.api import LLM

    return LLM.build(config.name, max_seq_len=config.max_seq_len, max_batch_size=config.max_batch_size,
                     dtype=config.dtype, device=config.device, backend=config.backend, quantize=config.quantize,
                     compile=config.compile)


def _api_key(config: ModelConfig) -> str:
    if config.api_key_env is None:
        return "no-key"  # the client insists on a string; servers without auth ignore it
    key = os.environ.get(config.api_key_env)
    if not key:
        raise EndpointError(f"model.api_key_env: the environment variable {config.api_key_env} is not set")
    return key

