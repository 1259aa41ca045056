"""`write_gguf` on small random LLaMA models: llama.cpp computes the logits transformers does, RoPE scaling included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from llmkit.errors import ConversionError
from llmkit.train.gguf_export import write_gguf

TEXT = "The quick brown fox jumps over the lazy dog, again and again and again and again."
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,  # short, so the scaled frequencies matter within TEXT
}


def tiny_llama(directory: Path, tokenizer_dir: Path, rope: dict) -> torch.nn.Module:
    """A 2-layer random LLaMA with an untied LM head and SmolLM2's tokenizer, saved in `directory`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=49152, max_position_embeddings=256, tie_word_embeddings=False,
        rope_parameters={"rope_theta": 10000.0, **rope},
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0, 0.5)  # large enough that the logits differ clearly from token to token
    model.save_pretrained(directory)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, directory / name)
    return model


@pytest.mark.parametrize("rope", [LLAMA3_ROPE, {"rope_type": "linear", "factor": 4.0}], ids=["llama3", "linear"])
def test_llama_cpp_logits_match_transformers(rope, smollm, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    model = tiny_llama(tmp_path / "tiny", smollm.path, rope)
    ids = smollm.tokenizer.encode(TEXT)
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0].numpy()

    llm = llama_cpp.Llama(
        model_path=str(write_gguf(tmp_path / "tiny", tmp_path / "tiny.gguf", "f32")),
        n_ctx=128, logits_all=True, verbose=False,
    )
    try:
        llm.eval(ids)
        logits = np.array(llm.scores[: len(ids)])
    finally:
        llm.close()
    # llama.cpp keeps its KV cache in f16: agreement to ~0.5% of the logit range (wrong RoPE is off by ~90%).
    assert np.abs(logits - expected).max() < 0.02 * np.abs(expected).max()


def test_unknown_pre_tokenizer_is_refused(smollm, tmp_path):
    tiny_llama(tmp_path / "tiny", smollm.path, {"rope_type": "default"})
    tokenizer = json.loads((tmp_path / "tiny" / "tokenizer.json").read_text())
    tokenizer["pre_tokenizer"]["add_prefix_space"] = True  # splits text differently from any known model
    (tmp_path / "tiny" / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ConversionError, match="pre-tokenizer.*smollm"):
        write_gguf(tmp_path / "tiny", tmp_path / "tiny.gguf", "f16")
