import pytest

from llmkit.errors import ModelNotFoundError
from llmkit.hub import find_model, list_models, resolve


def test_known_models_are_listed_with_their_shape():
    directory = resolve("default")
    rows = {row.name: row for row in list_models()}
    assert {"default", "smollm2-135m-instruct", "gemma3-270m"} <= set(rows)
    default = rows["default"]
    assert default.cached and default.path == directory
    assert default.architecture == "LlamaForCausalLM"
    assert 130e6 < default.num_parameters < 140e6
    assert default.size_bytes > 100e6


def test_converted_gguf_is_not_listed_twice():
    resolve("default")
    paths = [row.path for row in list_models() if row.path is not None and not row.name == "default"]
    assert len(paths) == len(set(paths))


TINY_CONFIG = (
    b'{"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "num_hidden_layers": 1,'
    b' "num_attention_heads": 2, "vocab_size": 10, "intermediate_size": 16}'
)


def test_hugging_face_cache_models_are_listed(hf_cache):
    snapshot = hf_cache.add("acme/tiny", {"config.json": TINY_CONFIG, "tokenizer_config.json": b"{}"})
    hf_cache.add("acme/questions", {"train.jsonl": b"{}"}, repo_type="dataset")
    rows = [row for row in list_models() if row.kind == "huggingface"]
    assert [row.name for row in rows] == ["acme/tiny"]  # datasets are not models
    row = rows[0]
    assert row.cached and row.path == snapshot
    assert row.architecture == "LlamaForCausalLM"
    assert row.num_parameters > 0
    assert row.size_bytes == len(TINY_CONFIG) + 2
    assert row.chat_template is False


def test_find_model_by_listed_name_hub_reference_or_path(hf_cache, tmp_path):
    snapshot = hf_cache.add("acme/tiny", {"config.json": TINY_CONFIG, "chat_template.jinja": b"{{ messages }}"})
    assert find_model("acme/tiny:Q4_K_M").path == snapshot
    assert find_model("acme/tiny").chat_template is True
    default = find_model("default")
    assert default.kind == "embedded" and default.chat_template is True
    assert find_model(str(snapshot)).kind == "local"
    assert find_model(str(hf_cache.add("acme/tiny-gguf", {"tiny-Q4_K_M.gguf": b"q4"}))).chat_template is None
    with pytest.raises(ModelNotFoundError, match="llmkit download acme/absent"):
        find_model("acme/absent")
