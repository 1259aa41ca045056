"""The llama.cpp backend: the engine's rows run on a GGUF file through llama-cpp-python's C API.

Each engine row is a llama.cpp sequence with a KV stream of its own, so a row's attention never spans
its batch mates' cells (in llama.cpp's unified cache, a row's logits shift with where its cells sit).
With the default model a greedy answer is then the same alone or in any batch; for some quantisation
types (e.g. Gemma 3's Q4_K_M) llama.cpp's matmul kernels still round differently by batch size.
Copying a row (forks of n>1, beam reordering, compaction) copies its stream; one spare sequence
breaks copy cycles and scores prompts. Sampling, grammars and stop strings stay in the engine: this
runner only turns token ids into next-token logits. It is CPU-only (GPUs go through the torch
backend) and serves no LoRA adapters.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import llama_cpp.llama_cpp as llama
from llmkit.engine.model_runner import Adapters
from llmkit.errors import ConversionError, InvalidRequestError, ModelNotFoundError

N_BATCH = 512  # tokens per llama_decode call: long prompts go in chunks of this many

# llama-cpp-python prints llama.cpp's log to stderr unless its logger is told otherwise; it files
# llama.cpp's warnings under ERROR (its level table predates ggml's DEBUG level), so only CRITICAL is quiet.
_log = logging.getLogger("llama-cpp-python")
if _log.level == logging.NOTSET:
    _log.setLevel(logging.CRITICAL)


class LlamaCppRunner:
    """A `Runner` over a GGUF file: rows 0..num_slots-1 are llama.cpp sequences, logits come back as torch."""

    def __init__(self, model: str | Path, *, num_slots: int, max_len: int) -> None:
        path = Path(model)
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {path}")
        if num_slots + 1 > llama.llama_max_parallel_sequences():
            raise InvalidRequestError(
                f"llama.cpp runs at most {llama.llama_max_parallel_sequences() - 1} rows: lower max_batch_size"
            )
        self.device = torch.device("cpu")
        self._spare = num_slots  # the sequence after the rows
        # What llama.cpp allocated, freed in reverse order by `close` or when the runner is collected.
        self._owned: list[tuple[Callable[[Any], None], Any]] = []
        self._finalizer = weakref.finalize(self, _free, self._owned)

        llama.llama_backend_init()
        model_params = llama.llama_model_default_params()
        model_params.n_gpu_layers = 0  # the engine works on CPU logits; GPUs are the torch backend's job
        self._model = llama.llama_model_load_from_file(str(path).encode(), model_params)
        if self._model is None:
            raise ConversionError(f"llama.cpp could not load {path}: is it a GGUF model file?")
        self._owned.append((llama.llama_model_free, self._model))
        vocab = llama.llama_model_get_vocab(self._model)
        self.max_len = min(max_len, llama.llama_model_n_ctx_train(self._model) or max_len)
        self.vocab_size = llama.llama_vocab_n_tokens(vocab)
        special = (llama.llama_vocab_eos(vocab), llama.llama_vocab_eot(vocab))
        self.eos_token_ids = list(dict.fromkeys(t for t in special if t != llama.LLAMA_TOKEN_NULL))
        self.prefix_cache = None  # llama.cpp keeps each sequence's own cache
        self.backend_name = "llamacpp"

        params = llama.llama_context_default_params()
        params.n_seq_max = num_slots + 1
        params.n_ctx = params.n_seq_max * self.max_len  # split evenly: max_len cells per sequence
        params.kv_unified = False
        params.swa_full = True  # sliding-window layers keep every position, so any prefix can be copied
        params.n_batch = params.n_ubatch = max(N_BATCH, num_slots)
        params.n_threads = params.n_threads_batch = _cpu_count()
        self._ctx = llama.llama_init_from_model(self._model, params)
        if self._ctx is None:
            raise InvalidRequestError(
                f"llama.cpp could not make room for {params.n_ctx} cached tokens: lower max_batch_size or max_seq_len"
            )
        self._owned.append((llama.llama_free, self._ctx))
        self._memory = llama.llama_get_memory(self._ctx)
        self._n_batch = params.n_batch
        self._batch = llama.llama_batch_init(self._n_batch, 0, 1)
        self._owned.append((llama.llama_batch_free, self._batch))

    def prefill(self, prompts: list[list[int]], rows: list[int], adapters: Adapters = None) -> torch.Tensor:
        """Write each prompt into its row, several prompts per llama_decode; returns next-token logits [N, V]."""
        _refuse_adapters(adapters)
        for row in rows:
            self._clear(row)
        tokens = [
            (token, pos, row, pos == len(prompt) - 1, i)
            for i, (prompt, row) in enumerate(zip(prompts, rows))
            for pos, token in enumerate(prompt)
        ]
        logits = torch.empty((len(prompts), self.vocab_size))
        for start in range(0, len(tokens), self._n_batch):
            chunk = tokens[start : start + self._n_batch]
            self._decode([t[:4] for t in chunk])
            for j, (*_, last, i) in enumerate(chunk):
                if last:
                    logits[i] = self._logits(j)
        return logits

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, adapters: Adapters = None) -> torch.Tensor:
        """One step for rows 0..B-1: `tokens[b]` sits at `positions[b]` of sequence b; returns logits [B, V]."""
        _refuse_adapters(adapters)
        batch = list(zip(tokens.tolist(), positions.tolist(), range(len(tokens)), [True] * len(tokens)))
        for _, pos, row, _ in batch:
            self._remove(row, pos)  # llama.cpp wants each sequence's positions consecutive
        self._decode(batch)
        return torch.stack([self._logits(b) for b in range(len(batch))])

    def copy_rows(self, src: list[int], dst: list[int], length: int) -> None:
        """Make rows `dst` hold the first `length` positions of rows `src`, all copies as if at once.

        llama.cpp copies whole streams, in the order asked: a row is written only once nothing still
        needs to read it, and a cycle (beams swapping rows) goes through the spare sequence.
        """
        pending = {target: source for source, target in zip(src, dst)}
        while pending:
            needed = {source for target, source in pending.items() if source != target}  # still to be read
            ready = next((target for target in pending if target not in needed), None)
            if ready is None:  # only cycles are left: park one row in the spare and read it from there
                parked = next(iter(pending))
                llama.llama_memory_seq_cp(self._memory, parked, self._spare, -1, -1)
                pending = {target: self._spare if source == parked else source for target, source in pending.items()}
                continue
            source = pending.pop(ready)
            if source != ready:
                llama.llama_memory_seq_cp(self._memory, source, ready, -1, -1)
            self._remove(ready, length)

    def prompt_logprobs(self, token_ids: list[int], adapter: str | None = None, *, start: int = 0) -> list[float]:
        """Log-probability of each prompt token from `start` on given the ones before it (the first token's is 0.0),
        in the spare sequence."""
        _refuse_adapters([adapter])
        inputs = token_ids[:-1]  # the last token predicts nothing that is scored
        scores = [0.0]
        self._clear(self._spare)
        for offset in range(0, len(inputs), self._n_batch):
            chunk = inputs[offset : offset + self._n_batch]
            self._decode([(token, offset + j, self._spare, True) for j, token in enumerate(chunk)])
            for j in range(len(chunk)):
                logits = self._logits(j)
                scores.append(float(logits[token_ids[offset + j + 1]] - torch.logsumexp(logits, 0)))
        return scores[start:]

    @property
    def adapters(self) -> dict[str, Path]:
        """No LoRA adapters: llama.cpp rows all run the GGUF's own weights."""
        return {}

    def load_adapter(self, name: str, path: Path) -> None:
        """Refused: serving LoRA adapters by name is a torch-backend feature."""
        _refuse_adapters([name])

    def unload_adapter(self, name: str) -> None:
        """Refused like the torch backend refuses an adapter it never loaded."""
        raise ModelNotFoundError(f"no adapter named {name!r} is loaded")

    def close(self) -> None:
        """Free the batch, context and model now rather than whenever the runner is collected."""
        self._finalizer()

    def _decode(self, tokens: Sequence[tuple[int, int, int, bool]]) -> None:
        """One llama_decode over (token, position, sequence, wants logits) entries, at most n_batch of them."""
        batch = self._batch
        for i, (token, pos, seq, wants_logits) in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = wants_logits
        batch.n_tokens = len(tokens)
        status = llama.llama_decode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")

    def _logits(self, i: int) -> torch.Tensor:
        """A view of the logits of batch entry `i` of the last decode (valid until the next one)."""
        pointer = llama.llama_get_logits_ith(self._ctx, i)
        return torch.from_numpy(np.ctypeslib.as_array(pointer, shape=(self.vocab_size,)))

    def _remove(self, seq: int, start: int) -> None:
        """Drop the cache entries of sequence `seq` from position `start` on."""
        if not llama.llama_memory_seq_rm(self._memory, seq, start, -1):
            raise RuntimeError(f"llama.cpp could not trim sequence {seq} at position {start}")

    def _clear(self, seq: int) -> None:
        """Empty sequence `seq`."""
        self._remove(seq, -1)


def _free(owned: list[tuple[Callable[[Any], None], Any]]) -> None:
    """Release llama.cpp objects, newest first (a context before its model)."""
    while owned:
        release, handle = owned.pop()
        release(handle)


def _cpu_count() -> int:
    """The cores this process may run on (all of them where the OS cannot say)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _refuse_adapters(adapters: Adapters) -> None:
    """LoRA adapters need the torch backend; a batch naming one is refused."""
    if adapters is not None and any(adapters):
        raise InvalidRequestError("LoRA adapters need the torch backend (--backend torch)")
