"""Load models and tokenizers (with LoRA adapters and chat templates) from any resolvable name."""

from llmkit.models.chat_template import render_chat, render_chat_text, validate_messages
from llmkit.models.loading import LoadedModel, load, pick_device, pick_dtype

__all__ = ["LoadedModel", "load", "pick_device", "pick_dtype", "render_chat", "render_chat_text", "validate_messages"]
