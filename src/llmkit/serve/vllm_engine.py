"""A `ServingEngine` on vLLM's async engine (`AsyncLLM`, vLLM's v1 engine), for serving on GPUs at scale.

vLLM is imported only when a `VllmEngine` starts (it needs a GPU and CUDA wheels), so this module imports
anywhere. Requests keep llmkit's semantics: our `SamplingParams` become vLLM's (`vllm_sampling_kwargs`),
what vLLM cannot do (beam search, no_repeat_ngram_size) is refused with a 400 before it reaches vLLM,
and vLLM's outputs become ours (`to_request_output`). Chat templating stays on our side: the routes hand
this engine token ids, rendered with the Hugging Face tokenizer exactly as with the torch backend.

vLLM streams in DELTA mode (each output carries only what is new) and streams the `n` sequences of one
request as separate outputs; `to_request_output` accumulates them into our outputs, which always hold
every sequence in full, with `delta` the text new since the previous output.

Written against vLLM 0.33.0 (`vllm/v1/engine/async_llm.py`, `vllm/sampling_params.py`, `vllm/outputs.py`,
`vllm/logprobs.py`, `vllm/lora/request.py`, `vllm/inputs/engine.py`, `vllm/exceptions.py`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.engine.adapters import check_adapter_name
from llmkit.engine.async_engine import QueueFullError
from llmkit.engine.checks import check_params, check_prompt
from llmkit.engine.outputs import (
    CompletionOutput,
    FinishReason,
    RequestOutput,
    TokenLogprob,
)
from llmkit.engine.params import ResponseFormat, SamplingParams
from llmkit.engine.sampling_defaults import NEUTRAL, generation_defaults
from llmkit.errors import InvalidRequestError, LLMKitError, ModelNotFoundError
from llmkit.serve.errors import invalid

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase
    from vllm.v1.engine.async_llm import AsyncLLM

OUTPUT_KIND = "DELTA"  # the `vllm.sampling_params.RequestOutputKind` that `to_request_output` expects
MAX_TEMPERATURE = 2.0  # vLLM's SamplingParams refuses hotter sampling
FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length", "abort": "abort"}


class VllmNotInstalledError(LLMKitError):
    """The vLLM backend was asked for where vLLM is not installed."""


class VllmError(LLMKitError):
    """vLLM failed a request on its own side (its finish reason "error": retryable, e.g. a lost KV-cache transfer)."""

    status_code = 503


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter known to vLLM: its directory and its vLLM id (never reused, so vLLM's caches never mix two)."""

    id: int
    path: Path


def require_vllm() -> None:
    """Raise `VllmNotInstalledError` unless vLLM can be imported."""
    if importlib.util.find_spec("vllm") is None:
        raise VllmNotInstalledError(
            "the vLLM backend needs vLLM, which is not installed: install vllm on a machine with a GPU "
            "(pip install vllm), or serve with the torch backend"
        )


def vllm_engine_kwargs(
    model: str | Path,
    *,
    max_seq_len: int | None,
    max_batch_size: int | None,
    dtype: str,
    tensor_parallel_size: int,
    enable_lora: bool,
    max_loras: int,
    max_lora_rank: int,
) -> dict[str, Any]:
    """vLLM `AsyncEngineArgs` keyword arguments; None leaves a limit at vLLM's default (the model's context, ...)."""
    kwargs: dict[str, Any] = {"model": str(model), "dtype": dtype, "tensor_parallel_size": tensor_parallel_size}
    if max_seq_len is not None:
        kwargs["max_model_len"] = max_seq_len
    if max_batch_size is not None:
        kwargs["max_num_seqs"] = max_batch_size
    if enable_lora:
        kwargs.update(enable_lora=True, max_loras=max_loras, max_lora_rank=max_lora_rank)
    return kwargs


def refuse_unsupported(params: SamplingParams) -> None:
    """Raise `InvalidRequestError` naming the parameter for what vLLM's engine cannot do."""
    if params.beam_search:
        raise invalid(
            f"the vLLM backend does not support beam search (num_beams={params.num_beams}): "
            "use num_beams=1, or serve with the torch backend",
            "num_beams",
        )
    if params.no_repeat_ngram_size:
        raise invalid(
            f"the vLLM backend does not support no_repeat_ngram_size ({params.no_repeat_ngram_size}): "
            "leave it at 0, or serve with the torch backend",
            "no_repeat_ngram_size",
        )
    if params.sampling and params.temperature > MAX_TEMPERATURE:
        raise invalid(
            f"the vLLM backend samples at temperatures up to {MAX_TEMPERATURE} (got {params.temperature})",
            "temperature",
        )


