"""Prometheus metrics for `GET /metrics`: requests, tokens, queue and batch size, first-token and inter-token latency.

Each app owns its registry (not prometheus_client's global one), so several apps in one process,
as in the tests, count apart.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmkit.engine.outputs import RequestOutput
from llmkit.serve.engine_client import ServingEngine

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    """The server's counters, gauges and histograms, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "llmkit_requests", "HTTP requests answered in full, by route and status class.", ["route", "status"],
            registry=self.registry,
        )
        self.aborted = Counter(
            "llmkit_requests_aborted", "HTTP requests whose client went away before the response ended, by route.",
            ["route"], registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "llmkit_prompt_tokens", "Prompt tokens the engine processed (prompts it admitted).", registry=self.registry
        )
        self.generation_tokens = Counter(
            "llmkit_generation_tokens", "Tokens the engine generated.", registry=self.registry
        )
        self.time_to_first_token = Histogram(
            "llmkit_time_to_first_token_seconds", "From submitting a prompt to its first generated token.",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.inter_token_latency = Histogram(
            "llmkit_inter_token_latency_seconds", "Between consecutive generated tokens of one prompt.",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )

    def watch(self, engine: ServingEngine) -> None:
        """Report `engine`'s queue depth and batch size, read at scrape time."""
        waiting = Gauge("llmkit_queue_depth", "Requests waiting for a batch slot.", registry=self.registry)
        waiting.set_function(lambda: engine.queue_depth)
        running = Gauge("llmkit_running_batch_size", "Sequences (rows) in the batch.", registry=self.registry)
        running.set_function(lambda: engine.batch_size)
        if engine.prefix_stats is not None:
            stats = engine.prefix_stats
            for name, doc, read in (
                ("queried_tokens", "Prompt tokens looked up in the prefix cache.", lambda: stats.queried_tokens),
                ("hit_tokens", "Prompt tokens whose keys and values came from the prefix cache.", lambda: stats.hit_tokens),
                ("hit_rate", "Share of prompt tokens found in the prefix cache.", lambda: stats.hit_rate),
            ):
                Gauge(f"llmkit_prefix_cache_{name}", doc, registry=self.registry).set_function(read)

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)

    async def observe(
        self, stream: AsyncIterator[tuple[int, RequestOutput]], prompts: Sequence[Sequence[int]], started: float
    ) -> AsyncIterator[tuple[int, RequestOutput]]:
        """Pass a merged engine stream through, timing its tokens; count its tokens when it ends (or is closed).

        A prompt counts once the engine has answered for it: a refused one (a 429, a 400) processed nothing.
        """
        last_token_at: dict[int, float] = {}
        steps: dict[int, int] = {}
        last: dict[int, RequestOutput] = {}
        try:
            async for index, output in stream:
                now = time.perf_counter()
                # Sequences of one prompt (n > 1, beams) advance together: a step is the longest one's growth.
                length = max((len(o.token_ids) for o in output.outputs), default=0)
                new = length - steps.get(index, 0)
                if new > 0:
                    if index not in last_token_at:
                        self.time_to_first_token.observe(now - started)
                    else:
                        gap = (now - last_token_at[index]) / new
                        for _ in range(new):
                            self.inter_token_latency.observe(gap)
                    last_token_at[index], steps[index] = now, length
                last[index] = output
                yield index, output
        finally:
            await stream.aclose()
            self.prompt_tokens.inc(sum(len(prompts[i]) for i in last))
            self.generation_tokens.inc(sum(len(o.token_ids) for out in last.values() for o in out.outputs))


class RequestCounter:
    """ASGI middleware: count every HTTP response by its route template (not the raw path) and status class, or as
    aborted when the client went away before the response ended (a closed stream, an abandoned request)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status, completed, aborted = 500, False, False

        async def receive_and_note() -> Message:
            nonlocal aborted
            message = await receive()
            aborted = aborted or (message["type"] == "http.disconnect" and not completed)
            return message

        async def send_and_note(message: Message) -> None:
            nonlocal status, completed
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                completed = True
            await send(message)

        try:
            await self.app(scope, receive_and_note, send_and_note)
        finally:
            route = route_template(scope)
            if aborted:
                self.metrics.aborted.labels(route=route).inc()
            else:
                self.metrics.requests.labels(route=route, status=f"{status // 100}xx").inc()


def route_template(scope: Scope) -> str:
    """The matched route as written (`/v1/models/{model_id}`), so labels stay few; `unmatched` for a 404 path.

    A route of an included router may know only its own path (`/models/{model_id}`): the router's
    prefix is what the request path has in front of the route's part.
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if template is None:
        return "unmatched"
    try:
        concrete = template.format(**scope.get("path_params", {}))
    except (KeyError, IndexError):
        return template
    path = scope["path"]
    return (path[: len(path) - len(concrete)] if path.endswith(concrete) else "") + template
