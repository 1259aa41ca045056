"""Render chat messages with the tokenizer's own Jinja chat template (never a hand-written format)."""

from __future__ import annotations

from typing import Any

from llmkit.errors import ChatTemplateError, InvalidRequestError

ROLES = ("system", "user", "assistant", "tool")


def validate_messages(messages: Any) -> list[dict]:
    """Check messages are a non-empty list of {role, content: str} dicts; raise InvalidRequestError if not."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequestError(f"messages[{index}] must be a dict with 'role' and 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise InvalidRequestError(f"messages[{index}].role is {role!r}: use one of {', '.join(ROLES)}")
        content = message.get("content")
        # An assistant turn that only calls tools may have no text.
        if content is None and role == "assistant" and message.get("tool_calls"):
            continue
        if not isinstance(content, str):
            raise InvalidRequestError(f"messages[{index}].content must be a string, got {type(content).__name__}")
    return messages


def render_chat_text(
    tokenizer, messages: list[dict], add_generation_prompt: bool = True, tools: list[dict] | None = None
) -> str:
    """The prompt text the model's chat template produces for `messages` (and optional tool schemas)."""
    return _apply(tokenizer, messages, add_generation_prompt, tools, tokenize=False)


def render_chat(
    tokenizer, messages: list[dict], add_generation_prompt: bool = True, tools: list[dict] | None = None
) -> list[int]:
    """Token ids of the chat-templated prompt for `messages`, as a plain list of ints."""
    encoded = _apply(tokenizer, messages, add_generation_prompt, tools, tokenize=True)
    # transformers 5 returns a BatchEncoding by default; older versions a list (or a list of lists).
    if hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    if hasattr(encoded, "tolist"):
        encoded = encoded.tolist()
    if encoded and isinstance(encoded[0], list):
        encoded = encoded[0]
    return [int(token) for token in encoded]


def _apply(tokenizer, messages, add_generation_prompt: bool, tools, tokenize: bool):
    validate_messages(messages)
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(
            "this model's tokenizer has no chat template (it is probably a base model): "
            "pass one with --chat-template FILE (a Jinja file), or use plain text generation"
        )
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=add_generation_prompt, tokenize=tokenize
        )
    except TemplateError as error:
        raise ChatTemplateError(f"the chat template rejected these messages: {error}") from error
