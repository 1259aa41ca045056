"""What the engine hands back: one `RequestOutput` per request, one `CompletionOutput` per sequence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "abort"]


@dataclass
class TokenLogprob:
    """The chosen token's log-probability under the model, with the `top` alternatives (id -> logprob)."""

    token_id: int
    logprob: float
    top: dict[int, float] = field(default_factory=dict)


@dataclass
class CompletionOutput:
    """One generated sequence so far. `delta` is the text made final since the previous output."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: FinishReason | None = None
    logprobs: list[TokenLogprob] | None = None
    cumulative_logprob: float | None = None
    delta: str = ""

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class RequestOutput:
    """The state of one request after an engine step; `finished` once every sequence has ended.

    `error` is set when this request failed on its own (its batch mates carry on): its outputs end there.
    """

    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    error: Exception | None = None
