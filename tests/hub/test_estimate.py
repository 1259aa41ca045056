import json

import pytest

from llmkit.errors import InvalidRequestError
from llmkit.hub import estimate_memory, resolve


def test_7b_in_fp16_needs_about_14_gb_of_weights():
    estimate = estimate_memory("7b", dtype="fp16")
    assert 14e9 * 0.9 <= estimate.weights_bytes <= 14e9 * 1.1
    assert estimate.total_bytes == estimate.weights_bytes + estimate.kv_cache_bytes
    assert "LLaMA" in estimate.note


def test_smaller_dtypes_need_less_memory():
    sizes = [estimate_memory("7b", dtype=d).weights_bytes for d in ("int4", "int8", "fp16", "fp32")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4


def test_kv_cache_grows_linearly_with_context_and_batch():
    base = estimate_memory("0.5b", context=1024, batch=1).kv_cache_bytes
    assert estimate_memory("0.5b", context=4096, batch=1).kv_cache_bytes == 4 * base
    assert estimate_memory("0.5b", context=1024, batch=8).kv_cache_bytes == 8 * base
    assert estimate_memory("0.5b", context=1024, batch=8).weights_bytes == estimate_memory("0.5b").weights_bytes


def test_default_model_estimate_uses_its_config():
    config = json.loads((resolve("default") / "config.json").read_text())
    estimate = estimate_memory("default", dtype="bf16", context=2048)
    assert 130e6 < estimate.num_parameters < 140e6
    assert estimate.weights_bytes == 2 * estimate.num_parameters
    kv_heads, layers, head_dim = config["num_key_value_heads"], config["num_hidden_layers"], config["head_dim"]
    assert estimate.kv_cache_bytes == 2 * layers * kv_heads * head_dim * 2048 * 2
    assert "config.json" in estimate.note


def test_unknown_dtype_lists_the_allowed_ones():
    with pytest.raises(InvalidRequestError) as error:
        estimate_memory("7b", dtype="fp8")
    for allowed in ("bf16", "fp16", "fp32", "int8", "int4"):
        assert allowed in str(error.value)