def structured_outputs_kwargs(response_format: ResponseFormat) -> dict[str, Any]:
    """vLLM `StructuredOutputsParams` keywords for a constraining `response_format`, as vLLM's server maps it."""
    if response_format.type == "json_object":
        return {"json_object": True}
    return {"json": response_format.json_schema["schema"]}


def vllm_sampling_kwargs(params: SamplingParams) -> dict[str, Any]:
    """vLLM `SamplingParams` keyword arguments for `params`, as plain values (enums and nested params by name).

    Greedy decoding is temperature 0 in vLLM; top_k 0 disables it in both. `output_kind` names the
    `RequestOutputKind` and `structured_outputs` holds `StructuredOutputsParams` keywords.
    """
    refuse_unsupported(params)
    kwargs: dict[str, Any] = {
        "n": params.num_return_sequences,
        "temperature": params.temperature if params.sampling else 0.0,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "min_p": params.min_p,
        "repetition_penalty": params.repetition_penalty,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "seed": params.seed,
        "stop": list(params.stop),
        "include_stop_str_in_output": params.include_stop_str_in_output,
        "stop_token_ids": list(params.stop_token_ids),
        "logit_bias": dict(params.logit_bias) or None,
        "ignore_eos": params.ignore_eos,
        "max_tokens": params.max_new_tokens,
        "min_tokens": params.min_new_tokens,
        "logprobs": params.logprobs,
        "skip_special_tokens": params.skip_special_tokens,
        "output_kind": OUTPUT_KIND,
    }
    if params.constrained:
        kwargs["structured_outputs"] = structured_outputs_kwargs(params.response_format)
    return kwargs


def to_vllm_sampling_params(params: SamplingParams) -> Any:
    """vLLM's `SamplingParams` object for `params` (imports vLLM)."""
    from vllm import SamplingParams as VllmSamplingParams
    from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

    kwargs = vllm_sampling_kwargs(params)
    kwargs["output_kind"] = RequestOutputKind[kwargs["output_kind"]]
    if "structured_outputs" in kwargs:
        kwargs["structured_outputs"] = StructuredOutputsParams(**kwargs["structured_outputs"])
    return VllmSamplingParams(**kwargs)


def lora_request(name: str, adapter: Adapter) -> Any:
    """vLLM's `LoRARequest` for `adapter` (imports vLLM)."""
    from vllm.lora.request import LoRARequest

    return LoRARequest(lora_name=name, lora_int_id=adapter.id, lora_path=str(adapter.path))


def finish_reason(reason: str | None) -> FinishReason | None:
    """Our finish reason for vLLM's; its "error" (a failure on vLLM's side) raises `VllmError`."""
    if reason is None:
        return None
    if reason not in FINISH_REASONS:
        raise VllmError(f"vLLM could not finish the request (finish reason {reason!r}): retry it")
    return FINISH_REASONS[reason]


def to_token_logprobs(
    token_ids: Sequence[int], positions: Sequence[Mapping[int, Any]], top_logprobs: int
) -> list[TokenLogprob]:
    """Our logprobs for vLLM's: one dict per position, token id -> `Logprob(logprob, rank, decoded_token)`.

    vLLM puts the chosen token (with its true rank) and the `top_logprobs` best (ranks 1..top_logprobs)
    in one dict, so the alternatives are the entries ranked within `top_logprobs`.
    """
    return [
        TokenLogprob(
            token_id=token_id,
            logprob=position[token_id].logprob,
            top={t: lp.logprob for t, lp in position.items() if lp.rank is not None and lp.rank <= top_logprobs},
        )
        for token_id, position in zip(token_ids, positions)
    ]


def grow(before: CompletionOutput, completion: Any, top_logprobs: int) -> CompletionOutput:
    """Sequence `before` extended by one DELTA-mode vLLM `CompletionOutput` (its new text, tokens and logprobs)."""
    new_ids = list(completion.token_ids)
    logprobs = None
    if completion.logprobs is not None:
        logprobs = [*(before.logprobs or []), *to_token_logprobs(new_ids, completion.logprobs, top_logprobs)]
    return CompletionOutput(
        index=completion.index,
        text=before.text + completion.text,
        token_ids=[*before.token_ids, *new_ids],
        finish_reason=finish_reason(completion.finish_reason),
        logprobs=logprobs,
        cumulative_logprob=completion.cumulative_logprob,
        delta=completion.text,
    )


