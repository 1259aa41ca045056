"""The Llama-style Python API: `LLM.build(...)`, then `text_completion`, `chat_completion`, `generate`.

Modelled on Meta's llama3 reference (`Llama.build`, `text_completion`, `chat_completion`) so its users
feel at home; `generate` takes transformers' sampling names and returns the engine's outputs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypedDict, get_args

import torch

from llmkit.engine.backends import Backend, BackendChoice, Quantization, choose_backend
from llmkit.engine.engine import Engine
from llmkit.engine.outputs import CompletionOutput, RequestOutput
from llmkit.engine.params import SamplingParams
from llmkit.engine.sampling_defaults import generation_defaults, resolve_sampling
from llmkit.errors import InvalidRequestError, LLMKitError
from llmkit.hub import ProgressCallback, gguf_file, recommended_sampling, resolve
from llmkit.models import load, render_chat
from llmkit.models.loading import load_tokenizer

logger = logging.getLogger("llmkit")

Message = dict[str, str]
Dialog = list[Message]
"""What runs the model: transformers (any model, CPU or GPU) or llama.cpp (GGUF models, fastest on CPU)."""


class CompletionPrediction(TypedDict, total=False):
    generation: str
    tokens: list[str]
    logprobs: list[float]


class ChatPrediction(TypedDict, total=False):
    generation: Message
    tokens: list[str]
    logprobs: list[float]


class LLM:
    """A loaded model with its engine; every call batches its prompts through the engine."""

    def __init__(self, engine: Engine, backend: BackendChoice | None = None) -> None:
        self.engine = engine
        self.backend = backend or BackendChoice("torch", "an engine built by hand")
        self.model = engine.model
        self.tokenizer = engine.tokenizer

    @classmethod
    def build(
        cls,
        model: str = "default",
        max_seq_len: int = 2048,
        max_batch_size: int = 8,
        dtype: str = "auto",
        seed: int | None = None,
        *,
        device: str = "auto",
        adapter: str | Path | None = None,
        chat_template: str | Path | None = None,
        progress: ProgressCallback | None = None,
        backend: Backend = "auto",
        quantize: Quantization | None = None,
        compile: bool = False,
        generation_config: str = "auto",
    ) -> LLM:
        """Resolve and load `model` (a name, path or hub id) and start an engine for it on `backend`.

        `backend="llamacpp"` runs the model's GGUF file with llama.cpp on the CPU (`pip install llmkit[llamacpp]`);
        `auto` picks it where it can run this model, else torch (`pick_backend` says why).
        `quantize` ("int8" or "int4") runs the torch backend's linear layers on weight-only quantised weights;
        `compile` runs its forward through `torch.compile` (cached on disk: only the first start compiles).
        `generation_config` says where sampling defaults come from (`auto`: the model's own generation_config.json,
        `vllm`: neutral ones, or a folder; see `engine/sampling_defaults.py`).
        """
        choice = pick_backend(
            backend, model, dtype=dtype, device=device, adapter=adapter, quantize=quantize, compile=compile
        )
        if choice.name == "vllm":
            raise InvalidRequestError("the vllm backend runs behind a server: llmkit serve --backend vllm")
        logger.info("%s runs on the %s backend: %s", model, choice.name, choice.reason)
        if seed is not None:
            torch.manual_seed(seed)
        if choice.name == "llamacpp":
            _check_llamacpp_options(dtype, device, adapter, quantize, compile)
            from llmkit.engine.llamacpp_runner import LlamaCppRunner

            gguf = gguf_file(model)
            directory = resolve(model, progress=progress)
            engine = Engine(
                gguf, load_tokenizer(directory, chat_template), max_batch_size=max_batch_size,
                max_seq_len=max_seq_len, runner_class=LlamaCppRunner,
                sampling_defaults=generation_defaults(directory, generation_config, recommended_sampling(model)),
            )
            return cls(engine, choice)
        loaded = load(
            model, dtype=dtype, device=device, adapter=adapter, chat_template=chat_template, progress=progress
        )
        engine = Engine(
            loaded.model, loaded.tokenizer, max_batch_size=max_batch_size, max_seq_len=max_seq_len,
            runner_options={"quantize": quantize, "compile": compile},
            sampling_defaults=generation_defaults(loaded.path, generation_config, recommended_sampling(model)),
        )
        return cls(engine, choice)

    def text_completion(
        self,
        prompts: list[str],
        temperature: float | None = None,
        top_p: float | None = None,
        max_gen_len: int | None = None,
        logprobs: bool = False,
        echo: bool = False,
    ) -> list[CompletionPrediction]:
        """Continue each prompt; with `echo` the prompt (and its token logprobs) lead the result. Sampling values
        left out take the model's defaults (`sampling_defaults`); temperature 0 decodes greedily."""
        prompt_ids = [self.tokenizer.encode(p) for p in prompts]
        results = self.generate(prompt_ids, **self._llama_sampling(temperature, top_p, max_gen_len, logprobs))
        predictions = []
        for ids, result in zip(prompt_ids, results):
            out = result.outputs[0]
            token_ids, token_logprobs = out.token_ids, _chosen_logprobs(out)
            if echo:
                token_ids = ids + token_ids
                token_logprobs = self.prompt_logprobs(ids) + token_logprobs
            prediction: CompletionPrediction = {
                "generation": self.tokenizer.decode(ids, skip_special_tokens=True) + out.text if echo else out.text
            }
            if logprobs:
                prediction["tokens"] = [self.tokenizer.decode([t]) for t in token_ids]
                prediction["logprobs"] = token_logprobs
            predictions.append(prediction)
        return predictions

    def chat_completion(
        self,
        dialogs: list[Dialog],
        temperature: float | None = None,
        top_p: float | None = None,
        max_gen_len: int | None = None,
        logprobs: bool = False,
    ) -> list[ChatPrediction]:
        """Answer each dialog (system / user / assistant turns) as the assistant; sampling as `text_completion`."""
        prompt_ids = [render_chat(self.tokenizer, dialog) for dialog in dialogs]
        results = self.generate(prompt_ids, **self._llama_sampling(temperature, top_p, max_gen_len, logprobs))
        predictions = []
        for result in results:
            out = result.outputs[0]
            prediction: ChatPrediction = {"generation": {"role": "assistant", "content": out.text}}
            if logprobs:
                prediction["tokens"] = [self.tokenizer.decode([t]) for t in out.token_ids]
                prediction["logprobs"] = _chosen_logprobs(out)
            predictions.append(prediction)
        return predictions

    def generate(self, prompt_token_ids: Sequence[Sequence[int]], **sampling: Any) -> list[RequestOutput]:
        """Generate for token-id prompts with transformers' sampling names; one result per prompt."""
        params = SamplingParams.create(**sampling)
        return self.engine.generate(prompt_token_ids, params)

    def stream_chat(self, dialog: Dialog, **sampling: Any) -> Iterator[str]:
        """Yield the assistant's answer to `dialog` as text deltas while it is generated."""
        params = SamplingParams.create(**sampling)
        for output in self.engine.stream(render_chat(self.tokenizer, dialog), params):
            delta = output.outputs[0].delta
            if delta:
                yield delta

    def prompt_logprobs(self, token_ids: list[int], adapter: str | None = None, *, start: int = 0) -> list[float]:
        """Log-probability of each token from `start` on given the ones before it (the first token's is 0.0)."""
        return self.engine.runner.prompt_logprobs(token_ids, adapter, start=start)

    def _llama_sampling(
        self, temperature: float | None, top_p: float | None, max_gen_len: int | None, logprobs: bool
    ) -> dict[str, Any]:
        """The llama3 reference's arguments as engine parameters, over the model's defaults."""
        given = {
            "temperature": temperature, "top_p": top_p,
            "max_new_tokens": max_gen_len or self.engine.max_seq_len - 1, "logprobs": 0 if logprobs else None,
        }
        return resolve_sampling(given, self.engine.sampling_defaults)


