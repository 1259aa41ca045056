"""`--backend auto` decides in one place: vLLM for a server on a CUDA machine that has it, llama.cpp for a GGUF
model when llama-cpp-python is installed and nothing needs torch, torch otherwise — and says why."""

from __future__ import annotations

import importlib.util

import pytest

from llmkit.api import pick_backend
from llmkit.engine.backends import choose_backend
from llmkit.errors import InvalidRequestError

LLAMACPP = importlib.util.find_spec("llama_cpp") is not None



@pytest.fixture(autouse=True)
def auto_means_auto(monkeypatch):
    """tests/conftest.py keeps the suite on torch through LLMKIT_BACKEND; here `auto` is what is tested."""
    monkeypatch.delenv("LLMKIT_BACKEND", raising=False)


@pytest.mark.parametrize(
    "requested, kwargs, expected, says",
    [
        ("torch", dict(gguf=True, llamacpp_installed=True), "torch", "asked for"),
        ("llamacpp", dict(gguf=False, llamacpp_installed=False), "llamacpp", "asked for"),
        ("auto", dict(gguf=True, serving=True, llamacpp_installed=True, vllm_on_cuda=True), "vllm", "CUDA"),
        ("auto", dict(gguf=True, serving=False, llamacpp_installed=True, vllm_on_cuda=True), "llamacpp", "GGUF"),
        ("auto", dict(gguf=True, llamacpp_installed=True, vllm_on_cuda=False), "llamacpp", "installed"),
        ("auto", dict(gguf=True, needs_torch="a LoRA adapter", llamacpp_installed=True, vllm_on_cuda=False),
         "torch", "a LoRA adapter needs it"),
        ("auto", dict(gguf=False, llamacpp_installed=True, vllm_on_cuda=False), "torch", "not a GGUF"),
        ("auto", dict(gguf=True, llamacpp_installed=False, vllm_on_cuda=False), "torch", "setup.sh llamacpp"),
    ],
    ids=["torch-asked", "llamacpp-asked", "vllm-serving", "vllm-only-serves", "llamacpp-gguf", "adapter-torch",
         "not-gguf", "not-installed"],
)
def test_auto_picks_as_documented(requested, kwargs, expected, says) -> None:
    choice = choose_backend(requested, **kwargs)
    assert choice.name == expected and says in choice.reason


def test_the_default_model_here_runs_on_llamacpp_only_when_it_is_installed() -> None:
    choice = pick_backend("auto", "default")
    assert choice.name == ("llamacpp" if LLAMACPP else "torch")
    if not LLAMACPP:
        assert "llama-cpp-python is not installed" in choice.reason


@pytest.mark.parametrize("options, says", [
    (dict(adapter="some/dir"), "a LoRA adapter"), (dict(quantize="int8"), "--quantize int8"),
    (dict(dtype="float32"), "dtype float32"), (dict(compile=True), "--compile"),
])
def test_options_only_torch_has_keep_the_model_on_torch(options, says) -> None:
    choice = pick_backend("auto", "default", **options)
    assert choice.name == "torch" and says in choice.reason


def test_llmkit_backend_replaces_auto_everywhere(monkeypatch) -> None:
    monkeypatch.setenv("LLMKIT_BACKEND", "torch")
    assert pick_backend("auto", "default").name == "torch"
    assert pick_backend("llamacpp", "default").name == "llamacpp"  # an explicit choice still wins
    monkeypatch.setenv("LLMKIT_BACKEND", "onnx")
    with pytest.raises(InvalidRequestError, match="unknown backend 'onnx'"):
        pick_backend("auto", "default")


def test_an_unknown_backend_is_refused_naming_the_choices() -> None:
    with pytest.raises(InvalidRequestError, match="unknown backend 'onnx': use auto, torch, llamacpp, vllm"):
        pick_backend("onnx", "default")
