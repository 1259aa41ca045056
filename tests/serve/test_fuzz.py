"""Schemathesis over the live server's /openapi.json: no request it makes gets a 5xx, every 4xx is OpenAI's error.

Generation is real (the embedded SmolLM2 on CPU), so a hook caps what one request may cost: a few new
tokens and at most two sequences. Cases are seeded and derandomized: every run sends the same ones.
Hand-written requests below cover what schemathesis does not send: bodies that are not JSON objects,
routes outside the schema, and the inputs the fuzz found that used to be 500s.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis

from llmkit.hub.registry import HUB_ID

pytestmark = pytest.mark.slow

MAX_TOKENS = 4
MAX_SEQUENCES = 2
CAPS = {"max_tokens": MAX_TOKENS, "max_completion_tokens": MAX_TOKENS, "n": MAX_SEQUENCES, "num_beams": MAX_SEQUENCES}
GENERATING = {"/v1/chat/completions", "/v1/completions"}
CONFIG = {
    "seed": 20240601,
    "generation": {"mode": "all", "max-examples": 30, "deterministic": True, "database": "none"},
    "suppress-health-check": ["all"],
    "output": {"sanitization": {"enabled": False}},  # the reproducing curl keeps max_tokens and the test key
    # The server parses leniently (pydantic's lax mode reads `false` as 0) and refuses schema-valid requests
    # it cannot serve (a prompt over the context, n over the batch size): neither is a bug.
    "checks": {"positive_data_acceptance": {"enabled": False}, "negative_data_rejection": {"enabled": False}},
}
# Schema-valid requests only: a body that is not JSON is refused (400) before the key is checked.
KEYLESS_CONFIG = {
    **CONFIG,
    "generation": {**CONFIG["generation"], "mode": "positive"},
    "phases": {"examples": {"enabled": False}, "coverage": {"enabled": False}},
}
CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": MAX_TOKENS}


VOCAB = 49152  # SmolLM2's vocabulary
# Every generated generation body also gets one of these (where it left the fields out), so the pass sends the
# integer fields that index the vocabulary at their bounds, and just past them.
AT_BOUNDS = [
    {"top_k": VOCAB}, {"top_k": -1}, {"top_k": VOCAB + 1}, {"top_k": 2**63},
    {"stop_token_ids": [0, VOCAB - 1]}, {"stop_token_ids": [VOCAB]}, {"stop_token_ids": [2**64]},
    {"logit_bias": {"0": -100, str(VOCAB - 1): 100}}, {"logit_bias": {str(VOCAB): 1}}, {"logit_bias": {"1": 100.5}},
    {"min_tokens": MAX_TOKENS, "stop_token_ids": [2]},
]
_bounds = itertools.cycle(AT_BOUNDS)


def capped(body: Any) -> Any:
    """A generation body with max_tokens set (its default fills the context), every cost field capped, and the
    vocabulary-indexing fields it left out set at (or past) their bounds."""
    if not isinstance(body, dict):
        return body
    body = {**next(_bounds), **body}
    if body.get("max_tokens") is None:
        body["max_tokens"] = MAX_TOKENS
    for field, cap in CAPS.items():
        value = body.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap:
            body[field] = cap
    return body


def offline(body: Any) -> Any:
    """An embeddings body without a hub id for `model`: the server would try to download it (503 offline)."""
    if isinstance(body, dict) and isinstance(body.get("model"), str) and HUB_ID.match(body["model"]):
        return {key: value for key, value in body.items() if key != "model"}
    return body


def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    """Schemathesis hook: cheap generation requests, no hub downloads; other bodies go as generated."""
    path = context.operation.path if context.operation is not None else None
    if path in GENERATING:
        return capped(body)
    if path == "/v1/embeddings":
        return offline(body)
    return body


def assert_openai_error(body: Any) -> None:
    """`body` is exactly OpenAI's `{"error": {"message", "type", "param", "code"}}`, with a message."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    assert all(error[key] is None or isinstance(error[key], str) for key in ("param", "code")), error


def openai_error_shape(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """Schemathesis check: every 4xx body is OpenAI's error."""
    if 400 <= response.status_code < 500:
        assert_openai_error(response.json())


def load_schema(url: str, config: dict[str, Any]) -> schemathesis.BaseSchema:
    """The server's OpenAPI document under `config`, with the cost-capping hook."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=schemathesis.Config.from_dict(config))
    schema.hook(map_body)
    return schema


@pytest.fixture(scope="module")
def api_schema(server) -> schemathesis.BaseSchema:
    return load_schema(server.url, CONFIG)


@pytest.fixture(scope="module")
def keyless_schema(server) -> schemathesis.BaseSchema:
    return load_schema(server.url, KEYLESS_CONFIG)


@pytest.fixture(autouse=True)
def lazy_schema_node_id(request: pytest.FixtureRequest) -> None:
    """Schemathesis 4.32's lazy schemas read `node._nodeid`, which pytest 9.2 no longer has: restore it."""
    request.node._nodeid = request.node.nodeid


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60) as http:
        yield http


@schemathesis.pytest.from_fixture("api_schema").parametrize()
def test_generated_requests(case: schemathesis.Case, server) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {server.api_key}"}, additional_checks=[openai_error_shape], timeout=60
    )


@schemathesis.pytest.from_fixture("keyless_schema").parametrize()
def test_generated_requests_without_the_key(case: schemathesis.Case) -> None:
    response = case.call(timeout=60)
    case.validate_response(response, additional_checks=[openai_error_shape])
    if "401" in case.operation.definition.raw["responses"]:  # the routes behind the API key document it
        # A path no route matches (a model id with a newline) is the router's 404, before the key is read.
        assert response.status_code == 401 or response.json()["error"]["message"] == "Not Found", response.text


