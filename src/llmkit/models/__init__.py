"""Load models and tokenizers (with LoRA adapters and chat templates) from any resolvable name.

The loading names import torch, so they are read from `loading` on first use: commands that only need a chat
template or a tool parser (`llmkit serve --help`, start-up checks) start without it.
"""

from typing import Any

from llmkit.models.chat_template import render_chat, render_chat_text, validate_messages

LOADING = ("LoadedModel", "load", "pick_device", "pick_dtype")
__all__ = [*LOADING, "render_chat", "render_chat_text", "validate_messages"]


def __getattr__(name: str) -> Any:
    if name in LOADING:
        from llmkit.models import loading

        return getattr(loading, name)
    raise AttributeError(f"module 'llmkit.models' has no attribute {name!r}")
