"""Each family's tool-call format read from whole answers, the parser picked from a chat template or by name."""

from __future__ import annotations

import pytest

from llmkit.models.tool_parsers import (
    Answer,
    HermesParser,
    JsonAnswerParser,
    Llama3JsonParser,
    MistralParser,
    ToolCall,
    ToolParserError,
    pick_tool_parser,
    tool_parser,
)

WEATHER = ToolCall("get_weather", '{"city": "北京", "unit": "celsius"}')
PARIS = ToolCall("get_coordinates", '{"place": "Paris"}')

# Template excerpts in each family's shape: each reads `tools` and shows how its model writes a call.
QWEN_TEMPLATE = """{%- if tools %}<|im_start|>system
# Tools
<tools>{% for tool in tools %}{{ tool | tojson }}{% endfor %}</tools>
For each function call, return a json object within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% endif %}{% for message in messages %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endfor %}<|im_start|>assistant
"""
LLAMA31_TEMPLATE = """<|begin_of_text|>
{%- for message in messages %}<|start_header_id|>{{ message.role }}<|end_header_id|>

{% for call in message.tool_calls or [] %}
{%- if builtin_tools is defined %}<|python_tag|>{{ call.function.name }}.call()
{%- else %}{"name": "{{ call.function.name }}", "parameters": {{ call.function.arguments | tojson }}}{% endif %}
{%- else %}{{ message.content }}{% endfor %}<|eot_id|>
{%- endfor %}
{%- if tools %}Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.
{% for tool in tools %}{{ tool | tojson }}{% endfor %}{% endif %}<|start_header_id|>assistant<|end_header_id|>
"""
MISTRAL_TEMPLATE = """{{ bos_token }}{% for message in messages %}{% if message.role == "user" %}
{%- if tools and loop.last %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}
{{- "[INST]" + message.content + "[/INST]" }}
{%- elif message.tool_calls %}[TOOL_CALLS]{{ message.tool_calls | tojson }}{{ eos_token }}
{%- else %}{{ message.content }}{{ eos_token }}{% endif %}{% endfor %}"""
TOOLS_WITHOUT_FORMAT = "{% for message in messages %}{{ message.content }}{% endfor %}{{ tools or '' }}"
NO_TOOLS = "{% for message in messages %}{{ message.role }}: {{ message.content }}\n{% endfor %}"


@pytest.mark.parametrize(("parser", "text", "content"), [
    (HermesParser(),  # Qwen 2.5 / Hermes 2 Pro: a block per call, on lines of their own
     'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京", "unit": "celsius"}}\n'
     '</tool_call>\n<tool_call>\n{"name": "get_coordinates", "arguments": {"place": "Paris"}}\n</tool_call>',
     "Let me check."),
    (Llama3JsonParser(),  # Llama 3.1 answers with the JSON alone, arguments under "parameters"
     '{"name": "get_weather", "parameters": {"city": "北京", "unit": "celsius"}}; '
     '{"type": "function", "name": "get_coordinates", "parameters": {"place": "Paris"}}', None),
    (Llama3JsonParser(),  # Llama 3.2 may open with <|python_tag|> (kept when special tokens are)
     'Checking.<|python_tag|>{"name": "get_weather", "arguments": {"city": "北京", "unit": "celsius"}};'
     '{"name": "get_coordinates", "arguments": {"place": "Paris"}}', "Checking."),
    (MistralParser(),  # Mistral 7B v0.3: one JSON list
     '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "北京", "unit": "celsius"}}, '
     '{"name": "get_coordinates", "arguments": {"place": "Paris"}}]', None),
    (MistralParser(),  # Mistral Small 3.2 and later: name[ARGS]{…} per call
     'Sure.[TOOL_CALLS]get_weather[ARGS]{"city": "北京", "unit": "celsius"}[TOOL_CALLS]get_coordinates[ARGS]'
     '{"place": "Paris"}', "Sure."),
    (MistralParser(), '[TOOL_CALLS]get_weather{"city": "北京", "unit": "celsius"}[TOOL_CALLS]get_coordinates'
     '[CALL_ID]a1B2c3D4e[ARGS]{"place": "Paris"}', None),
    (JsonAnswerParser(),  # what decoding is constrained to for a template without a tool format
     '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "北京", "unit": "celsius"}}, '
     '{"name": "get_coordinates", "arguments": {"place": "Paris"}}]}', None),
])
def test_calls_in_each_family_format(parser, text, content):
    assert parser.parse(text) == Answer(content, [WEATHER, PARIS])


