"""Function calling on any chat model: the template's own tool format where it has one, constrained JSON otherwise.

A chat template that reads `tools` (Qwen, Hermes, Llama 3.1, Mistral, SmolLM3 …) renders the schemas itself
and the model answers in its family's format, read by a parser of `tool_parsers`. Other templates get the
tools described in a system message and decoding held to a JSON schema of the calls.
Messages are plain dicts in the Hugging Face convention: assistant `tool_calls` whose `arguments` are
dicts, and `tool` messages carrying `tool_call_id`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llmkit.errors import InvalidRequestError
from llmkit.models.tool_call_stream import ToolCallStream
from llmkit.models.tool_parsers import Answer, JsonAnswerParser, ToolParser

ToolChoice = str | dict  # "none" | "auto" | "required" | {"type": "function", "function": {"name": ...}}
_JSON_ANSWER = JsonAnswerParser()


@dataclass(frozen=True)
class ToolPrompt:
    """How to render one request and read its answer: messages and tools for the template, the schema to
    decode by, and the parser of the template's own call format."""

    messages: list[dict]
    tools: list[dict] | None = None  # handed to a chat template that renders tools itself
    schema: dict | None = None  # decoding follows this JSON schema of calls (see `call_schema`)
    parallel: bool = True
    parser: ToolParser | None = None  # reads the calls the model writes freely in its template's format

    @property
    def reader(self) -> ToolParser | None:
        """The parser of this request's answers: the constrained JSON's, the template format's, or None (no calls)."""
        if self.schema is not None:
            return _JSON_ANSWER
        return self.parser if self.tools else None

    @property
    def may_call(self) -> bool:
        """True when the answer may hold tool calls."""
        return self.reader is not None

    def parse(self, text: str) -> Answer:
        """The whole answer in `text`: its content and calls (one at most unless `parallel`)."""
        if self.reader is None:
            return Answer(text)
        answer = self.reader.parse(text)
        return answer if self.parallel else Answer(answer.content, answer.tool_calls[:1])

    def stream(self) -> ToolCallStream:
        """A reader of this request's answer as it streams (only when `may_call`)."""
        return ToolCallStream(self.reader, None if self.parallel else 1)


def tool_prompt(
    messages: list[dict], tools: list[dict] | None, choice: ToolChoice | None, parallel: bool | None,
    parser: ToolParser | None,
) -> ToolPrompt:
    """Plan a request: its tools through the template (which writes calls as `parser` reads them; None: the
    template has no tool format) or a system message, and a call schema.

    `tools`, `choice` and `parallel` are OpenAI's. `choice` defaults to "auto" with tools; `parallel` to
    several calls where the model writes its template's format freely, one where decoding is constrained
    (small models repeat calls until max_tokens). Earlier calls and results are checked and, for
    templates without tools, rewritten as text.
    """
    check_tool_results(messages)
    choice = choice or ("auto" if tools else "none")
    if parser is None:
        messages = _plain_history(messages)
    if not tools or choice == "none":
        return ToolPrompt(messages)
    free = parser is not None and choice == "auto"  # the model writes its template's call format unconstrained
    parallel = free if parallel is None else parallel
    schema = None if free else call_schema(tools, choice, parallel)
    if parser is not None:
        return ToolPrompt(messages, tools, schema, parallel, parser)
    return ToolPrompt(_with_system(messages, tools_instructions(tools, choice, parallel)), None, schema, parallel)


def call_schema(tools: list[dict], choice: ToolChoice, parallel: bool) -> dict:
    """The JSON schema of a constrained answer: `{"tool_calls": [{"name", "arguments"}, …]}`, or for
    "auto" also `{"content": "…"}`; a named `choice` allows only that tool."""
    functions = [tool["function"] for tool in tools]
    if isinstance(choice, dict):
        functions = [f for f in functions if f["name"] == choice["function"]["name"]]
    # Each tool's parameters live under $defs/<name>, their own local $refs rebased there.
    parameters = {f["name"]: _rebased(f.get("parameters") or _object({}), f"#/$defs/{f['name']}") for f in functions}
    calls = [_object({"name": {"const": name}, "arguments": {"$ref": f"#/$defs/{name}"}}) for name in parameters]
    items: dict[str, Any] = {"type": "array", "items": calls[0] if len(calls) == 1 else {"anyOf": calls}, "minItems": 1}
    if not parallel:
        items["maxItems"] = 1
    schema = _object({"tool_calls": items})
    if choice == "auto":
        schema = {"anyOf": [schema, _object({"content": {"type": "string"}})]}
    return {**schema, "$defs": parameters}


