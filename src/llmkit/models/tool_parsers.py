"""Read the tool calls a model writes in its family's format, from a whole answer or while it streams.

One small `ToolParser` per format, named as vLLM's `--tool-call-parser`: `hermes` (Hermes 2 Pro, Qwen 2.5 / 3:
`<tool_call>{"name": …, "arguments": {…}}</tool_call>`), `llama3_json` (Llama 3.1 / 3.2: `{"name": …,
"parameters": {…}}`, optionally after `<|python_tag|>`, several joined by `;`) and `mistral` (`[TOOL_CALLS]`
then a JSON list of calls, or the newer `name[ARGS]{…}` per call); plus the JSON answer llmkit constrains a
template without a tool format to. Each reads text into a `Draft` (the content, and the calls as far as they
are written, `call_json`); a whole answer is the draft of its whole text, and a stream sends what each draft adds.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from llmkit.errors import LLMKitError
from llmkit.models.call_json import (
    CallDraft,
    Draft,
    Malformed,
    load_json,
    next_item,
    partial_string,
    read_arguments,
    read_call,
    read_call_list,
    read_key,
    skip_space,
    value_end,
)

_MISTRAL_HEADER = re.compile(r"\s*([\w.-]+)\s*(?:\[CALL_ID\]\w*)?(?:\[ARGS\])?\s*")  # name[CALL_ID]id[ARGS]
_MISTRAL_HEADER_SO_FAR = re.compile(r"[\w.\-\[\]\s]*")


class ToolParserError(LLMKitError):
    """A `--tool-call-parser` that does not exist, or a chat template that gives it nothing to parse."""


@dataclass(frozen=True)
class ToolCall:
    """One call the model made: the function's name and its arguments as JSON text (as OpenAI returns them)."""

    name: str
    arguments: str


@dataclass(frozen=True)
class Answer:
    """A model's answer split into text and tool calls (no calls: a plain answer)."""

    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)


class ToolParser:
    """One family's call format. `start` is the text that opens its calls; a chat template that contains it
    writes calls this way."""

    name: ClassVar[str]
    start: ClassVar[str]

    def draft(self, text: str) -> Draft:
        """`text` (a whole answer or the start of one) as content and calls."""
        draft = Draft()
        try:
            self._read(text, draft)
        except Malformed:
            draft.malformed = True
        return draft

    def parse(self, text: str) -> Answer:
        """A whole answer's calls and the text around them; text that is not well-formed calls (cut off,
        not JSON, arguments that are not an object) is all content."""
        draft = self.draft(text)
        calls = [_finished(call) for call in draft.calls]
        if draft.malformed or not draft.complete or None in calls:
            return Answer(text)
        if not calls:
            return Answer(draft.content)
        return Answer(draft.content.strip() or None, calls)

    def needs_special_tokens(self, tokenizer: Any) -> bool:
        """True when `tokenizer` drops this format's `start` from decoded text unless special tokens are kept."""
        if not self.start:
            return False
        ids = tokenizer.encode(self.start, add_special_tokens=False)
        return tokenizer.decode(ids, skip_special_tokens=True) != self.start

    def _read(self, text: str, draft: Draft) -> None:
        raise NotImplementedError


class HermesParser(ToolParser):
    """`<tool_call>{"name": …, "arguments": {…}}</tool_call>` blocks, text around them content (the closing
    tag may be missing at the end)."""

    name = "hermes"
    start = "<tool_call>"
    end = "</tool_call>"

    def _read(self, text: str, draft: Draft) -> None:
        position = 0
        while (opening := text.find(self.start, position)) != -1:
            draft.content += text[position:opening]
            draft.consumed = opening
            end = read_call(text, opening + len(self.start), draft)
            if end is None:
                return
            closing = skip_space(text, end)
            if text.startswith(self.end, closing):
                position = closing + len(self.end)
            elif self.end.startswith(text[closing:]):  # the closing tag, or the end of the answer, still to come
                draft.complete = True
                return
            else:
                raise Malformed
        draft.content += text[position:]
        draft.consumed = len(text)
        draft.complete = True


class Llama3JsonParser(ToolParser):
    """Llama 3.1 / 3.2 JSON calls: `{"name": …, "parameters": {…}}` (or `"arguments"`), several joined by `;`,
    as the whole answer or after `<|python_tag|>` (text before it is content)."""

    name = "llama3_json"
    start = "<|python_tag|>"

    def _read(self, text: str, draft: Draft) -> None:
        tag = text.find(self.start)
        if tag != -1:
            draft.content, position = text[:tag], tag + len(self.start)
        else:
            position = skip_space(text, 0)
            if not text.startswith("{", position):
                draft.content, draft.consumed, draft.complete = text, len(text), True
                return
        while True:
            draft.consumed = position
            end = read_call(text, position, draft, ("parameters", "arguments"))
            if end is None:
                return
            position, _ = next_item(text, end, ";", None)
            if position is None:
                draft.complete = True
                return


