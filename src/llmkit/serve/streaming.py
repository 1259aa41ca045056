"""Streams of engine outputs as the routes send them: several engine requests merged into one stream, drained to
their final outputs or sent as server-sent events, and the one-line request log every request ends with."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from llmkit.engine.outputs import CompletionOutput, RequestOutput
from llmkit.serve.errors import error_chunk
from llmkit.serve.protocol import UsageInfo

logger = logging.getLogger("llmkit.serve")

_DONE = object()


async def merge_streams(streams: Sequence[AsyncIterator]) -> AsyncIterator[tuple[int, object]]:
    """Interleave async iterators as (index, item); closing this cancels (and so aborts) every one."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator) -> None:
        try:
            async for item in stream:
                await queue.put((index, item))
        except Exception as error:  # handed to the consumer, raised there
            await queue.put((index, error))
        finally:
            await queue.put((index, _DONE))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item = await queue.get()
            if item is _DONE:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def prepend(first: object, rest: AsyncIterator) -> AsyncIterator:
    try:
        yield first
        async for item in rest:
            yield item
    finally:
        await rest.aclose()


async def final_outputs(
    stream: AsyncIterator[tuple[int, RequestOutput]], num_prompts: int, log: RequestLog
) -> list[RequestOutput]:
    """Drain a merged stream; the last output of each prompt, in prompt order (a failure is logged "failed",
    a cancellation "disconnected")."""
    last: dict[int, RequestOutput] = {}
    try:
        async with contextlib.aclosing(stream):
            async for index, output in stream:
                last[index] = output
    except asyncio.CancelledError:  # the client went away (see `serve/app.py`)
        log.done("disconnected")
        raise
    except BaseException:
        log.done("failed")
        raise
    return [last[i] for i in range(num_prompts)]


def usage(prompts: Sequence[Sequence[int]], outputs: Sequence[CompletionOutput], copies: int = 1) -> UsageInfo:
    """Token counts: every prompt, and every returned completion (copies included)."""
    prompt_tokens = sum(len(p) for p in prompts)
    completion_tokens = copies * sum(len(o.token_ids) for o in outputs)
    return UsageInfo(
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens
    )


def sse(body: BaseModel | str) -> str:
    """One server-sent event as OpenAI streams it."""
    data = body if isinstance(body, str) else body.model_dump_json()
    return f"data: {data}\n\n"


SSE_DONE = "data: [DONE]\n\n"


async def event_stream(
    events: AsyncIterator[str], stream: AsyncIterator[tuple[int, RequestOutput]], log: RequestLog
) -> AsyncIterator[str]:
    """A route's chunk events, then [DONE] (or an error event if generation fails after the stream began).

    On any exit, a client that went away included, the engine stream is closed (aborting its
    requests) and the request is logged with the usage `events` recorded so far.
    """
    outcome = "disconnected"
    try:
        async for event in events:
            yield event
        outcome = "ok"
        yield SSE_DONE
    except Exception as error:
        outcome = f"failed: {error}"
        if getattr(error, "status_code", 500) >= 500:
            logger.exception("stream %s failed", log.request_id, exc_info=error)
        yield sse(error_chunk(error))
        yield SSE_DONE
    finally:
        await events.aclose()
        await stream.aclose()
        log.done(outcome)


class RequestLog:
    """Times one request and writes its line: id, model, tokens in / out, latency, outcome, and the client's
    output-neutral fields (`user`, `metadata`, …) as JSON."""

    def __init__(self, request_id: str, model: str, fields: Mapping[str, Any] | None = None) -> None:
        self.request_id, self.model = request_id, model
        self.fields = dict(fields or {})
        self.started = time.perf_counter()
        self.usage: UsageInfo | None = None

    def done(self, outcome: str = "ok") -> None:
        latency = time.perf_counter() - self.started
        tokens_in = self.usage.prompt_tokens if self.usage else 0
        tokens_out = self.usage.completion_tokens if self.usage else 0
        fields = f" {json.dumps(self.fields, ensure_ascii=False)}" if self.fields else ""
        logger.info(
            "%s model=%s tokens_in=%d tokens_out=%d latency=%.3fs %s%s",
            self.request_id, self.model, tokens_in, tokens_out, latency, outcome, fields,
        )
