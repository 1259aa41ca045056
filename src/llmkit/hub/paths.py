"""Where llmkit keeps its files: one home folder holding the GGUF conversions and the compiled forwards; hub
downloads go to the standard Hugging Face cache, shared with transformers and `hf download`."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import constants


def home() -> Path:
    """The llmkit cache folder: `$LLMKIT_HOME`, or `~/.cache/llmkit`."""
    configured = os.environ.get("LLMKIT_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "llmkit"


def hub_cache_dir() -> Path:
    """The Hugging Face cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`).

    A model already fetched by transformers or `hf download` is found there and not downloaded again.
    """
    return Path(constants.HF_HUB_CACHE)


def converted_dir() -> Path:
    """GGUF files converted to safetensors directories, one `<name>-<hash>/` folder each."""
    return home() / "converted"


def gguf_dir() -> Path:
    """GGUF files llmkit assembles itself (the Gemma test model ships as chunks)."""
    return home() / "gguf"


def compile_cache_dir() -> Path:
    """torch.compile's on-disk artefacts for `--compile` (inductor's cache), so later starts skip the compile."""
    return home() / "torch-compile"
