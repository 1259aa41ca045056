from llmkit.hub import list_models, resolve


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


def test_hub_downloads_are_listed(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path))
    snapshot = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(
        '{"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "num_hidden_layers": 1,'
        ' "num_attention_heads": 2, "vocab_size": 10, "intermediate_size": 16}'
    )
    (tmp_path / "hub" / "models--acme--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny" / "refs" / "main").write_text("abc")
    row = next(row for row in list_models() if row.name == "acme/tiny")
    assert row.cached and row.path == snapshot
    assert row.architecture == "LlamaForCausalLM"
    assert row.num_parameters > 0