NOT_OBJECTS = {
    "malformed": (b'{"prompt": [', "application/json"),
    "array": (b'[{"prompt": "Hi"}]', "application/json"),
    "string": (b'"Hi"', "application/json"),
    "null": (b"null", "application/json"),
    "empty": (b"", "application/json"),
    "not-utf8": (b'{"prompt": "\xff"}', "application/json"),
    "too-deep": (b"[" * 100_000, "application/json"),
    "form": (b"prompt=Hi", "application/x-www-form-urlencoded"),
}
TESTED_ELSEWHERE = {("/v1/chat/completions", "malformed"), ("/v1/chat/completions", "array")}
BODY_ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/tokenize", "/detokenize"]


@pytest.mark.parametrize(
    "route, kind",
    [(route, kind) for route in BODY_ROUTES for kind in NOT_OBJECTS if (route, kind) not in TESTED_ELSEWHERE],
)
def test_bodies_that_are_not_json_objects_are_400(http, route, kind):
    content, content_type = NOT_OBJECTS[kind]
    response = http.post(route, content=content, headers={"Content-Type": content_type})
    assert response.status_code == 400, response.text
    assert_openai_error(response.json())


@pytest.mark.parametrize(
    "route, body, param",
    [
        ("/v1/completions", {"prompt": "Hi", "max_tokens": -1}, "max_tokens"),
        ("/v1/completions", {"prompt": "Hi", "n": 10**6}, "n"),
        ("/v1/completions", {"prompt": 5}, "prompt"),
        ("/v1/completions", {"prompt": "Hi", "stop": 5}, "stop"),
        ("/v1/chat/completions", {**CHAT, "max_completion_tokens": -1}, "max_completion_tokens"),
        ("/v1/chat/completions", {**CHAT, "num_beams": 10**6}, "num_beams"),
        ("/v1/embeddings", {"input": 5}, "input"),
        ("/v1/embeddings", {"input": "Hi", "encoding_format": "hex"}, "encoding_format"),
        ("/tokenize", {"prompt": ["Hi"]}, "prompt"),
        ("/detokenize", {"tokens": "Hi"}, "tokens"),
        # What the fuzz found: each was a 500, and the seed killed the engine thread (every later request hung).
        ("/v1/completions", {"prompt": "Hi", "seed": 2**64}, "seed"),
        ("/v1/completions", {"prompt": "Hi", "repetition_penalty": 5e-324}, "repetition_penalty"),
        ("/v1/completions", {"prompt": "Hi", "num_beams": 2, "length_penalty": 1e308}, "length_penalty"),
        ("/v1/completions", {"prompt": "Hi\ud800"}, "prompt"),
        ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "\ud800"}]}, "messages.0.content"),
        ("/v1/embeddings", {"input": ["Hi", "\ud800"]}, "input"),
        ("/tokenize", {"prompt": "\ud800"}, "prompt"),
        ("/v1/load_adapter", {"lora_name": "a", "lora_path": "0" * 300}, "lora_path"),
    ],
    ids=["negative-max-tokens", "huge-n", "prompt-not-text", "stop-not-text", "negative-max-completion-tokens",
         "huge-num-beams", "input-not-text", "unknown-encoding", "tokenize-list", "tokens-not-list",
         "seed-over-int64", "tiny-repetition-penalty", "huge-length-penalty", "surrogate-prompt",
         "surrogate-message", "surrogate-input", "surrogate-tokenize", "lora-path-name-too-long"],
)
def test_bad_fields_are_400_naming_the_field(http, route, body, param):
    # json.dumps escapes the lone surrogates, which httpx's own encoder cannot write as UTF-8
    response = http.post(route, content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert_openai_error(response.json())
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize("fields", [
    {"top_k": VOCAB}, {"top_k": -1}, {"stop_token_ids": [0, VOCAB - 1]}, {"logit_bias": {"0": -100, str(VOCAB - 1): 100}},
    {"min_tokens": MAX_TOKENS, "stop_token_ids": [2]}, {"seed": 2**63 - 1}, {"seed": -(2**63)},
], ids=["top-k-vocab", "top-k-off", "stop-ids-ends", "logit-bias-ends", "min-tokens-max", "seed-max", "seed-min"])
def test_fields_at_their_bounds_are_served(http, fields):
    body = {"prompt": "The capital of France is", "max_tokens": MAX_TOKENS, "temperature": 0.7, **fields}
    response = http.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text


def test_tiny_temperature_decodes_greedily(http):
    """Dividing logits by a temperature of 5e-324 made NaN probabilities (a 500): it now decodes as 0 does."""
    body = {"prompt": "The capital of France is", "max_tokens": MAX_TOKENS, "n": MAX_SEQUENCES}
    greedy, tiny = (http.post("/v1/completions", json={**body, "temperature": t}) for t in (0.0, 5e-324))
    assert greedy.status_code == tiny.status_code == 200, tiny.text
    assert [c["text"] for c in tiny.json()["choices"]] == [c["text"] for c in greedy.json()["choices"]]


def test_routes_outside_the_schema(server, http):
    page = httpx.get(f"{server.url}/", params={"q": "\x00<b>"}, headers={"Authorization": "Bearer wrong"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for method, path in [("POST", "/"), ("DELETE", "/v1/chat/completions"), ("PUT", "/metrics")]:
        response = http.request(method, path)
        assert response.status_code == 405 and "allow" in response.headers, response.text
        assert_openai_error(response.json())