def _chosen_logprobs(out: CompletionOutput) -> list[float]:
    return [lp.logprob for lp in out.logprobs] if out.logprobs else []


def pick_backend(
    requested: Backend,
    model: str,
    *,
    dtype: str = "auto",
    device: str = "auto",
    adapter: object = None,
    quantize: Quantization | None = None,
    compile: bool = False,
    serving: bool = False,
) -> BackendChoice:
    """The backend `requested` resolves to for `model` with these options: the one call every entry point makes.
    `auto` is first replaced by `$LLMKIT_BACKEND` when set (to keep every command of a machine on one backend)."""
    if requested == "auto" and os.environ.get("LLMKIT_BACKEND"):
        requested = os.environ["LLMKIT_BACKEND"]
    if requested not in get_args(Backend):
        raise InvalidRequestError(f"unknown backend {requested!r}: use {', '.join(get_args(Backend))}")
    needs_torch = next(
        (why for why, needed in (
            ("a LoRA adapter", adapter),
            (f"--quantize {quantize}", quantize),
            ("--compile", compile),
            (f"dtype {dtype}", dtype != "auto"),
            (f"device {device}", device not in ("auto", "cpu")),
            ("a CUDA GPU", device == "auto" and torch.cuda.is_available()),
        ) if needed),
        None,
    )
    return choose_backend(requested, gguf=_from_gguf(model), needs_torch=needs_torch, serving=serving)


def _from_gguf(model: str) -> bool:
    """True when `model` names a GGUF file (or a known model shipped as one)."""
    try:
        gguf_file(model)
    except LLMKitError:
        return False
    return True


def _check_llamacpp_options(
    dtype: str, device: str, adapter: str | Path | None, quantize: Quantization | None, compile: bool
) -> None:
    """Refuse what the llamacpp backend cannot do, before anything is loaded."""
    if adapter is not None:
        raise InvalidRequestError("LoRA adapters need the torch backend (--backend torch)")
    if quantize is not None:
        raise InvalidRequestError(
            f"--quantize {quantize} applies to the torch backend: the llamacpp backend runs the GGUF file's own "
            "quantisation"
        )
    if compile:
        raise InvalidRequestError("--compile compiles the torch backend's forward: llama.cpp runs its own kernels")
    if dtype != "auto":
        raise InvalidRequestError(
            f"dtype {dtype!r} does not apply to the llamacpp backend: it runs the GGUF file's own weights"
        )
    if device not in ("auto", "cpu"):
        raise InvalidRequestError(f"the llamacpp backend runs on the CPU, not {device!r}: use the torch backend")
    if importlib.util.find_spec("llama_cpp") is None:
        raise InvalidRequestError("the llamacpp backend needs llama-cpp-python: pip install 'llmkit[llamacpp]'")
