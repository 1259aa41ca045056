"""`llmkit serve` takes `vllm serve`'s spellings: the model as first argument and vLLM's flag names as aliases of ours.

Each command line runs in this process (typer's CliRunner) up to where uvicorn would take over; the app it built
is then asked through its own routes what it serves. A flag value that cannot be used is refused by name first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

import llmkit.cli.serve as serve_cli
from llmkit.cli.main import app
from llmkit.errors import LLMKitError

INLINE_TEMPLATE = "{% for m in messages %}{{ m.content }}\\n{% endfor %}"  # \n as typed in a shell, as vLLM reads it
ORIGINS = ["https://a.example", "https://b.example"]


@pytest.fixture
def serve(monkeypatch):
    """`serve(*args)` runs `llmkit serve ARGS` here; returns the CliRunner result and what uvicorn would have
    been handed (app and log level) with the options the model was built with, or None if it got no further."""
    built, handed = [], []
    build_llm = serve_cli.build_llm

    def building(options, max_batch_size):  # llmkit's own, noting what it was asked for
        built.append(options)
        return build_llm(options, max_batch_size)

    def run_server(app, sock, log_level):  # instead of serving on the socket until Ctrl-C
        sock.close()
        handed.append((app, log_level))

    monkeypatch.setattr(serve_cli, "build_llm", building)
    monkeypatch.setattr(serve_cli, "run_server", run_server)
    monkeypatch.setattr(serve_cli, "log_to_stderr", lambda *names, **options: None)  # keep pytest's log capture

    def run(*args: str):
        result = CliRunner().invoke(app, ["serve", *args, "--host", "127.0.0.1", "--port", "0", "--dtype", "float32"])
        started = (*handed.pop(), built.pop()) if handed else None
        return result, started

    return run


def flags(spelling: str, adapters: dict[str, Path], folder: Path) -> list[str]:
    """The same server asked for with vLLM's flag names or with ours (`folder` holds a chat template file and a
    generation_config.json)."""
    if spelling == "vllm":
        return [
            "default", "--max-model-len", "256", "--max-num-seqs", "2", "--served-model-name", "smol",
            "--lora-modules", f"alpha={adapters['alpha']}",
            "--lora-modules", json.dumps({"name": "beta", "path": str(adapters["beta"])}),
            "--allowed-origins", json.dumps(ORIGINS), "--chat-template", INLINE_TEMPLATE,
            "--generation-config", str(folder), "--uvicorn-log-level", "info",
        ]
    return [
        "-m", "default", "--max-seq-len", "256", "--max-batch-size", "2", "--served-model-name", "smol",
        "--adapter", f"alpha={adapters['alpha']}", "--adapter", f"beta={adapters['beta']}",
        "--cors-origin", ",".join(ORIGINS), "--chat-template", str(folder / "template.jinja"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("spelling", ["vllm", "llmkit"])
def test_vllm_flag_names_configure_the_server_as_ours_do(serve, lora_adapters, tmp_path, spelling):
    (tmp_path / "template.jinja").write_text("{% for m in messages %}{{ m.content }}\n{% endfor %}")
    (tmp_path / "generation_config.json").write_text('{"temperature": 0.6, "top_p": 0.95}')
    result, started = serve(*flags(spelling, lora_adapters, tmp_path))
    assert result.exit_code == 0, result.output
    served, log_level, options = started
    assert "models: smol, alpha, beta" in result.output
    expected = ("info", str(tmp_path)) if spelling == "vllm" else ("warning", "auto")
    assert (log_level, options["generation_config"]) == expected
    with TestClient(served) as client:
        models = client.get("/v1/models").json()["data"]
        assert [model["id"] for model in models][:3] == ["smol", "alpha", "beta"]  # then the embedding model
        assert models[0]["max_model_len"] == 256
        defaults = served.state.serving.engine.sampling_defaults  # the folder's generation config, or the card's
        assert (defaults["temperature"], defaults["top_p"]) == ((0.6, 0.95) if spelling == "vllm" else (0.2, 0.9))
        ask = {"model": "smol", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 1}
        assert client.post("/v1/chat/completions", json={**ask, "n": 2}).status_code == 200
        assert client.post("/v1/chat/completions", json={**ask, "n": 3}).status_code == 400  # over --max-num-seqs
        for origin, allowed in [*((origin, True) for origin in ORIGINS), ("https://c.example", False)]:
            preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
            assert (client.options("/v1/models", headers=preflight).status_code == 200) == allowed
        tokens = client.post("/tokenize", json={"messages": [{"role": "user", "content": "Hi"}]}).json()["tokens"]
        assert client.post("/detokenize", json={"tokens": tokens}).json()["prompt"] == "Hi\n"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["default", "-m", "smollm2-135m"], "two models given, default (first argument) and smollm2-135m (--model)"),
        (["--generation-config", "greedy"], "--generation-config greedy: give auto (the model's own), vllm"),
        (["--lora-modules", '{"name": "a"}'], 'write {"name": NAME, "path": PATH} or NAME=PATH'),
        (["--lora-modules", '{"name": "a", "path": "/x", "base_model_name": "b"}'], "base_model_name is not read"),
        (["--lora-modules", '{"name": "a",'], "not JSON"),
        (["--adapter", "=nowhere"], "write NAME=PATH"),
        (["--allowed-origins", '["https://a.example"'], "not a JSON list"),
        (["--allowed-origins", "[1]"], "list origins as strings"),
    ],
)
def test_flag_values_that_cannot_be_used_are_refused_by_name(serve, arguments, message):
    result, started = serve(*arguments)
    assert started is None
    assert isinstance(result.exception, LLMKitError) and message in str(result.exception)


def test_a_uvicorn_log_level_it_does_not_have_is_refused(serve):
    result, started = serve("--uvicorn-log-level", "loud")
    assert started is None and result.exit_code == 2 and "loud" in result.output
