import huggingface_hub.constants
import pytest
import torch

from llmkit.errors import ModelNotFoundError
from llmkit.hub import resolve

from fake_hub import FakeHub


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    """A real (random, tiny) LLaMA checkpoint plus the default model's tokenizer, as a hub would serve it."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

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
def online(monkeypatch, tmp_path):
    """Undo conftest's offline mode for one test; huggingface_hub read HF_HUB_OFFLINE at import time."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path / "home"))


@pytest.fixture
def fake_hub(tiny_repo):
    hub = FakeHub.from_folder("acme/tiny-llama", tiny_repo)
    yield hub
    hub.close()


def test_download_through_hf_endpoint_gives_a_loadable_model(online, fake_hub, monkeypatch, tmp_path):
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    path = resolve("acme/tiny-llama")
    assert path.is_relative_to(tmp_path / "home" / "hub")
    assert sorted(p.name for p in path.iterdir()) == sorted(fake_hub.repos["acme/tiny-llama"])
    assert ("GET", "/api/models/acme/tiny-llama/revision/main") in fake_hub.requests
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.num_hidden_layers == 2

    # Cached now: a second resolve while offline finds the snapshot without the network.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    requests_before = len(fake_hub.requests)
    assert resolve("acme/tiny-llama") == path
    assert len(fake_hub.requests) == requests_before


def test_download_into_local_dir_with_endpoint_argument(online, fake_hub, tmp_path):
    target = tmp_path / "out"
    path = resolve("acme/tiny-llama", endpoint=fake_hub.url, local_dir=target)
    assert path == target.resolve()
    assert (target / "config.json").is_file()


def test_unknown_repo_is_model_not_found(online, fake_hub):
    with pytest.raises(ModelNotFoundError, match="acme/missing"):
        resolve("acme/missing", endpoint=fake_hub.url)
