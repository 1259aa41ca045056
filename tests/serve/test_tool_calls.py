"""Function calling (`tools`, `tool_choice`) through the `openai` client, and the pure pieces behind it.

The default model's template has no tool format, so its calls are JSON-constrained; a Hermes-style
template (the format of Qwen2.5 and Hermes) on the same weights exercises the template's own format.
"""

from __future__ import annotations

import copy
import json

import jsonschema
import openai
import pytest

from llmkit.models import render_chat_text
from llmkit.models.tool_calls import call_schema, tool_prompt
from llmkit.models.tool_parsers import HermesParser, template_has_tools

MODEL_ID = "smollm2-135m"  # the id tests/serve/conftest.py serves
WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Current weather in a city.", "parameters": WEATHER_PARAMETERS},
}
COORDINATES_PARAMETERS = {"type": "object", "properties": {"place": {"type": "string"}}, "required": ["place"]}
COORDINATES = {
    "type": "function",
    "function": {
        "name": "get_coordinates", "description": "Latitude and longitude of a place.",
        "parameters": COORDINATES_PARAMETERS,
    },
}
ROUTE_PARAMETERS = {  # the shape pydantic gives nested models: local $refs into $defs
    "type": "object",
    "properties": {"stops": {"type": "array", "items": {"$ref": "#/$defs/Stop"}, "minItems": 2, "maxItems": 3}},
    "required": ["stops"],
    "$defs": {"Stop": {"type": "object", "properties": {"place": {"type": "string"}}, "required": ["place"]}},
}
ROUTE = {"type": "function", "function": {"name": "plan_route", "parameters": ROUTE_PARAMETERS}}
TOOLS = [WEATHER, COORDINATES]
PARAMETERS = {
    "get_weather": WEATHER_PARAMETERS, "get_coordinates": COORDINATES_PARAMETERS, "plan_route": ROUTE_PARAMETERS
}
BEIJING = [{"role": "user", "content": "北京今天天气怎么样？用摄氏度。"}]
EARLIER_CALL = {
    "role": "assistant", "content": None,
    "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}],
}
PARIS_ROUND = [
    {"role": "user", "content": "What is the weather in Paris?"},
    EARLIER_CALL,
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21, "sky": "sunny"}'},
]

# A Hermes-style template (the shape of Qwen2.5's): tools in the system turn, calls as <tool_call> blocks.
HERMES_TEMPLATE = """\
{%- if tools %}<|im_start|>system
You may call functions. Their signatures:
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>
For each call, return <tool_call>{"name": <function-name>, "arguments": <args-json-object>}</tool_call><|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == "assistant" and message.tool_calls %}<|im_start|>assistant
{%- for call in message.tool_calls %}
<tool_call>{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}</tool_call>
{%- endfor %}<|im_end|>
{% elif message.role == "tool" %}<|im_start|>user
<tool_response>{{ message.content }}</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def ask(client, messages, **options):
    options = {"temperature": 0, "max_tokens": 64, **options}
    return client.chat.completions.create(model=MODEL_ID, messages=messages, **options)


def assert_valid_calls(message, names=tuple(PARAMETERS)) -> None:
    """Every call has an OpenAI-shaped id, one of `names`, and arguments valid for that tool's schema."""
    assert message.tool_calls
    for call in message.tool_calls:
        assert call.type == "function" and call.id.startswith("call_") and len(call.id) == len("call_") + 24
        assert call.function.name in names
        jsonschema.validate(json.loads(call.function.arguments), PARAMETERS[call.function.name])


# ---- pure pieces --------------------------------------------------------------------------------


