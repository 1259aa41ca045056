"""Render chat messages with a Jinja chat template: the tokenizer's own, a file, or one of LLaMA-Factory's by name."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmkit.errors import ChatTemplateError, InvalidRequestError
from llmkit.models.named_templates import named_template, template_jinja, unknown_template_hint

ROLES = ("system", "user", "assistant", "tool")
JINJA_CHARACTERS = "{}\n"  # a --chat-template value holding any of these is a template, not a file name (as vLLM)


def load_chat_template(template: str | Path) -> str:
    """A chat template by LLaMA-Factory's name (`qwen`, `llama3` … see `named_templates`), from a file, or given
    inline as Jinja text (escapes like \\n read as in vLLM's `--chat-template`); `ChatTemplateError` otherwise."""
    if named_template(template) is not None:
        return template_jinja(str(template))
    try:
        return Path(template).read_text(encoding="utf-8")
    except (OSError, ValueError) as error:  # ValueError: a NUL character, which no file name holds
        if isinstance(template, Path) or not any(character in template for character in JINJA_CHARACTERS):
            reason = getattr(error, "strerror", None) or error
            raise ChatTemplateError(f"cannot read chat template {template}: {reason} (give a Jinja file, the "
                                    f"template itself, or a template name; {unknown_template_hint(str(template))})"
                                    ) from None
    return template.encode("latin-1", "backslashreplace").decode("unicode_escape")


def template_change_note(tokenizer_template: str | None, template: str | Path | None) -> str | None:
    """One line when `template` (a name, a file, Jinja text) renders differently from the tokenizer's own template,
    saying that the output carries it; None when no template is set or it is the tokenizer's own."""
    if template is None or load_chat_template(template) == tokenizer_template:
        return None
    own = "the tokenizer's own chat template" if tokenizer_template else "the tokenizer (which has no chat template)"
    return f"template {template} differs from {own}: chat/serve will use {template} from the output dir"


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
    tokenizer, messages: list[dict], add_generation_prompt: bool = True, tools: list[dict] | None = None,
    *, continue_final_message: bool = False, template_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """The prompt text the model's chat template produces for `messages` (and optional tool schemas)."""
    return _apply(tokenizer, messages, add_generation_prompt, tools, False, continue_final_message, template_kwargs)


def render_chat(
    tokenizer, messages: list[dict], add_generation_prompt: bool = True, tools: list[dict] | None = None,
    *, continue_final_message: bool = False, template_kwargs: Mapping[str, Any] | None = None,
) -> list[int]:
    """Token ids of the chat-templated prompt for `messages`, as a plain list of ints. `continue_final_message`
    leaves the last message open for the answer to continue; `template_kwargs` are variables the template reads."""
    encoded = _apply(tokenizer, messages, add_generation_prompt, tools, True, continue_final_message, template_kwargs)
    # transformers 5 returns a BatchEncoding by default; older versions a list (or a list of lists).
    if hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    if hasattr(encoded, "tolist"):
        encoded = encoded.tolist()
    if encoded and isinstance(encoded[0], list):
        encoded = encoded[0]
    return [int(token) for token in encoded]


def _apply(
    tokenizer, messages, add_generation_prompt: bool, tools, tokenize: bool, continue_final_message: bool = False,
    template_kwargs: Mapping[str, Any] | None = None,
):
    validate_messages(messages)
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(
            "this model's tokenizer has no chat template (it is probably a base model): "
            "pass one with --chat-template FILE (a Jinja file), or use plain text generation"
        )
    variables = _template_variables(tokenizer, tools, template_kwargs or {})
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=add_generation_prompt, tokenize=tokenize,
            continue_final_message=continue_final_message, **variables,
        )
    except TemplateError as error:
        raise ChatTemplateError(f"the chat template rejected these messages: {error}") from error
    except ValueError as error:  # transformers' word on a last message its template does not render as it is
        if not continue_final_message:
            raise
        reason = str(error).split("!")[0]
        raise InvalidRequestError(f"continue_final_message: {reason}", param="continue_final_message") from None


def _template_variables(tokenizer, tools: list[dict] | None, variables: Mapping[str, Any]) -> dict[str, Any]:
    """`variables` checked to be ones the chat template reads (as vLLM's chat_template_kwargs) and none that the
    renderer sets itself; `InvalidRequestError` naming the first that is not."""
    if not variables:
        return {}
    import jinja2.meta
    from transformers.utils.chat_template_utils import _compile_jinja_template  # cached: rendering compiles it too

    template = tokenizer.get_chat_template(tools=tools)
    environment = _compile_jinja_template(template).environment
    set_here = {"messages", *inspect.signature(tokenizer.apply_chat_template).parameters, *environment.globals}
    set_here |= set(tokenizer.special_tokens_map)
    readable = jinja2.meta.find_undeclared_variables(environment.parse(template)) - set_here
    for name in variables:
        where = f"chat_template_kwargs.{name}"
        if name in set_here:
            raise InvalidRequestError(f"{where}: {name!r} is set by llmkit, not by you (add_generation_prompt and "
                                      "continue_final_message are fields of their own)", param=where)
        if name not in readable:
            reads = f"it reads {', '.join(sorted(readable))}" if readable else "it reads none"
            raise InvalidRequestError(f"{where}: this model's chat template does not read {name!r} ({reads})",
                                      param=where)
    return dict(variables)
