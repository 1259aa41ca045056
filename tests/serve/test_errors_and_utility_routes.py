"""Raw HTTP against the live server: /health, /tokenize, /detokenize, and every error class in OpenAI's shape."""

from __future__ import annotations

import json

import httpx
import pytest

pytestmark = pytest.mark.slow

CHAT = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0}


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60) as http:
        yield http


def assert_error(response: httpx.Response, status: int, *, param: str | None = None, says: str = "") -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if param is not None:
        assert error["param"] == param
    assert says.lower() in error["message"].lower()
    return error


def test_health_needs_no_key(server):
    response = httpx.get(f"{server.url}/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_tokenize_detokenize_round_trip(http, smollm):
    tokens = http.post("/tokenize", json={"prompt": "Hello world"}).json()
    assert tokens["tokens"] == smollm.tokenizer.encode("Hello world")
    assert tokens["count"] == len(tokens["tokens"]) and tokens["max_model_len"] == 512
    assert http.post("/detokenize", json={"tokens": tokens["tokens"]}).json() == {"prompt": "Hello world"}
    chat = http.post("/tokenize", json={"messages": CHAT["messages"]}).json()
    assert chat["count"] > tokens["count"]  # the chat template adds its turn markers
    assert_error(http.post("/detokenize", json={"tokens": [10**9]}), 400, param="tokens")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-key"}])
def test_v1_routes_need_the_api_key(server, headers):
    for method, path in [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions")]:
        response = httpx.request(method, f"{server.url}{path}", headers=headers, json=CHAT)
        error = assert_error(response, 401, says="API key")
        assert error["code"] == "invalid_api_key"


def test_unknown_model_is_404(http):
    assert_error(http.get("/v1/models/gpt-4"), 404, param="model", says="gpt-4")
    assert_error(http.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4"}), 404, param="model")
    assert_error(http.post("/v1/completions", json={"model": "gpt-4", "prompt": "x"}), 404, param="model")
    assert_error(http.get("/no/such/route"), 404)


@pytest.mark.parametrize(
    "body, param, says",
    [
        ({**CHAT, "temperature": "hot"}, "temperature", "temperature"),
        ({**CHAT, "max_tokens": -1}, "max_tokens", "max_tokens"),
        ({**CHAT, "messages": []}, "messages", "messages"),
        ({**CHAT, "messages": "hello"}, "messages", "messages"),
        ({**CHAT, "messages": [{"role": "wizard", "content": "x"}]}, None, "role"),
        ({**CHAT, "n": 1000}, "n", "n"),
        ({**CHAT, "n": 64, "temperature": 1.0}, None, "max_batch_size"),
        ({**CHAT, "top_p": 1.5}, "top_p", "top_p"),
        ({**CHAT, "stop": [""]}, None, "stop"),
        ({**CHAT, "max_tokens": 100_000}, "max_tokens", "context"),
        ({**CHAT, "top_logprobs": 3}, "top_logprobs", "logprobs"),
        ({**CHAT, "messages": [{"role": "user", "content": "word " * 600}]}, None, "context"),
    ],
    ids=["wrong-type", "negative-max-tokens", "empty-messages", "messages-not-list", "bad-role", "huge-n",
         "n-over-batch", "top-p", "empty-stop", "max-tokens-over-context", "top-logprobs-alone",
         "prompt-over-context"],
)
def test_bad_chat_requests_are_400(http, body, param, says):
    assert_error(http.post("/v1/chat/completions", json=body), 400, param=param, says=says)


def test_bad_completion_requests_are_400(http):
    url = "/v1/completions"
    assert_error(http.post(url, json={"prompt": []}), 400, param="prompt")
    assert_error(http.post(url, json={"prompt": [1, "a"]}), 400, param="prompt")
    assert_error(http.post(url, json={"prompt": list(range(600)), "max_tokens": 4}), 400, says="context")
    assert_error(http.post(url, json={"prompt": "x", "logprobs": 50}), 400, param="logprobs")
    assert_error(http.post(url, json={"max_tokens": 4}), 400, param="prompt", says="required")


def test_response_format(http):
    from llmkit.engine.params import SamplingParams

    json_mode = {**CHAT, "response_format": {"type": "json_object"}, "max_tokens": 8}
    if "response_format" not in SamplingParams.model_fields:  # the engine cannot constrain decoding yet
        assert_error(http.post("/v1/chat/completions", json=json_mode), 400, param="response_format")
        return
    assert http.post("/v1/chat/completions", json=json_mode).json()["choices"][0]["message"]["content"].startswith("{")
    no_schema = {**CHAT, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}
    assert_error(http.post("/v1/chat/completions", json=no_schema), 400, says="schema")


def test_malformed_json_is_400(http):
    response = http.post("/v1/chat/completions", content=b'{"messages": [', headers={"Content-Type": "application/json"})
    assert_error(response, 400, says="JSON")
    assert_error(http.post("/v1/chat/completions", content=b"[1, 2]", headers={"Content-Type": "application/json"}), 400)


def test_greedy_n_copies_the_answer(http):
    body = http.post("/v1/chat/completions", json={**CHAT, "n": 2}).json()
    first, second = body["choices"]
    assert (first["index"], second["index"]) == (0, 1)
    assert first["message"] == second["message"]
    one = http.post("/v1/chat/completions", json=CHAT).json()
    assert body["usage"]["completion_tokens"] == 2 * one["usage"]["completion_tokens"]


def test_body_too_large_is_413(http):
    huge = {**CHAT, "messages": [{"role": "user", "content": "x" * 1_100_000}]}
    assert_error(http.post("/v1/chat/completions", json=huge), 413, says="larger")

    def chunked():
        yield json.dumps(huge).encode()

    response = http.post("/v1/chat/completions", content=chunked(), headers={"Content-Type": "application/json"})
    assert_error(response, 413)


def test_model_without_chat_template_is_400_naming_the_fix(http, smollm, monkeypatch):
    monkeypatch.setattr(smollm.tokenizer, "chat_template", None)
    assert_error(http.post("/v1/chat/completions", json=CHAT), 400, param="messages", says="--chat-template")


def test_full_queue_is_429(start_server):
    live = start_server(max_queue=1, api_key=None)
    with httpx.Client(base_url=live.url, timeout=60) as http:
        long = {**CHAT, "max_tokens": 200, "ignore_eos": True, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=long) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()  # kept: dropping the iterator closes the response (and aborts)
            assert "assistant" in next(lines)  # admitted and decoding
            assert_error(http.post("/v1/chat/completions", json=CHAT), 429, says="retry")
            assert http.get("/health").json()["requests_in_flight"] == 1  # answers while the engine is busy


def test_stream_events_are_openai_sse(http):
    with http.stream("POST", "/v1/completions", json={"prompt": "Hi", "max_tokens": 3, "temperature": 0, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert all(json.loads(e[6:])["object"] == "text_completion" for e in events[:-1])
