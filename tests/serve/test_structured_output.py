"""`response_format` through the `openai` client: JSON mode, a JSON schema, and a schema that cannot compile."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

pytestmark = pytest.mark.slow

MODEL_ID = "smollm2-135m"
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def ask(client, content: str, response_format: dict):
    return client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": content}], temperature=0, max_tokens=64,
        response_format=response_format,
    )


def test_json_object_mode_returns_json(client):
    question = 'Answer in JSON, like {"city": "..."}: what is the capital of France?'
    answer = ask(client, question, {"type": "json_object"})
    assert answer.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(answer.choices[0].message.content), dict)


def test_json_schema_output_validates(client):
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    answer = ask(client, "Invent a person: give their name and age in JSON.", response_format)
    assert answer.choices[0].finish_reason == "stop"
    person = json.loads(answer.choices[0].message.content)
    jsonschema.validate(person, PERSON)


def test_invalid_schema_is_a_400(client):
    broken = {"type": "object", "properties": {"age": {"type": "no-such-type"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "broken", "schema": broken}}
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "Anything.", response_format)
    assert caught.value.status_code == 400
    assert caught.value.body["type"] == "invalid_request_error" and caught.value.body["message"]
