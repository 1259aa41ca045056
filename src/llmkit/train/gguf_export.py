"""Write a LLaMA-family Hugging Face model directory as one GGUF file that llama.cpp loads.

A compact port of the LLaMA path of llama.cpp's `convert_hf_to_gguf.py` (`LlamaModel`,
`TextModel.set_gguf_parameters`, `_set_vocab_gpt2`): the hyper-parameters, a byte-level BPE vocabulary
with its merges, special tokens and chat template, and the weights with the Q/K rows reordered into
llama.cpp's rotary layout. Other architectures and SentencePiece vocabularies are refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

import gguf
import numpy as np
import torch

from llmkit.errors import ConversionError
from llmkit.hub.architecture import architecture, read_config

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)

# GGUF tensor type for the matrices, and the file type recorded for them; vectors and norms stay F32.
GGUF_TYPES: dict[str, tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]] = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}

# llama.cpp picks its pre-tokenizer (the regex that splits text before BPE) by name; its converter names
# a tokenizer by hashing the ids it gives for this text (`get_vocab_base_pre`). Hashes copied from there.
PRE_TOKENIZER_PROBE = (
    '\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️'
    ' (multiple emojis concatenated) ✅ 🦙🦙'
    ' 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3'
    ' កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======='
    ' нещо на Български \'\'\'\'\'\'```````""""......!!!!!!??????'
    " I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
PRE_TOKENIZERS = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM, SmolLM2
}
ROPE_TYPES = ("default", "linear", "llama3")


def check_gguf_support(config: dict) -> None:
    """Raise ConversionError unless `config` (a config.json) describes a model this writer handles."""
    arch = architecture(config)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ConversionError(
            f"GGUF export supports {', '.join(SUPPORTED_ARCHITECTURES)} models, not {arch}: "
            "export safetensors only (leave out --gguf) and convert with llama.cpp's convert_hf_to_gguf.py"
        )
    rope_type = rope_parameters(config)["rope_type"]
    if rope_type not in ROPE_TYPES:
        raise ConversionError(f"GGUF export supports rope types {', '.join(ROPE_TYPES)}, not {rope_type!r}")


