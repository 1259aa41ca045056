"""What the server needs from an engine, apart from the servers that use it (as vLLM's `EngineClient`): our engine on
a thread (`engine/async_engine.AsyncEngine`) and vLLM's (`serve/vllm_engine.VllmEngine`) both fit it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from llmkit.engine.outputs import RequestOutput
from llmkit.engine.params import SamplingParams
from llmkit.engine.prefix_cache import PrefixStats


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