@pytest.mark.parametrize("parser", [HermesParser(), Llama3JsonParser(), MistralParser(), JsonAnswerParser()])
def test_answers_without_calls_are_content(parser):
    assert parser.parse("Paris is sunny, 21 °C.") == Answer("Paris is sunny, 21 °C.")


MALFORMED = {
    "hermes": (HermesParser(), [
        '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call> sorry',  # not JSON
        '<tool_call>{"name": "get_weather"}</tool_call>',  # no arguments
        '<tool_call>{"name": "get_weather", "arguments": "city=Paris"}</tool_call>',  # arguments not an object
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Par',  # cut off
        '<tool_call>{"name": "get_weather", "arguments": {}} and then </tool_call>',
    ]),
    "llama3_json": (Llama3JsonParser(), [
        '{"answer": 42}',  # JSON, but no call
        '{"name": "get_weather", "parameters": {"city": "Paris"}} {"name": "get_weather"}',
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Par',
        '{"name": "get_weather", "parameters": {"city": Paris}}',
    ]),
    "mistral": (MistralParser(), [
        '[TOOL_CALLS] Sorry, I cannot call tools.',
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}] trailing',
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}',  # list not closed
        '[TOOL_CALLS]get weather, please[ARGS]{"city": "Paris"}',
    ]),
    "json": (JsonAnswerParser(), [
        '{"tool_calls": [{"name": "get_coordinates", "arguments": {"place": "上',  # max_tokens came first
        '{"content": "It is sun',
        '{"tool_calls": []}',
        '{"weather": "sunny"}',
    ]),
}


@pytest.mark.parametrize("family", MALFORMED)
def test_malformed_calls_are_returned_as_plain_content(family):
    parser, texts = MALFORMED[family]
    for text in texts:
        assert parser.parse(text) == Answer(text), text


def test_hermes_block_may_lack_its_closing_tag_at_the_end():
    unclosed = '<tool_call>{"name": "get_coordinates", "arguments": {"place": "Paris"}}'
    assert HermesParser().parse(unclosed) == Answer(None, [PARIS])


def test_constrained_content_is_unescaped():
    assert JsonAnswerParser().parse('{"content": "It is \\"sunny\\"\\n\\u2600"}') == Answer('It is "sunny"\n☀')


@pytest.mark.parametrize(("template", "parser"), [
    (QWEN_TEMPLATE, HermesParser),
    (LLAMA31_TEMPLATE, Llama3JsonParser),
    (MISTRAL_TEMPLATE, MistralParser),
    (TOOLS_WITHOUT_FORMAT, HermesParser),  # reads tools but shows no format: Hermes, the most common
])
def test_parser_is_picked_from_the_chat_template(template, parser):
    assert type(pick_tool_parser(template)) is parser


def test_templates_without_tools_get_no_parser_and_refuse_a_named_one():
    assert pick_tool_parser(NO_TOOLS) is None and pick_tool_parser(None) is None
    with pytest.raises(ToolParserError, match="does not render tools.*--chat-template"):
        pick_tool_parser(NO_TOOLS, "hermes")


def test_parser_named_as_vllm_names_it():
    assert type(pick_tool_parser(QWEN_TEMPLATE, "mistral")) is MistralParser  # the name wins over the template
    assert type(tool_parser("qwen")) is HermesParser and type(tool_parser("llama3_json")) is Llama3JsonParser
    with pytest.raises(ToolParserError, match="unknown tool-call parser 'llama3': use one of hermes, llama3_json, "
                                              "mistral, qwen"):
        tool_parser("llama3")


@pytest.mark.slow
def test_special_token_markers_are_kept_only_where_decoding_drops_them(smollm):
    import copy

    tokenizer = copy.deepcopy(smollm.tokenizer)
    assert not MistralParser().needs_special_tokens(tokenizer)  # plain text in this vocabulary
    tokenizer.add_special_tokens({"additional_special_tokens": ["[TOOL_CALLS]"]})
    assert MistralParser().needs_special_tokens(tokenizer)
    assert not HermesParser().needs_special_tokens(tokenizer) and not JsonAnswerParser().needs_special_tokens(tokenizer)
