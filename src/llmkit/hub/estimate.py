"""Memory a model needs: weights (parameters × bytes per parameter) plus the KV cache for a context.

Activations and framework overhead are not counted; add ~10-20% for them in practice.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from llmkit.errors import InvalidRequestError
from llmkit.hub.architecture import ModelShape, model_shape
from llmkit.hub.registry import resolve

BYTES_PER_PARAMETER = {"bf16": 2.0, "fp16": 2.0, "fp32": 4.0, "int8": 1.0, "int4": 0.5}
_DTYPE_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}

# Typical LLaMA-family shapes by size (parameters, layers, KV heads, head dim), taken from public configs.
_TYPICAL_SHAPES = [
    ("SmolLM2-135M", 135e6, 30, 3, 64),
    ("SmolLM2-360M", 360e6, 32, 5, 64),
    ("Qwen2.5-0.5B", 0.5e9, 24, 2, 64),
    ("Llama-3.2-1B", 1.2e9, 16, 8, 64),
    ("Llama-3.2-3B", 3.2e9, 28, 8, 128),
    ("Llama-2-7B", 6.7e9, 32, 32, 128),
    ("Llama-3.1-8B", 8.0e9, 32, 8, 128),
    ("Llama-2-13B", 13e9, 40, 40, 128),
    ("Qwen2.5-32B", 32e9, 64, 8, 128),
    ("Llama-3.1-70B", 70e9, 80, 8, 128),
    ("Llama-3.1-405B", 405e9, 126, 8, 128),
]
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmbt])\s*$", re.IGNORECASE)
_SCALE = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes needed to run a model: weights, KV cache, and their sum; `note` says what was assumed."""

    name: str
    dtype: str
    context: int
    batch: int
    num_parameters: int
    weights_bytes: int
    kv_cache_bytes: int
    total_bytes: int
    note: str


def normalize_dtype(dtype: str) -> str:
    """Map a dtype spelling to one of bf16|fp16|fp32|int8|int4, or raise InvalidRequestError."""
    key = _DTYPE_ALIASES.get(dtype.lower(), dtype.lower())
    if key not in BYTES_PER_PARAMETER:
        raise InvalidRequestError(f"unknown dtype {dtype!r}: use one of {', '.join(BYTES_PER_PARAMETER)}")
    return key


def parse_size(text: str) -> float | None:
    """Parameters in a size like `7b`, `135m`, `0.5B`; None when `text` is not a size."""
    match = _SIZE.match(text)
    return float(match.group(1)) * _SCALE[match.group(2).lower()] if match else None


def typical_shape(num_parameters: float) -> tuple[str, ModelShape]:
    """The LLaMA-family model closest in size (on a log scale), with the parameter count given."""
    label, _, layers, kv_heads, head_dim = min(
        _TYPICAL_SHAPES, key=lambda shape: abs(math.log(shape[1] / num_parameters))
    )
    return label, ModelShape(int(num_parameters), layers, kv_heads, head_dim)


def estimate_memory(name_or_size: str, dtype: str = "bf16", context: int = 4096, batch: int = 1) -> MemoryEstimate:
    """Estimate the memory to run a model (a name, path, hub id, or a size like `7b`) at a context and batch."""
    dtype = normalize_dtype(dtype)
    if context < 1 or batch < 1:
        raise InvalidRequestError(f"context and batch must be at least 1 (got context={context}, batch={batch})")
    size = parse_size(name_or_size)
    if size is not None:
        label, shape = typical_shape(size)
        note = (
            f"assumed a typical LLaMA shape for {name_or_size} (like {label}: {shape.num_layers} layers, "
            f"{shape.num_kv_heads} KV heads × {shape.head_dim})"
        )
    else:
        directory: Path = resolve(name_or_size)
        shape = model_shape(directory)
        note = f"from {directory / 'config.json'}"

    weights = int(shape.num_parameters * BYTES_PER_PARAMETER[dtype])
    # Quantised weights still keep a 16-bit KV cache; fp32 models keep a 32-bit one.
    kv_element = 4 if dtype == "fp32" else 2
    kv_cache = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * context * batch * kv_element
    return MemoryEstimate(
        name=name_or_size,
        dtype=dtype,
        context=context,
        batch=batch,
        num_parameters=shape.num_parameters,
        weights_bytes=weights,
        kv_cache_bytes=kv_cache,
        total_bytes=weights + kv_cache,
        note=note,
    )
