"""Tool calls in each family's format through the server's routes, streamed as OpenAI streams them.

The 135M model does not write these formats on demand, so the engine behind the app here answers every request
with fixed text pieces (as a model would produce them, token by token); everything from the prompt to the SSE
chunks is the server's own. `--tool-call-parser` is checked from the command line.
"""

from __future__ import annotations

import copy
import json

import openai
import pytest
from typer.testing import CliRunner

from llmkit.cli.main import app
from llmkit.engine.outputs import CompletionOutput, RequestOutput
from llmkit.engine.sampling_defaults import NEUTRAL
from llmkit.models.tool_parsers import ToolParserError

pytestmark = pytest.mark.slow

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather", "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
QUESTION = [{"role": "user", "content": "Weather in Paris and Lyon?"}]
QWEN_TEMPLATE = """{%- if tools %}<|im_start|>system
<tools>{% for tool in tools %}{{ tool | tojson }}{% endfor %}</tools>
For each call, return <tool_call>{"name": <function-name>, "arguments": <args-json-object>}</tool_call><|im_end|>
{% endif %}{% for message in messages %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endfor %}<|im_start|>assistant
"""
HERMES_PIECES = [
    "Let", " me", " check", ".\n", "<tool", "_call", ">\n", '{"name', '": "get', "_weather", '", "', "arguments",
    '": {"', "city", '": "', "Paris", '"}}', "\n</", "tool_call", ">\n<tool_call>", '\n{"name": "get_weather", ',
    '"arguments": {"city": "', "Lyon", '"}}\n', "</tool_call>",
]
MISTRAL_PIECES = ["[TOOL_CALLS]", "get", "_weather", "[ARGS]", '{"', "city", '": "', "Paris", '"}']


class ScriptedEngine:
    """A `ServingEngine` whose every answer is `pieces`, one per step, ending with "stop"; it keeps the
    `SamplingParams` each request was decoded with."""

    max_seq_len, adapters, num_requests, queue_depth, batch_size = 512, {}, 0, 0, 0
    prefix_stats, backend, sampling_defaults = None, "scripted", NEUTRAL

    def __init__(self, tokenizer, pieces: list[str]) -> None:
        self.tokenizer, self.pieces, self.params = tokenizer, pieces, []

    def check_request(self, prompt_token_ids, params, adapter=None) -> None:
        self.params.append(params)

    async def generate(self, prompt_token_ids, params, request_id=None, adapter=None):
        text = ""
        for step, piece in enumerate(self.pieces, start=1):
            text += piece
            reason = "stop" if step == len(self.pieces) else None
            out = CompletionOutput(0, text, list(range(step)), reason, delta=piece)
            yield RequestOutput(request_id, list(prompt_token_ids), [out], finished=reason is not None)

    async def load_adapter(self, name, path) -> None:
        raise NotImplementedError

    async def unload_adapter(self, name) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        pass


@pytest.fixture(scope="module")
def scripted(start_server, smollm):
    """`scripted(pieces, template, special=(), **options)`: an openai client of a server whose engine answers
    `pieces`, its tokenizer using `template` with `special` tokens added; and that engine."""

    def start(pieces, template=QWEN_TEMPLATE, special=(), **options):
        tokenizer = copy.deepcopy(smollm.tokenizer)
        tokenizer.chat_template = template
        if special:
            tokenizer.add_special_tokens({"additional_special_tokens": list(special)})
        engine = ScriptedEngine(tokenizer, pieces)
        server = start_server(lambda: engine, **options)
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.api_key, max_retries=0, timeout=30)
        return client, engine

    return start


