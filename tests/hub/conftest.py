"""Hub test fixtures: a tiny real checkpoint to serve or cache, and a switch back to online mode."""

from __future__ import annotations

import huggingface_hub.constants
import pytest
import torch


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory):
    """A real (random, tiny) LLaMA checkpoint plus the default model's tokenizer, as a hub would serve it."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from llmkit.hub import resolve

    folder = tmp_path_factory.mktemp("tiny")
    config = LlamaConfig(
        vocab_size=49152, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve("default")).save_pretrained(folder)
    return folder


@pytest.fixture
def online(monkeypatch, hf_cache):
    """Undo conftest's offline mode for one test (huggingface_hub read HF_HUB_OFFLINE at import), with an empty
    Hugging Face cache."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    return hf_cache
