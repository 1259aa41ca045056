"""Read a model's shape from its directory without loading weights: config.json and safetensors headers."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelShape:
    """The numbers memory estimates need: parameters and the KV-cache geometry."""

    num_parameters: int
    num_layers: int
    num_kv_heads: int
    head_dim: int


def read_config(directory: Path) -> dict:
    """The model's config.json as a dict; multimodal configs are flattened to their text part."""
    config = json.loads((Path(directory) / "config.json").read_text())
    text = config.get("text_config")
    return {**config, **text} if isinstance(text, dict) else config


def architecture(config: dict) -> str | None:
    """The transformers class name (e.g. `LlamaForCausalLM`), or the model type when none is recorded."""
    names = config.get("architectures") or []
    return names[0] if names else config.get("model_type")


def safetensors_parameters(directory: Path) -> int | None:
    """Parameters counted from the safetensors headers (8-byte length + JSON), or None without weights."""
    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        total += sum(math.prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__")
    return total


def config_parameters(config: dict) -> int:
    """Parameters of a LLaMA-style decoder computed from its config (used when no weights are at hand)."""
    hidden = config["hidden_size"]
    layers = config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    vocab = config["vocab_size"]
    intermediate = config.get("intermediate_size") or 4 * hidden
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
    mlp = 3 * hidden * intermediate
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", True) else 2)
    return embeddings + layers * (attention + mlp + 2 * hidden) + hidden


def model_shape(directory: Path) -> ModelShape:
    """Parameters and KV geometry of the model in `directory`."""
    config = read_config(directory)
    heads = config["num_attention_heads"]
    return ModelShape(
        num_parameters=safetensors_parameters(directory) or config_parameters(config),
        num_layers=config["num_hidden_layers"],
        num_kv_heads=config.get("num_key_value_heads") or heads,
        head_dim=config.get("head_dim") or config["hidden_size"] // heads,
    )
