"""Structured output on the embedded model: JSON mode and JSON schemas hold for greedy and sampled rows,
forks, CJK text and ignore_eos; unconstrained batch mates are untouched; bad formats are 400s up front."""

from __future__ import annotations

import json

import jsonschema
import pytest

from llmkit.engine.engine import Engine
from llmkit.engine.params import SamplingParams
from llmkit.errors import InvalidRequestError
from llmkit.models import render_chat

JSON_OBJECT = {"type": "json_object"}

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 18},
        "role": {"type": "string", "enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
            "required": ["city", "country"],
        },
    },
    "required": ["name", "age", "role", "tags", "address"],
}

CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "description": {"type": "string", "maxLength": 40}},
    "required": ["city", "description"],
}


def json_schema(schema: dict, name: str = "answer") -> dict:
    """A response_format in OpenAI's shape."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def chat(tokenizer, question: str) -> list[int]:
    return render_chat(tokenizer, [{"role": "user", "content": question}])


@pytest.fixture(scope="module")
def engine(smollm) -> Engine:
    return Engine(smollm.model, smollm.tokenizer, max_batch_size=8, max_seq_len=512)


@pytest.fixture(scope="module")
def paris(smollm) -> list[int]:
    return chat(smollm.tokenizer, 'Return a JSON object with the keys "city" and "country" for Paris.')


def test_json_object_parses_greedy_sampled_and_forked(engine, smollm, paris) -> None:
    capital = chat(smollm.tokenizer, "What is the capital of France? Answer in JSON.")
    greedy = SamplingParams(max_new_tokens=64, response_format=JSON_OBJECT)
    sampling = {"max_new_tokens": 96, "do_sample": True, "response_format": JSON_OBJECT}
    forked = SamplingParams(seed=0, num_return_sequences=3, **sampling)
    sampled = SamplingParams(seed=1, **sampling)
    results = engine.generate([paris, capital, paris, capital], [greedy, greedy, forked, sampled])
    outputs = [out for r in results for out in r.outputs]
    assert len(outputs) == 6
    for out in outputs:
        assert out.finish_reason == "stop", out.text
        assert isinstance(json.loads(out.text), dict)
        assert out.token_ids[-1] in engine.eos_ids  # the EOS that closed the grammar, not in the text
    assert json.loads(outputs[0].text) == {"city": "Paris", "country": "France"}


def test_json_schema_output_validates(engine, smollm) -> None:
    request = "Make up a user profile for Alice, a 30 year old admin in Berlin, Germany, tagged python and ops."
    prompt = chat(smollm.tokenizer, request)
    params = [
        SamplingParams(max_new_tokens=96, response_format=json_schema(PERSON, "person")),
        SamplingParams(max_new_tokens=96, do_sample=True, seed=0, response_format=json_schema(PERSON, "person")),
    ]
    for result in engine.generate([prompt, prompt], params):
        out = result.outputs[0]
        assert out.finish_reason == "stop", out.text
        person = json.loads(out.text)
        jsonschema.validate(person, PERSON)
        assert list(person) == list(PERSON["properties"])  # properties come in the schema's order


def test_chinese_text_in_a_string_field_stays_valid(engine, smollm) -> None:
    prompt = chat(smollm.tokenizer, "用中文介绍一下北京。请用 JSON 回答。")
    out = engine.generate([prompt], SamplingParams(max_new_tokens=64, response_format=json_schema(CITY)))[0].outputs[0]
    assert out.finish_reason == "stop", out.text
    answer = json.loads(out.text)
    jsonschema.validate(answer, CITY)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in answer["city"] + answer["description"])
    assert "\ufffd" not in out.text


def test_unconstrained_batch_mate_is_untouched(engine, smollm, paris) -> None:
    france = chat(smollm.tokenizer, "What is the capital of France?")
    free = SamplingParams(max_new_tokens=32)
    alone = engine.generate([france], free)[0].outputs[0]
    constrained = SamplingParams(max_new_tokens=32, response_format=JSON_OBJECT)
    together = engine.generate([paris, france], [constrained, free])
    assert together[1].outputs[0].token_ids == alone.token_ids
    assert together[1].outputs[0].text == alone.text
    assert json.loads(together[0].outputs[0].text) == {"city": "Paris", "country": "France"}


def test_ignore_eos_still_ends_when_the_json_is_complete(engine, paris) -> None:
    params = SamplingParams(max_new_tokens=64, ignore_eos=True, response_format=JSON_OBJECT)
    out = engine.generate([paris], params)[0].outputs[0]
    assert out.finish_reason == "stop"
    assert json.loads(out.text) == {"city": "Paris", "country": "France"}


def test_too_few_tokens_give_a_truncated_prefix_with_length(engine, paris) -> None:
    """As with OpenAI: finish_reason "length" means the text is a prefix of JSON, not JSON."""
    out = engine.generate([paris], SamplingParams(max_new_tokens=5, response_format=JSON_OBJECT))[0].outputs[0]
    assert out.finish_reason == "length"
    assert '{"city": "Paris", "country": "France"}'.startswith(out.text)
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.text)


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"type": "frobnicate"}, 'Unsupported type "frobnicate"'),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "missing"),
        ({"type": "string", "pattern": "[a-"}, "Unclosed"),
    ],
)
def test_invalid_schema_is_rejected_before_decoding(engine, paris, schema, reason) -> None:
    params = SamplingParams(response_format=json_schema(schema))
    with pytest.raises(InvalidRequestError, match=f"json_schema.schema cannot be used: .*{reason}"):
        engine.add_request(paris, params)
    with pytest.raises(InvalidRequestError, match=reason):
        engine.generate([paris, paris], [SamplingParams(), params])  # all or nothing
    assert not engine.has_unfinished()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"response_format": {"type": "json_schema"}}, "needs the schema as an object"),
        ({"response_format": {"type": "json_schema", "json_schema": {"type": "object"}}}, "needs the schema"),
        ({"response_format": {"type": "json_object", "json_schema": {"schema": {}}}}, "only read with type"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"response_format": JSON_OBJECT, "num_beams": 2}, "beam search does not support response_format"),
        ({"response_format": JSON_OBJECT, "min_new_tokens": 4}, "cannot be combined with min_new_tokens"),
    ],
)
def test_bad_response_format_parameters_name_the_problem(kwargs, message) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        SamplingParams.create(**kwargs)


def test_text_format_is_unconstrained() -> None:
    assert not SamplingParams(response_format={"type": "text"}).constrained
    assert SamplingParams(response_format=json_schema(CITY)).constrained
