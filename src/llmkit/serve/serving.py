"""What chat and completions share: the served model, OpenAI parameters -> `SamplingParams`, running
several engine requests as one stream, logprob and SSE formatting, and the one-line request log.

No HTTP here: the route layer (`serve/app.py`) turns the results into responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from llmkit.engine.outputs import CompletionOutput, RequestOutput
from llmkit.engine.params import SamplingParams
from llmkit.engine.prefix_cache import PrefixStats
from llmkit.engine.sampling_defaults import resolve_sampling
from llmkit.errors import ModelNotFoundError
from llmkit.models.tool_parsers import ToolParser, pick_tool_parser
from llmkit.serve.errors import error_chunk, invalid
from llmkit.serve.metrics import ServerMetrics
from llmkit.serve.protocol import SamplingRequest, UsageInfo

if TYPE_CHECKING:
    from llmkit.safety import SafetyPolicy

logger = logging.getLogger("llmkit.serve")

_DONE = object()


@dataclass(frozen=True)
class ServedModel:
    """A model id this server answers to, and the LoRA adapter that serves it (None: the base model)."""

    id: str
    adapter: str | None = None


@dataclass
class Sampling:
    """A request's engine parameters; `copies` > 1 when greedy `n` > 1 is served by one decode, copied."""

    params: SamplingParams
    n: int
    copies: int = 1


class ServingEngine(Protocol):
    """What the routes need from an engine: `AsyncEngine` (our engine on a thread) or another backend's."""

    tokenizer: Any
    max_seq_len: int
    adapters: Mapping[str, Path]
    num_requests: int
    queue_depth: int
    batch_size: int
    prefix_stats: PrefixStats | None
    sampling_defaults: Mapping[str, float]  # the model's (`sampling_defaults.generation_defaults`)
    backend: str  # what runs the model, in words (shown in `/v1/models`)

    def check_request(self, prompt_token_ids: Sequence[int], params: SamplingParams, adapter: str | None = None) -> None: ...

    def generate(
        self, prompt_token_ids: Sequence[int], params: SamplingParams, request_id: str | None = None,
        adapter: str | None = None,
    ) -> AsyncIterator[RequestOutput]: ...

    async def load_adapter(self, name: str, path: Path) -> None: ...

    async def unload_adapter(self, name: str) -> None: ...

    def shutdown(self) -> None: ...