def streamed(client, **options) -> tuple[str, list[dict], list]:
    """Stream a chat request: its content, each call as the client assembles it, and every tool-call delta."""
    chunks = list(client.chat.completions.create(model="smollm2-135m", messages=QUESTION, stream=True, **options))
    content, calls, deltas, reasons = "", {}, [], []
    for chunk in chunks:
        choice = chunk.choices[0]
        content += choice.delta.content or ""
        reasons.append(choice.finish_reason)
        for delta in choice.delta.tool_calls or []:
            deltas.append(delta)
            call = calls.setdefault(delta.index, {"id": delta.id, "name": delta.function.name, "arguments": ""})
            call["arguments"] += delta.function.arguments
    assert [r for r in reasons if r] == [reasons[-1]]  # one finish reason, on the last chunk
    return content, [calls[i] | {"finish_reason": reasons[-1]} for i in sorted(calls)], deltas


def test_hermes_calls_stream_as_openai_streams_them(scripted):
    client, _ = scripted(HERMES_PIECES)
    content, calls, deltas = streamed(client, tools=[WEATHER])
    assert content == "Let me check."
    assert [(call["name"], json.loads(call["arguments"])) for call in calls] == [
        ("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Lyon"})
    ]
    assert calls[0]["finish_reason"] == "tool_calls"
    firsts = [delta for i, delta in enumerate(deltas) if delta.index not in {d.index for d in deltas[:i]}]
    for first in firsts:  # names the call: an OpenAI-shaped id, its type and name, no arguments yet
        assert first.id.startswith("call_") and len(first.id) == len("call_") + 24 and first.type == "function"
        assert first.function.name == "get_weather" and first.function.arguments == ""
    rest = [delta for delta in deltas if delta not in firsts]
    assert len(rest) > 4 and all(d.id is None and d.type is None and d.function.name is None for d in rest)
    assert calls[0]["id"] != calls[1]["id"]

    whole = client.chat.completions.create(model="smollm2-135m", messages=QUESTION, tools=[WEATHER]).choices[0]
    assert whole.message.content == "Let me check." and whole.finish_reason == "tool_calls"
    assert [json.loads(call.function.arguments) for call in whole.message.tool_calls] == [
        {"city": "Paris"}, {"city": "Lyon"}
    ]


def test_named_parser_reads_its_format_and_keeps_its_special_tokens(scripted):
    client, engine = scripted(MISTRAL_PIECES, special=["[TOOL_CALLS]"], tool_call_parser="mistral")
    content, calls, _ = streamed(client, tools=[WEATHER])
    assert content == "" and [(c["name"], c["arguments"], c["finish_reason"]) for c in calls] == [
        ("get_weather", '{"city": "Paris"}', "tool_calls")
    ]
    assert engine.params[-1].skip_special_tokens is False  # else decoding would drop [TOOL_CALLS]
    client.chat.completions.create(
        model="smollm2-135m", messages=QUESTION, tools=[WEATHER], extra_body={"skip_special_tokens": True}
    )
    assert engine.params[-1].skip_special_tokens is True  # asked for by name: honoured
    client.chat.completions.create(model="smollm2-135m", messages=QUESTION)
    assert engine.params[-1].skip_special_tokens is True  # no tools, nothing to keep


def test_text_that_is_not_a_call_streams_as_content(scripted):
    pieces = ["Sure", ": ", "<tool_call>", "{get_weather ", "Paris}", "</tool_call>"]
    client, _ = scripted(pieces)
    content, calls, _ = streamed(client, tools=[WEATHER])
    assert content == "".join(pieces) and calls == []
    whole = client.chat.completions.create(model="smollm2-135m", messages=QUESTION, tools=[WEATHER]).choices[0]
    assert whole.message.content == "".join(pieces) and whole.finish_reason == "stop"


def test_serve_refuses_an_unknown_parser_or_one_with_nothing_to_parse():
    unknown = CliRunner().invoke(app, ["serve", "--tool-call-parser", "llama3", "--port", "0"])
    assert isinstance(unknown.exception, ToolParserError)
    assert "use one of hermes, llama3_json, mistral, qwen" in str(unknown.exception)
    # The default model's template renders no tools: a named parser would have nothing to read
    no_tools = CliRunner().invoke(app, ["serve", "--tool-call-parser", "hermes", "--port", "0", "--dtype", "float32"])
    assert isinstance(no_tools.exception, ToolParserError) and "--chat-template" in str(no_tools.exception)