class MistralParser(ToolParser):
    """Mistral's `[TOOL_CALLS][{"name": …, "arguments": {…}}, …]`, or the newer `[TOOL_CALLS]name[ARGS]{…}`
    (each call after its own `[TOOL_CALLS]`; `[ARGS]` may be missing, a `[CALL_ID]id` may come before it);
    text before the first is content."""

    name = "mistral"
    start = "[TOOL_CALLS]"

    def _read(self, text: str, draft: Draft) -> None:
        tag = text.find(self.start)
        if tag == -1:
            draft.content, draft.consumed, draft.complete = text, len(text), True
            return
        draft.content, draft.consumed = text[:tag], tag
        position = skip_space(text, tag + len(self.start))
        if text.startswith("[", position):
            end = read_call_list(text, position + 1, draft)
            draft.complete = end is not None and skip_space(text, end) == len(text)
            if end is not None and not draft.complete:
                raise Malformed
        elif position < len(text):
            self._read_named(text, tag, draft)

    def _read_named(self, text: str, position: int, draft: Draft) -> None:
        """Calls written `[TOOL_CALLS]name[ARGS]{…}`, one after another."""
        while position < len(text):
            if not text.startswith(self.start, position):
                if self.start.startswith(text[position:]):
                    return
                raise Malformed
            draft.consumed = position
            call = CallDraft()
            draft.calls.append(call)
            header_start = position + len(self.start)
            arguments = text.find("{", header_start)
            if arguments == -1:  # the header is still being written
                if _MISTRAL_HEADER_SO_FAR.fullmatch(text, header_start) is None:
                    raise Malformed
                return
            header = _MISTRAL_HEADER.fullmatch(text, header_start, arguments)
            if header is None:
                raise Malformed
            call.name = header.group(1)
            position = read_arguments(text, arguments, call)
            if position is None:
                return
            position = skip_space(text, position)
        draft.complete = True


class JsonAnswerParser(ToolParser):
    """The answer llmkit holds a template without a tool format to (see `tool_calls.call_schema`):
    `{"tool_calls": [{"name": …, "arguments": {…}}, …]}`, or `{"content": "…"}`."""

    name = "json"
    start = ""

    def _read(self, text: str, draft: Draft) -> None:
        position = skip_space(text, 0)
        if position == len(text):
            return
        if text[position] != "{":
            raise Malformed
        key, position = read_key(text, position + 1)
        if position is None:
            return
        if key == "tool_calls" and text[position] == "[":
            end = read_call_list(text, position + 1, draft)
        elif key == "content" and text[position] == '"':
            end = value_end(text, position)
            draft.content = load_json(text[position:end]) if end else partial_string(text[position + 1 :])
            draft.consumed = len(text)
        else:
            raise Malformed
        if end is None:
            return
        closing = skip_space(text, end)
        if closing == len(text):
            return
        if text[closing] != "}" or skip_space(text, closing + 1) != len(text):
            raise Malformed
        draft.complete = True


PARSERS: dict[str, type[ToolParser]] = {
    "hermes": HermesParser,
    "llama3_json": Llama3JsonParser,
    "mistral": MistralParser,
    "qwen": HermesParser,  # Qwen 2.5 and 3 write Hermes' <tool_call> blocks
}
_DETECTED = (MistralParser, Llama3JsonParser, HermesParser)  # most specific marker first


def tool_parser(name: str) -> ToolParser:
    """The parser vLLM's `--tool-call-parser NAME` names; `ToolParserError` listing the names for any other."""
    if name not in PARSERS:
        raise ToolParserError(f"unknown tool-call parser {name!r}: use one of {', '.join(PARSERS)}")
    return PARSERS[name]()


@functools.lru_cache(maxsize=8)
def pick_tool_parser(template: str | None, name: str | None = None) -> ToolParser | None:
    """The parser of the calls a model writes when its chat template renders tools: `name` if given, else the
    format the template writes calls in (Hermes when it shows none); None for a template without tools,
    whose calls are JSON-constrained instead."""
    parser = tool_parser(name) if name is not None else None
    if not template_has_tools(template):
        if parser is not None:
            raise ToolParserError(
                f"--tool-call-parser {name}: the chat template does not render tools (it never reads `tools`), so "
                "the model writes no calls of its own to parse: give a template that does with --chat-template, "
                "or leave --tool-call-parser out (calls are then JSON-constrained)"
            )
        return None
    return parser or next((cls() for cls in _DETECTED if cls.start in template), HermesParser())


@functools.lru_cache(maxsize=8)
def template_has_tools(template: str | None) -> bool:
    """True when a Jinja chat template reads the `tools` variable, i.e. renders tool schemas itself."""
    if not isinstance(template, str):
        return False
    from jinja2 import Environment, TemplateSyntaxError, meta

    try:
        return "tools" in meta.find_undeclared_variables(Environment().parse(template))
    except TemplateSyntaxError:
        return False


def _finished(call: CallDraft) -> ToolCall | None:
    """A whole call (its arguments read whole are a JSON object, see `read_arguments`); None otherwise."""
    try:
        arguments = json.loads(call.arguments or "", strict=False)
    except json.JSONDecodeError:
        return None
    return ToolCall(call.name, json.dumps(arguments, ensure_ascii=False)) if call.name is not None else None
