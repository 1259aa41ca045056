"""What every route shares: the served model and its engine, which model a request names, its engine parameters
fitted to the context, and running its prompts as engine requests (timed by the metrics).

No HTTP here: the route layer (`serve/app.py`) turns the results into responses; streaming helpers are in
`serve/streaming.py`, the engine interface in `serve/engine_client.py`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmkit.engine.outputs import RequestOutput
from llmkit.engine.params import SamplingParams
from llmkit.errors import ModelNotFoundError
from llmkit.models.tool_parsers import ToolParser, pick_tool_parser
from llmkit.serve.engine_client import ServingEngine
from llmkit.serve.errors import invalid
from llmkit.serve.metrics import ServerMetrics
from llmkit.serve.protocol import SamplingRequest
from llmkit.serve.streaming import RequestLog, merge_streams, prepend

if TYPE_CHECKING:
    from llmkit.safety import SafetyPolicy

@dataclass(frozen=True)
class ServedModel:
    """A model id this server answers to, and the LoRA adapter that serves it (None: the base model)."""

    id: str
    adapter: str | None = None


@dataclass
class SamplingPlan:
    """How a request's `n` choices per prompt are produced: engine `params`, and `copies` > 1 when a greedy `n` > 1
    is served by one decode, copied. The choice arithmetic lives here, so routes never index by hand."""

    params: SamplingParams
    n: int
    copies: int = 1

    def choice_indices(self, prompt: int, output: int) -> range:
        """The response's choice indices that engine output `output` of prompt `prompt` fills (its copies too)."""
        first = prompt * self.n + output
        return range(first, first + self.copies)

    def outputs(self, prompts: int = 1) -> int:
        """Engine outputs the request's `prompts` prompts produce (each ends once)."""
        return prompts * self.n // self.copies


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
    ) -> SamplingPlan:
        """The request's engine parameters (`SamplingRequest.to_sampling_params`), with max_tokens fitted to the
        context and checked against every prompt."""
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
        params = request.to_sampling_params(max_tokens, logprobs, self.engine.sampling_defaults)
        for prompt in prompts:
            self.engine.check_request(prompt, params)
        greedy = not params.beam_search and not params.sampling
        return SamplingPlan(params, request.n, request.n if greedy else 1)

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
        return prepend(first, merged)

    def token_text(self, token_id: int) -> str:
        """The text of one token (cached: logprobs ask for the same ids again and again)."""
        text = self._token_text.get(token_id)
        if text is None:
            text = self._token_text[token_id] = self.tokenizer.decode([token_id])
        return text