def test_call_schema_follows_tool_choice():
    call = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
    other = {"name": "get_coordinates", "arguments": {"place": "Paris"}}
    required = call_schema(TOOLS, "required", parallel=False)
    jsonschema.validate({"tool_calls": [call]}, required)
    for wrong in ({"tool_calls": []}, {"tool_calls": [call, other]}, {"content": "hi"},
                  {"tool_calls": [{**call, "arguments": {"city": "Paris", "unit": "kelvin"}}]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, required)
    jsonschema.validate({"tool_calls": [call, other]}, call_schema(TOOLS, "required", parallel=True))
    auto = call_schema(TOOLS, "auto", parallel=False)
    jsonschema.validate({"content": "hi"}, auto)
    jsonschema.validate({"tool_calls": [other]}, auto)
    named = call_schema(TOOLS, {"type": "function", "function": {"name": "get_coordinates"}}, parallel=False)
    jsonschema.validate({"tool_calls": [other]}, named)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tool_calls": [call]}, named)


def test_call_schema_keeps_local_refs_working():
    schema = call_schema([WEATHER, ROUTE], "required", parallel=False)
    route = {"name": "plan_route", "arguments": {"stops": [{"place": "Paris"}, {"place": "Lyon"}]}}
    jsonschema.validate({"tool_calls": [route]}, schema)
    route["arguments"]["stops"][1] = {"city": "Lyon"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tool_calls": [route]}, schema)


@pytest.mark.slow
def test_templates_without_tools_get_instructions_and_plain_history(smollm):
    assert not template_has_tools(smollm.tokenizer.chat_template) and template_has_tools(HERMES_TEMPLATE)
    messages = [{"role": "system", "content": "Be brief."}, *json.loads(json.dumps(PARIS_ROUND))]
    messages[2]["tool_calls"][0]["function"]["arguments"] = {"city": "Paris", "unit": "celsius"}
    plan = tool_prompt(messages, TOOLS, "required", None, parser=None)
    assert plan.tools is None and plan.schema == call_schema(TOOLS, "required", parallel=False)
    system = plan.messages[0]["content"]
    assert system.startswith("Be brief.") and "get_coordinates" in system and '"enum": ["celsius"' in system
    assert plan.messages[2] == {
        "role": "assistant", "content": 'Calling get_weather({"city": "Paris", "unit": "celsius"}) (call call_1).'
    }
    result = "Result of get_weather (call call_1): " + messages[3]["content"]
    assert plan.messages[3] == {"role": "user", "content": result}
    without_tools = tool_prompt(messages, TOOLS, "none", None, parser=None)
    assert without_tools.schema is None and without_tools.messages[0] == {"role": "system", "content": "Be brief."}
    assert without_tools.messages[1:] == plan.messages[1:]


@pytest.mark.slow
def test_templates_with_tools_render_schemas_and_history_themselves(smollm):
    tokenizer = copy.deepcopy(smollm.tokenizer)
    tokenizer.chat_template = HERMES_TEMPLATE
    messages = json.loads(json.dumps(PARIS_ROUND))
    messages[1]["content"] = ""
    messages[1]["tool_calls"][0]["function"]["arguments"] = {"city": "Paris", "unit": "celsius"}
    plan = tool_prompt(messages, TOOLS, None, None, parser=HermesParser())
    assert plan.tools == TOOLS and plan.schema is None and plan.parallel  # "auto": the model writes blocks freely
    assert isinstance(plan.reader, HermesParser)
    text = render_chat_text(tokenizer, plan.messages, tools=plan.tools)
    assert '"name": "get_coordinates"' in text
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}</tool_call>' in text
    assert '<tool_response>{"temperature": 21, "sky": "sunny"}</tool_response>' in text
    required = tool_prompt(messages, TOOLS, "required", None, HermesParser())
    assert required.schema == call_schema(TOOLS, "required", False)


# ---- the live server, default model (JSON-constrained calls) -----------------------------------


@pytest.mark.slow
def test_required_returns_a_valid_call(client):
    reply = ask(client, BEIJING, tools=TOOLS, tool_choice="required")
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert_valid_calls(choice.message)
    assert len(choice.message.tool_calls) == 1  # one call unless parallel_tool_calls is asked for
    assert reply.usage.completion_tokens > 0


@pytest.mark.slow
def test_named_tool_choice_calls_that_tool(client):
    choice = {"type": "function", "function": {"name": "get_coordinates"}}
    reply = ask(client, [{"role": "user", "content": "Where is Lyon?"}], tools=TOOLS, tool_choice=choice)
    assert reply.choices[0].finish_reason == "tool_calls"
    assert_valid_calls(reply.choices[0].message, names=["get_coordinates"])


@pytest.mark.slow
def test_auto_answers_or_calls_and_none_answers(client):
    auto = ask(client, [{"role": "user", "content": "What is the weather in Paris?"}], tools=TOOLS).choices[0]
    if auto.message.tool_calls:
        assert auto.finish_reason == "tool_calls"
        assert_valid_calls(auto.message)
    else:
        assert auto.finish_reason in ("stop", "length") and isinstance(auto.message.content, str)
    none = ask(client, BEIJING, tools=TOOLS, tool_choice="none", max_tokens=8).choices[0]
    assert none.message.tool_calls is None and none.message.content and none.finish_reason in ("stop", "length")


@pytest.mark.slow
def test_round_trip_call_result_answer(client):
    messages = [{"role": "user", "content": "What is the weather in Paris? Use celsius."}]
    called = ask(client, messages, tools=[WEATHER], tool_choice="required").choices[0].message
    assert_valid_calls(called, names=["get_weather"])
    result = {"city": json.loads(called.tool_calls[0].function.arguments)["city"], "temperature": 21, "sky": "sunny"}
    messages += [called, {"role": "tool", "tool_call_id": called.tool_calls[0].id, "content": json.dumps(result)}]
    answer = ask(client, messages, tools=[WEATHER]).choices[0]
    assert answer.message.tool_calls is None and answer.message.content
    assert answer.finish_reason == "stop"


@pytest.mark.slow
def test_tool_with_local_refs_is_called_by_its_schema(client):
    messages = [{"role": "user", "content": "Plan a route from Paris to Lyon."}]
    choice = ask(client, messages, tools=[ROUTE], tool_choice="required", max_tokens=48).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert_valid_calls(choice.message, names=["plan_route"])


@pytest.mark.slow
def test_stream_delivers_calls_as_tool_call_deltas(client):
    chunks = list(ask(client, BEIJING, tools=TOOLS, tool_choice="required", stream=True, n=2))
    calls: dict[tuple[int, int], dict] = {}
    finish = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                key = (choice.index, delta.index)
                if key not in calls:  # the first delta names the call, with arguments still empty (as OpenAI's)
                    assert delta.id and delta.type == "function" and delta.function.name
                    assert delta.function.arguments == ""
                    calls[key] = {"id": delta.id, "name": delta.function.name, "arguments": "", "pieces": 0}
                else:
                    assert delta.id is None and delta.function.name is None
                    calls[key]["arguments"] += delta.function.arguments
                    calls[key]["pieces"] += 1
            finish[choice.index] = choice.finish_reason or finish.get(choice.index)
    assert finish == {0: "tool_calls", 1: "tool_calls"} and {i for i, _ in calls} == {0, 1}
    assert all(call["pieces"] > 1 for call in calls.values())  # arguments arrive as the model writes them
    assert len({call["id"] for call in calls.values()}) == len(calls)  # each choice its own call ids
    for call in calls.values():
        jsonschema.validate(json.loads(call["arguments"]), PARAMETERS[call["name"]])


@pytest.mark.slow
def test_n_choices_each_call_with_logprobs(client):
    reply = ask(client, BEIJING, tools=[WEATHER], tool_choice="required", n=2, logprobs=True)
    ids = set()
    for choice in reply.choices:
        assert_valid_calls(choice.message, names=["get_weather"])
        assert choice.logprobs.content
        ids.update(call.id for call in choice.message.tool_calls)
    assert len(ids) == 2
    assert reply.usage.completion_tokens == 2 * len(reply.choices[0].logprobs.content)


@pytest.mark.slow
def test_hermes_template_server_calls_through_its_format(start_server, smollm):
    from llmkit.api import LLM
    from llmkit.engine.engine import Engine

    tokenizer = copy.deepcopy(smollm.tokenizer)
    tokenizer.chat_template = HERMES_TEMPLATE
    server = start_server(LLM(Engine(smollm.model, tokenizer, max_batch_size=4, max_seq_len=512)))
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.api_key, max_retries=0, timeout=60) as hermes:
        required = ask(hermes, BEIJING, tools=TOOLS, tool_choice="required").choices[0]
        assert required.finish_reason == "tool_calls"
        assert_valid_calls(required.message)
        auto = ask(hermes, BEIJING, tools=TOOLS, max_tokens=24).choices[0]
        assert auto.message.content or auto.message.tool_calls


