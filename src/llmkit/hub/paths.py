"""Where llmkit keeps its files: one home folder holding the hub downloads and the GGUF conversions."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The llmkit cache folder: `$LLMKIT_HOME`, or `~/.cache/llmkit`."""
    configured = os.environ.get("LLMKIT_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "llmkit"


def hub_cache_dir() -> Path:
    """Hugging Face Hub downloads (the `huggingface_hub` cache layout: `models--org--name/`)."""
    return home() / "hub"


def converted_dir() -> Path:
    """GGUF files converted to safetensors directories, one `<name>-<hash>/` folder each."""
    return home() / "converted"


def gguf_dir() -> Path:
    """GGUF files llmkit assembles itself (the Gemma test model ships as chunks)."""
    return home() / "gguf"