def to_request_output(
    vllm_output: Any, previous: Mapping[int, CompletionOutput], top_logprobs: int = 0
) -> RequestOutput:
    """Our `RequestOutput` for one DELTA-mode vLLM `RequestOutput`, given our previous output's sequences by index.

    vLLM sends each of a request's `n` sequences on its own, so sequences absent from `vllm_output`
    are carried over from `previous` with no new text: the routes read usage and the final choices
    from the latest output alone, as our own engine's outputs allow.
    """
    outputs = {index: replace(out, delta="") for index, out in previous.items()}
    for completion in vllm_output.outputs:
        before = previous.get(completion.index, CompletionOutput(index=completion.index, text="", token_ids=[]))
        outputs[completion.index] = grow(before, completion, top_logprobs)
    return RequestOutput(
        request_id=vllm_output.request_id,
        prompt_token_ids=list(vllm_output.prompt_token_ids),
        outputs=[outputs[index] for index in sorted(outputs)],
        finished=vllm_output.finished,
    )


def is_vllm_client_error(error: BaseException) -> bool:
    """True for vLLM's errors that the request caused (`VLLMClientError`: bad parameters, a prompt it refuses)."""
    exceptions = sys.modules.get("vllm.exceptions")  # loaded by whatever raised a vLLM error
    return exceptions is not None and isinstance(error, exceptions.VLLMClientError)


@contextmanager
def vllm_refusals() -> Iterator[None]:
    """Re-raise vLLM's client errors as `InvalidRequestError`, so the server answers 400 rather than 500."""
    try:
        yield
    except Exception as error:
        if is_vllm_client_error(error):
            raise InvalidRequestError(f"vLLM refused the request: {error}") from error
        raise