# ---- bad input ----------------------------------------------------------------------------------

BAD_REQUESTS = {
    "unknown function": (
        dict(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_time"}}),
        "tool_choice", "'get_time', which is not in tools",
    ),
    "tool_choice without tools": (dict(tool_choice="required"), "tool_choice", "needs tools"),
    "invalid schema": (
        dict(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "no-such-type"}}}]),
        "tools.0.function.parameters", "not a valid JSON schema",
    ),
    "duplicate names": (dict(tools=[WEATHER, WEATHER]), "tools", "repeated: get_weather"),
    "tool message without its call": (
        dict(messages=[*BEIJING, {"role": "tool", "tool_call_id": "call_9", "content": "21"}]),
        "messages", "tool_call_id 'call_9' answers no call",
    ),
    "call without a result": (dict(messages=[*BEIJING, EARLIER_CALL, *BEIJING]), "messages", "call_1 have no result"),
    "arguments not JSON": (
        dict(messages=[*BEIJING, {**EARLIER_CALL, "tool_calls": [{**EARLIER_CALL["tool_calls"][0], "function": {
            "name": "get_weather", "arguments": "city=Paris"}}]}]),
        "messages.1.tool_calls.0.function.arguments", "must be a JSON object",
    ),
    "calls on a user message": (
        dict(messages=[{**BEIJING[0], "tool_calls": EARLIER_CALL["tool_calls"]}]), "messages.0.tool_calls",
        "only assistant messages carry tool_calls",
    ),
    "response_format with tools": (
        dict(tools=TOOLS, response_format={"type": "json_object"}), "response_format", "cannot be combined with tools"
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_tool_requests_are_400s(client, case):
    options, param, message = BAD_REQUESTS[case]
    options = {"messages": BEIJING, **options}
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, **options)
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == param and message in caught.value.body["message"]
