"""The engine backends and weight quantisations `LLM.build`, the server and the CLI accept, and the one place that
decides what `auto` runs. A light module (no torch at import) the CLI can read at start.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

Backend = Literal["auto", "torch", "llamacpp", "vllm"]
Quantization = Literal["int8", "int4"]


@dataclass(frozen=True)
class BackendChoice:
    """The backend that runs a model, and why, in words for logs and banners."""

    name: Literal["torch", "llamacpp", "vllm"]
    reason: str


def choose_backend(
    requested: Backend,
    *,
    gguf: bool,
    needs_torch: str | None = None,
    serving: bool = False,
    llamacpp_installed: bool | None = None,
    vllm_on_cuda: bool | None = None,
) -> BackendChoice:
    """What runs the model: `requested` itself unless it is `auto`, which picks vLLM for a server on a CUDA machine
    that has it, llama.cpp for a GGUF model when llama-cpp-python is installed and nothing needs torch (`needs_torch`
    says what does: an adapter, a quantisation, a dtype), and torch otherwise. The installs are looked up when not
    given."""
    if requested != "auto":
        return BackendChoice(requested, "asked for with --backend")
    if serving and (vllm_on_cuda if vllm_on_cuda is not None else _vllm_on_cuda()):
        return BackendChoice("vllm", "a CUDA GPU and vLLM are here")
    if needs_torch:
        return BackendChoice("torch", f"{needs_torch} needs it")
    if not gguf:
        return BackendChoice("torch", "the model is not a GGUF file (llama.cpp runs only those)")
    if not (llamacpp_installed if llamacpp_installed is not None else _installed("llama_cpp")):
        return BackendChoice("torch", "llama-cpp-python is not installed (bash scripts/setup.sh llamacpp adds it)")
    return BackendChoice("llamacpp", "the model is a GGUF file and llama-cpp-python is installed")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _vllm_on_cuda() -> bool:
    """True where vLLM is installed and torch sees a CUDA GPU (torch is imported only when vLLM is there)."""
    if not _installed("vllm"):
        return False
    import torch

    return torch.cuda.is_available()