class VllmEngine:
    """`ServingEngine` on a vLLM `AsyncLLM`: admission checks, LoRA adapters and load counts on our side.

    `num_requests`, `queue_depth` and `batch_size` are counted here (vLLM's scheduler statistics are
    no public API): a request waits from admission until its first output, then counts its `n`
    sequences as running until it ends, so preempted and partly finished requests count as running.
    """

    def __init__(
        self, engine: AsyncLLM, tokenizer: PreTrainedTokenizerBase, *, max_queue: int = 256, enable_lora: bool = False
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.max_queue = max_queue
        self.enable_lora = enable_lora
        self.max_seq_len: int = engine.model_config.max_model_len
        self.vocab_size: int = engine.model_config.get_vocab_size()
        self.num_requests = 0
        self.queue_depth = 0
        self.batch_size = 0
        self.prefix_stats = None  # vLLM keeps its own prefix-cache statistics
        self.backend = "vllm"
        self.sampling_defaults: dict[str, float] = dict(NEUTRAL)
        self._adapters: dict[str, Adapter] = {}
        self._adapter_ids = itertools.count(1)  # vLLM refuses id 0
        self._adapter_users: Counter[str | None] = Counter()
        self._adapter_lock = asyncio.Lock()
        self._request_ids = itertools.count()

    @classmethod
    def start(
        cls,
        model: str | Path,
        *,
        max_seq_len: int | None = None,
        max_batch_size: int | None = None,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        enable_lora: bool = False,
        max_loras: int = 4,
        max_lora_rank: int = 64,
        max_queue: int = 256,
        adapters: Mapping[str, Path] | None = None,
        generation_config: str = "auto",
    ) -> VllmEngine:
        """Start vLLM on the model directory `model` (LoRA support if `enable_lora` or `adapters` are given).

        `adapters` (name -> PEFT directory) are served from the start; vLLM loads each on its first request.
        Requests that leave sampling values out get those of `generation_config` (as `LLM.build`'s).
        """
        require_vllm()
        from transformers import AutoTokenizer
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        enable_lora = enable_lora or bool(adapters)
        args = AsyncEngineArgs(
            **vllm_engine_kwargs(
                model, max_seq_len=max_seq_len, max_batch_size=max_batch_size, dtype=dtype,
                tensor_parallel_size=tensor_parallel_size, enable_lora=enable_lora, max_loras=max_loras,
                max_lora_rank=max_lora_rank,
            )
        )
        engine = cls(
            AsyncLLM.from_engine_args(args), AutoTokenizer.from_pretrained(model),
            max_queue=max_queue, enable_lora=enable_lora,
        )
        engine.sampling_defaults = generation_defaults(Path(model), generation_config)
        try:
            for name, path in (adapters or {}).items():
                engine.register_adapter(name, path)
        except LLMKitError:
            engine.shutdown()
            raise
        return engine

    @property
    def adapters(self) -> dict[str, Path]:
        """The LoRA adapters requests may name: name -> directory."""
        return {name: adapter.path for name, adapter in self._adapters.items()}

    def check_request(self, prompt_token_ids: Sequence[int], params: SamplingParams, adapter: str | None = None) -> None:
        """Raise our errors (so the server answers 4xx) for a request vLLM would refuse or could not run."""
        self._checked_prompt(prompt_token_ids, params, adapter)

    def _checked_prompt(
        self, prompt_token_ids: Sequence[int], params: SamplingParams, adapter: str | None
    ) -> list[int]:
        """The prompt as a list of ints, if it, `params` and `adapter` can run on this engine."""
        if adapter is not None and adapter not in self._adapters:
            error = ModelNotFoundError(f"no adapter named {adapter!r} is loaded")
            error.param = "model"
            raise error
        refuse_unsupported(params)
        prompt = check_prompt(prompt_token_ids, self.max_seq_len, self.vocab_size)
        check_params(params, len(prompt), self.max_seq_len, self.vocab_size)
        return prompt

    async def generate(
        self,
        prompt_token_ids: Sequence[int],
        params: SamplingParams,
        request_id: str | None = None,
        adapter: str | None = None,
    ) -> AsyncIterator[RequestOutput]:
        """Yield the request's outputs as vLLM streams them (through LoRA `adapter` if given); leaving early aborts it.

        Refusals, ours and vLLM's, raise `InvalidRequestError` before the first output.
        """
        prompt = self._checked_prompt(prompt_token_ids, params, adapter)
        if self.num_requests >= self.max_queue:
            raise QueueFullError(f"the server is busy ({self.max_queue} requests in flight): retry later")
        request_id = request_id or f"vllm-{next(self._request_ids)}"
        with vllm_refusals():
            sampling = to_vllm_sampling_params(params)
        lora = lora_request(adapter, self._adapters[adapter]) if adapter is not None else None
        tokens_input = {"type": "token", "prompt_token_ids": prompt}  # vLLM's `vllm.inputs.TokensInput`
        stream = self.engine.generate(tokens_input, sampling, request_id, lora_request=lora)
        rows, running = params.num_return_sequences, False
        self.num_requests += 1
        self.queue_depth += 1
        self._adapter_users[adapter] += 1
        latest: dict[int, CompletionOutput] = {}
        try:
            with vllm_refusals():
                async for vllm_output in stream:
                    if not running:
                        self.queue_depth -= 1
                        self.batch_size += rows
                        running = True
                    output = to_request_output(vllm_output, latest, params.logprobs or 0)
                    latest = {out.index: out for out in output.outputs}
                    yield output
        except (GeneratorExit, asyncio.CancelledError):
            await self.engine.abort(request_id)  # the caller left early, e.g. a client that went away
            raise
        finally:
            await stream.aclose()
            self.num_requests -= 1
            if running:
                self.batch_size -= rows
            else:
                self.queue_depth -= 1
            self._adapter_users[adapter] -= 1

    def register_adapter(self, name: str, path: Path) -> Adapter:
        """Make the PEFT LoRA adapter at `path` known as `name`, with a fresh vLLM id (vLLM loads it on first use)."""
        check_adapter_name(name)
        if not self.enable_lora:
            raise InvalidRequestError(
                "this vLLM engine was started without LoRA support: start it with enable_lora=True "
                "(llmkit serve --backend vllm --enable-lora)"
            )
        if name in self._adapters:
            raise InvalidRequestError(f"an adapter named {name!r} is already loaded")
        if not (Path(path) / "adapter_config.json").is_file():
            raise ModelNotFoundError(f"{path} is not a LoRA adapter directory (no adapter_config.json)")
        self._adapters[name] = Adapter(next(self._adapter_ids), Path(path))
        return self._adapters[name]

    async def load_adapter(self, name: str, path: Path) -> None:
        """Load the LoRA adapter at `path` into vLLM now, as `name` (a directory vLLM cannot load is refused)."""
        async with self._adapter_lock:
            adapter = self.register_adapter(name, path)
            try:
                await self.engine.add_lora(lora_request(name, adapter))
            except Exception as error:
                del self._adapters[name]
                raise InvalidRequestError(f"vLLM could not load the adapter at {path}: {error}") from error

    async def unload_adapter(self, name: str) -> None:
        """Drop adapter `name` from vLLM; refused while a request still uses it."""
        async with self._adapter_lock:
            if name not in self._adapters:
                raise ModelNotFoundError(f"no adapter named {name!r} is loaded")
            if self._adapter_users[name]:
                raise InvalidRequestError(
                    f"adapter {name!r} is in use by {self._adapter_users[name]} request(s): retry when they finish"
                )
            adapter = self._adapters.pop(name)
            await self.engine.remove_lora(adapter.id)

    def shutdown(self) -> None:
        """Stop vLLM's engine processes (requests still running are abandoned)."""
        self.engine.shutdown()