def tools_instructions(tools: list[dict], choice: ToolChoice, parallel: bool) -> str:
    """A system message describing the tools and the exact JSON answer `call_schema` holds the model to."""
    lines = ["You can call these tools. Each one's arguments are given as a JSON schema."]
    for tool in tools:
        function = tool["function"]
        description = function.get("description")
        lines.append(f"- {function['name']}" + (f": {description}" if description else ""))
        lines.append(f"  arguments: {json.dumps(function.get('parameters', {}), ensure_ascii=False)}")
    lines.append('To call a tool, answer with JSON only: {"tool_calls": [{"name": "<tool>", "arguments": {…}}]}')
    if isinstance(choice, dict):
        lines.append(f"Call {choice['function']['name']} now.")
    elif choice == "auto":
        lines.append('If no tool is needed, or to give your final answer, answer {"content": "<your answer>"}.')
    lines.append("Call one tool at a time." if not parallel else "You may call several tools at once.")
    lines.append('Tool results come back in messages that start with "Result of".')
    return "\n".join(lines)


def check_tool_results(messages: list[dict]) -> None:
    """Refuse, as OpenAI does, a `tool` message that answers no call of the assistant turn before it,
    and calls left without a `tool` message answering them."""
    waiting: list[str] = []
    for index, message in enumerate(messages):
        if message["role"] == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in waiting:
                open_calls = f"open calls: {', '.join(waiting)}" if waiting else "no call is waiting for a result"
                raise InvalidRequestError(
                    f"messages[{index}] has role 'tool' but its tool_call_id {call_id!r} answers no call of the "
                    f"assistant message before it ({open_calls}); set tool_call_id to the id of the call it answers"
                )
            waiting.remove(call_id)
            continue
        if waiting:
            raise _unanswered(waiting, index)
        waiting = [call["id"] for call in message.get("tool_calls") or []]
    if waiting:
        raise _unanswered(waiting, len(messages))


def _unanswered(call_ids: list[str], index: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"the tool calls {', '.join(call_ids)} have no result before messages[{index}]: follow the assistant "
        "message that made them with one {'role': 'tool', 'tool_call_id': ..., 'content': ...} message per call"
    )


def _rebased(schema: Any, base: str) -> Any:
    """`schema` with its local `$ref`s ("#/…") pointing below `base`, where it sits inside a larger schema."""
    if isinstance(schema, list):
        return [_rebased(item, base) for item in schema]
    if not isinstance(schema, dict):
        return schema
    local = schema.get("$ref")
    rebased = {key: _rebased(value, base) for key, value in schema.items()}
    if isinstance(local, str) and local.startswith("#"):
        rebased["$ref"] = base + local[1:]
    return rebased


def _object(properties: dict) -> dict:
    """A JSON schema object with exactly these properties, all required."""
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _calls_text(tool_calls: list[dict]) -> str:
    """Earlier calls as a sentence: with the calls as JSON, small models copy the call instead of answering."""
    sentences = []
    for call in tool_calls:
        arguments = json.dumps(call["function"]["arguments"], ensure_ascii=False)
        sentences.append(f"Calling {call['function']['name']}({arguments}) (call {call['id']}).")
    return " ".join(sentences)


def _plain_history(messages: list[dict]) -> list[dict]:
    """Earlier calls and results for a template without tools, as assistant and user text."""
    names: dict[str, str] = {}
    plain = []
    for message in messages:
        if message.get("tool_calls"):
            names.update((call["id"], call["function"]["name"]) for call in message["tool_calls"])
            text = "\n".join(filter(None, [message.get("content"), _calls_text(message["tool_calls"])]))
            plain.append({"role": "assistant", "content": text})
        elif message["role"] == "tool":
            call_id = message["tool_call_id"]
            name = message.get("name") or names[call_id]
            plain.append({"role": "user", "content": f"Result of {name} (call {call_id}): {message['content']}"})
        else:
            plain.append(message)
    return plain


def _with_system(messages: list[dict], text: str) -> list[dict]:
    """`messages` with `text` appended to their system message, or a system message of its own in front."""
    if messages[0]["role"] == "system":
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]
