"""One bad request never hurts another; no field is silently dropped; /metrics counts what was served.

Against the live server: out-of-range fields are 400s naming the field (also while other streams decode),
unknown fields are refused by name, output-neutral OpenAI fields are logged, `logit_bias` changes the
answer, abandoned requests stop decoding and count as aborted, and a 429 says when to retry.
"""

from __future__ import annotations

import json
import logging
import socket
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

CHAT = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0}
LONG = {"max_tokens": 400, "ignore_eos": True, "temperature": 0}  # ~20 s of decoding: far longer than any wait here
HUGE = 10**20  # past int64
VOCAB = 49152  # SmolLM2's vocabulary

OUT_OF_RANGE = [
    ({"top_k": HUGE}, "top_k"),
    ({"top_k": VOCAB + 1}, "top_k"),
    ({"stop_token_ids": [HUGE]}, "stop_token_ids"),
    ({"stop_token_ids": [VOCAB]}, "stop_token_ids"),
    ({"stop_token_ids": [-1]}, "stop_token_ids"),
    ({"min_tokens": 2, "stop_token_ids": [2**70]}, "stop_token_ids"),
    ({"min_tokens": 5, "max_tokens": 4}, "min_tokens"),
    ({"seed": 2**64}, "seed"),
    ({"logit_bias": {str(HUGE): 1}}, "logit_bias"),
    ({"logit_bias": {str(VOCAB): 1}}, "logit_bias"),
    ({"logit_bias": {"-1": 1}}, "logit_bias"),
    ({"logit_bias": {"12": 101}}, "logit_bias"),
    ({"logit_bias": {"twelve": 1}}, "logit_bias"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"num_beams": 10**6}, "num_beams"),
    ({"top_logprobs": 10**6, "logprobs": True}, "top_logprobs"),
    ({"best_of": 2}, "best_of"),
    ({"logit_bias_typo": {}}, "logit_bias_typo"),
    ({"messages": [{"role": "user", "content": "Hi", "cache_control": {}}]}, "messages.0.cache_control"),
    ({"stream_options": {"include_usage": True, "continuous_usage_stats": True}}, "stream_options.continuous_usage_stats"),
]


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60) as http:
        yield http


def assert_400(response: httpx.Response, param: str) -> str:
    """A 400 in OpenAI's shape whose `param` is the field at fault (or a part of it); returns its message."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param or error["param"].startswith(f"{param}."), error
    return error["message"]


def scrape(url: str) -> dict[str, float]:
    samples = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def wait_for(condition, timeout: float = 10.0) -> float:
    """Seconds until `condition()` held; fails after `timeout`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.02)
    return time.monotonic() - started


def send_raw(server, path: str, body: dict) -> socket.socket:
    """POST `body` over a bare socket (so the test can walk away from it) and return the open socket."""
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(head.encode() + data)
    return sock


@pytest.mark.parametrize("fields, param", OUT_OF_RANGE, ids=[param for _, param in OUT_OF_RANGE])
def test_out_of_range_and_unknown_chat_fields_are_400s_naming_them(http, fields, param):
    assert_400(http.post("/v1/chat/completions", json={**CHAT, **fields}), param)


def test_an_unknown_field_is_refused_as_openai_does(http):
    message = assert_400(http.post("/v1/chat/completions", json={**CHAT, "frobnicate": 1}), "frobnicate")
    assert "unrecognized request argument supplied: frobnicate" in message
    assert_400(http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2, "guided_json": {}}), "guided_json")
    assert_400(http.post("/v1/embeddings", json={"input": "x", "truncate": True}), "truncate")


@pytest.mark.parametrize("prompt", [[-1], [HUGE], [VOCAB], [[5, 6], [7, VOCAB + 5]]], ids=["negative", "past-int64", "vocab", "second-prompt"])
def test_completion_token_ids_outside_the_vocabulary_are_400(http, prompt):
    assert_400(http.post("/v1/completions", json={"prompt": prompt, "max_tokens": 2}), "prompt")


def test_beam_search_with_logprobs_is_refused_not_answered_empty(http):
    body = {"prompt": "The capital of France is", "max_tokens": 2, "use_beam_search": True, "n": 2, "logprobs": 1}
    response = http.post("/v1/completions", json=body)
    assert response.status_code == 400 and "logprobs" in response.json()["error"]["message"]


