"""A streamed answer read piece by piece: content first, then each call named once and its arguments in pieces."""

from __future__ import annotations

import json

import pytest

from llmkit.models.tool_call_stream import CallPiece, StreamDelta, ToolCallStream
from llmkit.models.tool_parsers import HermesParser, JsonAnswerParser, Llama3JsonParser, MistralParser, ToolParser

HERMES_ANSWER = (
    'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京", "unit": "celsius"}}\n'
    '</tool_call>\n<tool_call>\n{"name": "get_coordinates", "arguments": {"place": "Paris"}}\n</tool_call>'
)


def feed(parser: ToolParser, pieces: list[str], max_calls: int | None = None) -> list[StreamDelta]:
    """Feed the growing text piece by piece (the last one final); the non-empty deltas."""
    stream, text, deltas = ToolCallStream(parser, max_calls), "", []
    for i, piece in enumerate(pieces):
        text += piece
        delta = stream.feed(text, final=i == len(pieces) - 1)
        if delta.content or delta.calls:
            deltas.append(delta)
    return deltas


def tokens(text: str, size: int = 3) -> list[str]:
    """`text` in pieces of `size` characters, as a tokenizer might cut it."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def sent(deltas: list[StreamDelta]) -> tuple[str, list[CallPiece]]:
    return "".join(d.content for d in deltas), [piece for d in deltas for piece in d.calls]


def assembled(pieces: list[CallPiece]) -> list[tuple[str, str]]:
    """Each call as a client puts it together: the first piece's name, every piece's arguments appended."""
    calls: dict[int, list[str]] = {}
    for piece in pieces:
        if piece.name is not None:
            assert piece.index == len(calls) and piece.arguments == ""  # named once, in order, arguments empty
            calls[piece.index] = [piece.name, ""]
        else:
            calls[piece.index][1] += piece.arguments
    return [tuple(call) for call in calls.values()]


@pytest.mark.parametrize(("parser", "text"), [
    (HermesParser(), HERMES_ANSWER),
    (Llama3JsonParser(), '<|python_tag|>{"name": "get_weather", "parameters": {"city": "北京", "unit": "celsius"}}; '
                         '{"name": "get_coordinates", "parameters": {"place": "Paris"}}'),
    (MistralParser(), '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "北京", "unit": "celsius"}}, '
                      '{"name": "get_coordinates", "arguments": {"place": "Paris"}}]'),
    (MistralParser(), '[TOOL_CALLS]get_weather[ARGS]{"city": "北京", "unit": "celsius"}[TOOL_CALLS]get_coordinates'
                      '[ARGS]{"place": "Paris"}'),
    (JsonAnswerParser(), '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "北京", "unit": "celsius"}}, '
                         '{"name": "get_coordinates", "arguments": {"place": "Paris"}}]}'),
])
def test_calls_stream_as_a_name_then_argument_pieces(parser, text):
    content, pieces = sent(feed(parser, tokens(text)))
    assert content == (parser.parse(text).content or "")
    calls = assembled(pieces)
    assert [(name, json.loads(arguments)) for name, arguments in calls] == [
        ("get_weather", {"city": "北京", "unit": "celsius"}), ("get_coordinates", {"place": "Paris"})
    ]
    assert len(pieces) > 2 * 4  # arguments came in many pieces, not whole


def test_text_streams_before_a_call_and_a_half_written_tag_waits():
    deltas = feed(HermesParser(), ["Let me ", "check.", "\n<tool", "_call>\n{", '"name": "get_weather", ',
                                   '"arguments": {"city"', ': "Paris"}}', "\n</tool_call>"])
    # A space waits for the text after it; "\n<tool" waits, then turns out to open a call
    assert [d.content for d in deltas[:2]] == ["Let me", " check."]
    assert sent(deltas)[0] == "Let me check."
    assert deltas[2].calls == [CallPiece(0, "", "get_weather"), CallPiece(0, '{"city"')]
    assert deltas[3].calls == [CallPiece(0, ': "Paris"}')]


def test_text_that_only_looked_like_a_call_streams_as_content():
    pieces = ["Use ", "<tool", "s> wisely, ", "then ", "<tool_call>", "{not json", " at all"]
    content, calls = sent(feed(HermesParser(), pieces))
    assert content == "".join(pieces) and calls == []
    cut = ["{", '"name": "get_weather", ', '"argum']  # max_tokens came first: the text, whole
    assert sent(feed(Llama3JsonParser(), cut)) == ("".join(cut), [])


def test_constrained_content_streams_unescaped():
    pieces = ['{"content": "It', " is \\", '"sunny\\', '" \\u26', '00"', "}"]
    deltas = feed(JsonAnswerParser(), pieces)
    assert [d.content for d in deltas] == ["It", " is", ' "sunny', '"', " ☀"]  # escapes whole, spaces wait


def test_one_call_when_calls_are_not_parallel():
    calls = assembled(sent(feed(HermesParser(), tokens(HERMES_ANSWER), max_calls=1))[1])
    assert [name for name, _ in calls] == ["get_weather"]
