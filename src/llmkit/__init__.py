"""llmkit: download, chat with, fine-tune, export and serve open LLMs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmkit.api import LLM
    from llmkit.engine.params import SamplingParams

__all__ = ["LLM", "SamplingParams"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import torch and the engine only when `LLM` or `SamplingParams` is used: `llmkit data split` needs neither."""
    if name == "LLM":
        from llmkit.api import LLM

        return LLM
    if name == "SamplingParams":
        from llmkit.engine.params import SamplingParams

        return SamplingParams
    raise AttributeError(f"module 'llmkit' has no attribute {name!r}")