def test_messages_echoed_from_a_response_are_accepted_but_their_unread_fields_must_be_empty(http):
    echoed = {"role": "assistant", "content": "Hello!", "refusal": None, "annotations": [], "audio": None,
              "function_call": None, "tool_calls": None}
    turns = [CHAT["messages"][0], echoed, {"role": "user", "content": "Again"}]
    assert http.post("/v1/chat/completions", json={**CHAT, "messages": turns}).status_code == 200
    turns[1] = {**echoed, "refusal": "I cannot"}
    assert_400(http.post("/v1/chat/completions", json={**CHAT, "messages": turns}), "messages.1.refusal")


def test_output_neutral_openai_fields_are_accepted_and_logged(http, caplog):
    caplog.set_level(logging.INFO, logger="llmkit.serve")
    neutral = {"user": "alice", "metadata": {"team": "geo"}, "store": False, "service_tier": "auto"}
    response = http.post("/v1/chat/completions", json={**CHAT, **neutral})
    assert response.status_code == 200
    line = next(r.getMessage() for r in caplog.records if response.json()["id"] in r.getMessage())
    assert json.loads(line[line.index("{"):]) == neutral


def test_logit_bias_steers_greedy_decoding(http, smollm):
    body = {"prompt": "The capital of France is", "max_tokens": 1, "temperature": 0}
    plain = http.post("/v1/completions", json=body).json()["choices"][0]["text"]
    (greedy,) = smollm.tokenizer.encode(plain)
    banned = http.post("/v1/completions", json={**body, "logit_bias": {str(greedy): -100}}).json()
    assert banned["choices"][0]["text"] != plain
    forced_id = smollm.tokenizer.encode(" banana")[0]
    forced = http.post("/v1/completions", json={**body, "logit_bias": {str(forced_id): 100}}).json()
    assert forced["choices"][0]["text"] == smollm.tokenizer.decode([forced_id])


def test_bad_requests_never_disturb_streams_that_are_running(server, http):
    """While two streams decode, every out-of-range field is a 400 and both streams still end with [DONE]."""
    body = {**CHAT, "max_tokens": 24, "ignore_eos": True, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as first, \
            http.stream("POST", "/v1/chat/completions", json={**body, "temperature": 0.8, "seed": 7}) as second:
        streams = [first.iter_lines(), second.iter_lines()]
        for lines in streams:
            assert "assistant" in next(lines)  # admitted and decoding
        for fields, param in OUT_OF_RANGE:
            assert_400(http.post("/v1/chat/completions", json={**CHAT, **fields, "stream": True}), param)
        completion = {"prompt": [1, HUGE], "max_tokens": 2, "stream": True}
        assert_400(http.post("/v1/completions", json=completion), "prompt")
        for lines in streams:
            events = [line for line in lines if line]
            assert events[-1] == "data: [DONE]"
            assert not any('"error"' in event for event in events), events


@pytest.mark.parametrize("route, body", [
    ("/v1/chat/completions", {**CHAT, **LONG}),
    ("/v1/completions", {"prompt": "Once upon a time", **LONG}),
    ("/v1/chat/completions", {**CHAT, **LONG, "stream": True}),
], ids=["chat", "completion", "chat-stream"])
def test_a_client_that_goes_away_aborts_its_request_and_counts_as_aborted(start_server, route, body):
    server = start_server()  # a fresh registry
    sock = send_raw(server, route, body)
    wait_for(lambda: server.engine.batch_size == 1)  # decoding
    sock.close()
    assert wait_for(lambda: server.engine.num_requests == 0) < 5  # aborted, not decoded to the end
    metrics = scrape(server.url)
    assert metrics[f"llmkit_requests_aborted_total{{route={route}}}"] == 1
    assert f"llmkit_requests_total{{route={route},status=2xx}}" not in metrics


def test_a_429_says_when_to_retry_and_its_prompt_is_not_counted(start_server):
    server = start_server(max_queue=1, api_key=None)
    first, second = [1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11]
    with httpx.Client(base_url=server.url, timeout=60) as http:
        with http.stream("POST", "/v1/completions", json={"prompt": first, **LONG, "stream": True}) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("data:")
            refused = http.post("/v1/completions", json={"prompt": second, "max_tokens": 2})
            assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    wait_for(lambda: server.engine.num_requests == 0)
    assert scrape(server.url)["llmkit_prompt_tokens_total{}"] == len(first)