def write_gguf(model_dir: Path, path: Path, gguf_type: str = "f16", name: str | None = None) -> Path:
    """Convert the safetensors model in `model_dir` to the GGUF file `path` with matrices in `gguf_type`."""
    from transformers import AutoTokenizer

    if gguf_type not in GGUF_TYPES:
        raise ConversionError(f"unknown GGUF type {gguf_type!r}: use one of {', '.join(GGUF_TYPES)}")
    config = read_config(model_dir)
    check_gguf_support(config)
    tensor_type, file_type = GGUF_TYPES[gguf_type]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    # Tensors go to a spooled temporary file as they are converted, so a big model is never all in memory.
    # `path` itself is opened only once everything converted, so a failure on the way leaves no file.
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA], use_temp_file=True)
    try:
        add_hyperparameters(writer, config, file_type, name)
        add_vocabulary(writer, tokenizer, model_dir, config["vocab_size"])
        for tensor_name, data, data_type in llama_tensors(model_dir, config, tensor_type):
            writer.add_tensor(tensor_name, data, raw_dtype=data_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path


def rope_parameters(config: dict) -> dict:
    """Rotary settings as transformers 5's `rope_parameters`, also read from older `rope_theta` + `rope_scaling`."""
    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    legacy_type = rope.pop("type", "default")
    rope.setdefault("rope_type", legacy_type)
    rope.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    return rope


def head_dim(config: dict) -> int:
    """Per-head width: explicit in newer configs, else hidden size over heads."""
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def add_hyperparameters(writer: gguf.GGUFWriter, config: dict, file_type: gguf.LlamaFileType, name: str | None) -> None:
    """The `general.*` and `llama.*` keys llama.cpp reads to build the graph."""
    heads = config["num_attention_heads"]
    rope = rope_parameters(config)
    writer.add_type(gguf.GGUFType.MODEL)
    if name:
        writer.add_name(name)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_key_length(head_dim(config))
    writer.add_value_length(head_dim(config))
    writer.add_rope_dimension_count(head_dim(config))
    writer.add_rope_freq_base(rope["rope_theta"])
    if rope["rope_type"] == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(rope["factor"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def add_vocabulary(writer: gguf.GGUFWriter, tokenizer, model_dir: Path, vocab_size: int) -> None:
    """A GPT-2-style BPE vocabulary: tokens and their types, merges, special ids and the chat template."""
    tokens, token_types = vocabulary(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)

    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    if not special.merges:
        raise ConversionError(
            f"{model_dir}/tokenizer.json has no BPE merges: GGUF export needs a byte-level BPE tokenizer"
        )
    # Say what the tokenizer does rather than what its config claims: llama.cpp otherwise assumes a BOS.
    bos = tokenizer.bos_token_id
    special.add_special_token["bos"] = bos is not None and tokenizer.encode("a")[:1] == [bos]
    if tokenizer.chat_template:
        special.chat_template = tokenizer.chat_template
    special.add_to_gguf(writer, quiet=True)


def vocabulary(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Token strings by id with llama.cpp's token types; ids the tokenizer lacks become unused pads."""
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(vocab_size):
        if index not in by_id:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            tokens.append(by_id[index])
            types.append(gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[index])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def pre_tokenizer(tokenizer) -> str:
    """llama.cpp's name for this tokenizer's pre-tokenizer, recognised by the hash of a probe's token ids."""
    digest = sha256(str(tokenizer.encode(PRE_TOKENIZER_PROBE)).encode()).hexdigest()
    if digest not in PRE_TOKENIZERS:
        raise ConversionError(
            f"GGUF export does not know this tokenizer's pre-tokenizer (hash {digest[:12]}…); it knows "
            f"{', '.join(PRE_TOKENIZERS.values())}: convert with llama.cpp's convert_hf_to_gguf.py instead"
        )
    return PRE_TOKENIZERS[digest]


def llama_tensors(
    model_dir: Path, config: dict, tensor_type: gguf.GGMLQuantizationType
) -> Iterator[tuple[str, np.ndarray, gguf.GGMLQuantizationType]]:
    """Every weight under its GGUF name, Q/K reordered and encoded, one tensor in memory at a time."""
    from safetensors import safe_open

    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    tied = config.get("tie_word_embeddings", False)
    rope = rope_parameters(config)
    if rope["rope_type"] == "llama3":
        yield "rope_freqs.weight", llama3_rope_factors(rope, head_dim(config)), gguf.GGMLQuantizationType.F32
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(file, framework="pt") as weights:
            for key in weights.keys():
                if key.endswith("rotary_emb.inv_freq") or (tied and key == "lm_head.weight"):
                    continue
                tensor = weights.get_tensor(key).float()
                if key.endswith(("q_proj.weight", "q_proj.bias")):
                    tensor = interleave_rotary_halves(tensor, heads)
                elif key.endswith(("k_proj.weight", "k_proj.bias")):
                    tensor = interleave_rotary_halves(tensor, kv_heads)
                name = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise ConversionError(f"{file.name} holds {key}, which a LLaMA GGUF has no place for")
                yield name, *encode(tensor.numpy(), name, tensor_type)


def interleave_rotary_halves(weights: torch.Tensor, heads: int) -> torch.Tensor:
    """HF rotates the two halves of each head's rows; llama.cpp rotates adjacent pairs: reorder the rows to match."""
    pairs = weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
    return pairs.swapaxes(1, 2).reshape(weights.shape)


def encode(
    data: np.ndarray, name: str, tensor_type: gguf.GGMLQuantizationType
) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    """Quantise a matrix to `tensor_type`; vectors and norms stay F32, rows Q8_0 cannot split fall back to F16."""
    if data.ndim <= 1 or name.endswith("_norm.weight"):
        tensor_type = gguf.GGMLQuantizationType.F32
    try:
        return gguf.quants.quantize(data, tensor_type), tensor_type
    except gguf.QuantError:
        return gguf.quants.quantize(data, gguf.GGMLQuantizationType.F16), gguf.GGMLQuantizationType.F16


def llama3_rope_factors(rope: dict, dim: int) -> np.ndarray:
    """Llama 3.1's per-frequency RoPE scaling, which llama.cpp reads from a `rope_freqs` tensor."""
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    original = rope.get("original_max_position_embeddings", 8192)
    wavelength = 2 * math.pi * rope["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    smooth = (original / wavelength - low) / (high - low)
    blended = 1 / ((1 - smooth) / factor + smooth)
    factors = np.where(wavelength < original / high, 1.0, np.where(wavelength > original / low, factor, blended))
    return factors.astype(np.float32)
