"""`llmkit generate --backend llamacpp` end to end: it answers from the GGUF, and refuses what it cannot do."""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="the llamacpp backend needs llama-cpp-python: pip install -e '.[llamacpp]'",
)
def test_generate_answers_with_llamacpp(llmkit):
    result = llmkit("generate", "--backend", "llamacpp", "-t", "0", "-n", "8", "The capital of France is")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    assert result.stderr == ""  # llama.cpp's load log stays quiet


def test_llamacpp_with_an_adapter_is_one_line_error(llmkit, tmp_path):
    result = llmkit("generate", "--backend", "llamacpp", "--adapter", str(tmp_path), "hello")
    lines = result.stderr.splitlines()
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "LoRA adapters need the torch backend" in lines[0]