@dataclass
class ServingContext:
    """The served model's engine (and the safety policy its chats are checked by), shared by every route of one app.

    `tool_call_parser` names the format the model writes tool calls in (vLLM's names); left out, its chat
    template tells. Either way `tool_parser` is settled when the app starts: a bad name fails the start.
    """

    engine: ServingEngine
    model_id: str
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    safety: SafetyPolicy | None = None
    tool_call_parser: str | None = None
    _token_text: dict[int, str] = field(default_factory=dict)
    tool_parser: ToolParser | None = field(init=False)

    def __post_init__(self) -> None:
        self.tool_parser = pick_tool_parser(getattr(self.tokenizer, "chat_template", None), self.tool_call_parser)

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    @property
    def max_seq_len(self) -> int:
        return self.engine.max_seq_len

    def resolve(self, model: str | None) -> ServedModel:
        """The model a request names: the base model (also when none is named) or a loaded adapter; else 404."""
        if model is None or model == self.model_id:
            return ServedModel(self.model_id)
        if model in self.engine.adapters:
            return ServedModel(model, adapter=model)
        served = ", ".join([self.model_id, *self.engine.adapters])
        error = ModelNotFoundError(f"the model {model!r} does not exist here: this server serves {served}")
        error.param = "model"
        raise error

    def sampling(
        self, request: SamplingRequest, prompts: Sequence[Sequence[int]], max_tokens: int | None, logprobs: int | None
    ) -> Sampling:
        """OpenAI's parameters (temperature 0 = greedy) as engine parameters, checked against every prompt."""
        longest = max(len(p) for p in prompts)
        room = self.max_seq_len - longest
        if max_tokens is None:
            max_tokens = max(room, 1)  # OpenAI's default: as much as the context leaves
        elif longest < self.max_seq_len and max_tokens > room:
            raise invalid(
                f"this model's context holds {self.max_seq_len} tokens but the request needs {longest + max_tokens} "
                f"({longest} in the prompt, {max_tokens} to generate): lower max_tokens or shorten the prompt",
                "max_tokens",
            )
        if request.min_tokens > max_tokens:
            raise invalid(f"min_tokens ({request.min_tokens}) must be <= max_tokens ({max_tokens})", "min_tokens")
        beams = request.num_beams or (request.n if request.use_beam_search else 1)
        if beams > 1 and request.n > beams:
            raise invalid(f"n ({request.n}) must be <= num_beams ({beams})", "n")
        given = dict(
            temperature=request.temperature if beams == 1 else None,  # beam search ignores it, as vLLM's
            top_p=request.top_p,
            top_k=max(request.top_k, 0) if request.top_k is not None else None,
            min_p=request.min_p,
            repetition_penalty=request.repetition_penalty,
            num_beams=beams,
        )
        kwargs = resolve_sampling(given, self.engine.sampling_defaults)
        greedy = beams == 1 and not kwargs.get("do_sample", False)
        kwargs.update(
            max_new_tokens=max_tokens,
            min_new_tokens=request.min_tokens,
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            length_penalty=request.length_penalty,
            num_return_sequences=1 if greedy else request.n,
            stop=request.stop,
            include_stop_str_in_output=request.include_stop_str_in_output,
            stop_token_ids=request.stop_token_ids or [],
            logit_bias=request.logit_bias or {},
            ignore_eos=request.ignore_eos,
            seed=request.seed,
            logprobs=logprobs,
            skip_special_tokens=request.skip_special_tokens,
            response_format=request.response_format,
        )
        params = SamplingParams.create(**kwargs)
        for prompt in prompts:
            self.engine.check_request(prompt, params)
        return Sampling(params, request.n, request.n if greedy else 1)

    async def start(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, id_prefix: str, served: ServedModel,
        logged: Mapping[str, Any] | None = None,
    ) -> tuple[AsyncIterator[tuple[int, RequestOutput]], RequestLog]:
        """Admit `prompts` as one logged request (id `{id_prefix}-…`, with the request's `logged` fields);
        a refusal is logged "rejected" and raised."""
        log = RequestLog(f"{id_prefix}-{uuid.uuid4().hex}", served.id, logged)
        try:
            stream = await self.generate(prompts, params, log.request_id, served.adapter)
        except BaseException:
            log.done("rejected")
            raise
        return stream, log

    async def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, request_id: str, adapter: str | None = None
    ) -> AsyncIterator[tuple[int, RequestOutput]]:
        """Run every prompt as its own engine request (through `adapter`); yield (prompt index, output) as they arrive.

        The first output is awaited before this returns, so admission errors (a full queue, a prompt the
        engine refuses) surface as the caller's exception, before any response has started.
        Every output passes through `metrics`, so streamed and whole responses are timed alike.
        """
        started = time.perf_counter()
        streams = [
            self.engine.generate(
                prompt, params, request_id=f"{request_id}-{i}" if len(prompts) > 1 else request_id, adapter=adapter
            )
            for i, prompt in enumerate(prompts)
        ]
        merged = self.metrics.observe(merge_streams(streams), prompts, started)
        try:
            first = await anext(merged)
        except BaseException:
            await merged.aclose()
            raise
        return _prepend(first, merged)

    def token_text(self, token_id: int) -> str:
        """The text of one token (cached: logprobs ask for the same ids again and again)."""
        text = self._token_text.get(token_id)
        if text is None:
            text = self._token_text[token_id] = self.tokenizer.decode([token_id])
        return text


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


async def _prepend(first: object, rest: AsyncIterator) -> AsyncIterator:
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
