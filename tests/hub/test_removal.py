import json

import pytest

from llmkit.errors import InvalidRequestError
from llmkit.hub import find_model, list_models, remove_model
from llmkit.hub.paths import converted_dir


def test_removing_a_hub_model_deletes_its_cache_and_its_conversions(hf_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path / "home"))
    snapshot = hf_cache.add("acme/tiny-gguf", {"tiny-Q4_K_M.gguf": b"q4"})
    kept = hf_cache.add("acme/other", {"config.json": b"{}"})
    conversion = converted_dir() / "tiny-q4_k_m-0123456789"
    conversion.mkdir(parents=True)
    source = (snapshot / "tiny-Q4_K_M.gguf").resolve()
    (conversion / "llmkit-manifest.json").write_text(json.dumps({"source": str(source)}))

    removed = remove_model(find_model("acme/tiny-gguf"))
    assert removed == [hf_cache.path / "models--acme--tiny-gguf", conversion]
    assert not removed[0].exists() and not conversion.exists()
    assert kept.is_dir()
    assert [row.name for row in list_models() if row.kind == "huggingface"] == ["acme/other"]


def test_the_embedded_default_and_user_folders_are_refused(tmp_path):
    with pytest.raises(InvalidRequestError, match="default is an embedded model.*cannot be removed"):
        remove_model(find_model("default"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InvalidRequestError, match="not in llmkit's caches"):
        remove_model(find_model(str(tmp_path)))
    assert (tmp_path / "config.json").is_file()
