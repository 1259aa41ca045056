"""`datagen.generate` against a scripted OpenAI-compatible endpoint (FastAPI under uvicorn on a loopback port).

The script says, per record (keyed by the request's seed), what the endpoint answers in turn: an HTTP
error status, text that is not JSON, an answer cut off by max_tokens, or a valid record. Backoff
waits are recorded instead of slept.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from llmkit.datagen import generate as generate_module
from llmkit.datagen.generate import (
    EndpointError,
    GenerationProgress,
    backoff_delay,
    generate,
)
from llmkit.datagen.spec import GenerateSpec
from llmkit.jsonl import read_jsonl

SEED = 100


@dataclass
class Script:
    """Replies by record index, consumed in order; an index with none left gets a valid Chinese record."""

    replies: dict[int, list] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)
    delay_s: float = 0.0
    in_flight: int = 0
    most_in_flight: int = 0
    models_status: int = 200

    def reply(self, index: int):
        queue = self.replies.get(index, [])
        return queue.pop(0) if queue else json.dumps({"title": f"长城 {index}", "n": index}, ensure_ascii=False)


def fake_endpoint(current: dict[str, Script]) -> FastAPI:
    """The endpoint, answering from `current["script"]` (each test puts in a fresh one)."""
    app = FastAPI()

    @app.get("/v1/models")
    async def models():
        script = current["script"]
        if script.models_status != 200:
            return JSONResponse({"error": {"message": "bad key", "type": "auth"}}, status_code=script.models_status)
        return {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "t"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        script = current["script"]
        script.requests.append(body)
        script.in_flight += 1
        script.most_in_flight = max(script.most_in_flight, script.in_flight)
        try:
            await asyncio.sleep(script.delay_s)
            reply = script.reply(body["seed"] - SEED)
        finally:
            script.in_flight -= 1
        if isinstance(reply, int):
            headers = {"retry-after": "7"} if reply == 429 else {}
            error = {"error": {"message": f"scripted {reply}", "type": "scripted"}}
            return JSONResponse(error, status_code=reply, headers=headers)
        text, finish_reason = reply if isinstance(reply, tuple) else (reply, "stop")
        return {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14},
        }

    return app


@pytest.fixture(scope="module")
def endpoint():
    """(base URL, {"script": Script}): one server for the module."""
    import uvicorn

    current = {"script": Script()}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(fake_endpoint(current), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", current
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def script(endpoint) -> Script:
    """A fresh script for this test."""
    endpoint[1]["script"] = Script()
    return endpoint[1]["script"]


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The backoff delays the run asked for, without waiting them."""
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(generate_module, "_sleep", record)
    return delays


def make_spec(base_url: str, tmp_path: Path, **values) -> GenerateSpec:
    settings = {
        "endpoint": {"base_url": base_url},
        "prompt": {"system": "JSON only.", "template": "Record about {{ topic }} ({{ n }})."},
        "fields": {"topic": {"type": "choice", "values": ["长城", "故宫"]}, "n": {"type": "integer", "min": 1, "max": 9}},
        "count": 4, "seed": SEED, "concurrency": 2, "max_retries": 3, "output": str(tmp_path / "out.jsonl"),
        **values,
    }
    return GenerateSpec.model_validate(settings)


def indices(path: Path) -> list[int]:
    return sorted(record["_meta"]["index"] for record in read_jsonl(path))


def test_records_carry_their_fields_seed_and_usage_and_requests_use_json_mode(endpoint, script, tmp_path, waits):
    spec = make_spec(endpoint[0], tmp_path)
    summary = generate(spec)
    assert (summary.done, summary.already_done, summary.failed, summary.model) == (4, 0, {}, "fake-model")
    assert (summary.prompt_tokens, summary.completion_tokens) == (40, 16)
    records = sorted(read_jsonl(spec.output), key=lambda record: record["_meta"]["index"])
    assert [record["_meta"]["seed"] for record in records] == [100, 101, 102, 103]
    first = records[0]
    assert first["title"] == "长城 0" and set(first["_meta"]["fields"]) == {"topic", "n"}
    assert first["_meta"]["usage"] == {"prompt_tokens": 10, "completion_tokens": 4} and first["_meta"]["attempts"] == 1
    request = next(body for body in script.requests if body["seed"] == SEED)
    fields = first["_meta"]["fields"]
    assert request["messages"] == [{"role": "system", "content": "JSON only."},
                                   {"role": "user", "content": f"Record about {fields['topic']} ({fields['n']})."}]
    assert request["response_format"] == {"type": "json_object"} and request["model"] == "fake-model"


def test_chinese_is_written_as_it_is_not_escaped(endpoint, script, tmp_path, waits):
    spec = make_spec(endpoint[0], tmp_path, count=1)
    generate(spec)
    text = spec.output.read_text(encoding="utf-8")
    assert '"title": "长城 0"' in text and "\\u" not in text


def test_429_500_and_bad_json_are_retried_with_growing_backoff(endpoint, script, tmp_path, waits):
    script.replies[0] = [429, 500, "this is not JSON", ('{"title": "cut', "length")]
    summary = generate(make_spec(endpoint[0], tmp_path, count=1, max_retries=4))
    assert summary.done == 1 and not summary.failed
    assert summary.retried == {"rate_limited": 1, "server_error": 1, "invalid_json": 1, "truncated": 1}
    assert waits[0] == 7.0  # the 429's Retry-After
    assert waits[1] <= waits[2] <= waits[3] and 0.5 <= waits[1] <= 2.0
    assert next(read_jsonl(tmp_path / "out.jsonl"))["_meta"]["attempts"] == 5
    assert len(script.requests) == 5


def test_backoff_doubles_up_to_a_cap_and_honours_retry_after():
    assert all(2 ** (attempt - 1) / 2 <= backoff_delay(attempt) <= 2 ** (attempt - 1) for attempt in (1, 2, 3, 4))
    assert backoff_delay(30) <= generate_module.BACKOFF_CAP_S
    assert backoff_delay(1, retry_after=3.0) == 3.0 and backoff_delay(1, retry_after=900) == generate_module.BACKOFF_CAP_S


def test_failed_records_go_to_the_failed_file_by_cause_and_the_next_run_fills_them(endpoint, script, tmp_path, waits):
    script.replies[1] = ["nope", "still nope"]
    script.replies[2] = [400]
    script.replies[3] = ["[1, 2]", "[3]"]
    spec = make_spec(endpoint[0], tmp_path, max_retries=1)
    summary = generate(spec)
    assert summary.done == 1 and summary.failed == {"invalid_json": 1, "http_400": 1, "not_an_object": 1}
    assert summary.retried == {"invalid_json": 1, "not_an_object": 1}  # a 400 is not retried
    assert indices(spec.output) == [0]
    failed = {line["_meta"]["index"]: line["_meta"] for line in read_jsonl(spec.failed_output)}
    assert set(failed) == {1, 2, 3}
    assert failed[1]["cause"] == "invalid_json" and failed[1]["output"] == "still nope" and failed[1]["attempts"] == 2
    assert failed[2]["cause"] == "http_400" and "scripted 400" in failed[2]["error"] and failed[2]["attempts"] == 1
    assert failed[3]["seed"] == SEED + 3 and set(failed[3]["fields"]) == {"topic", "n"}

    again = generate(spec)
    assert (again.done, again.already_done, again.failed) == (3, 1, {})
    assert indices(spec.output) == [0, 1, 2, 3] and not spec.failed_output.exists()


def test_schema_mode_sends_the_schema_and_retries_answers_that_break_it(endpoint, script, tmp_path, waits):
    schema = {"type": "object", "properties": {"title": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["title", "n"]}
    script.replies[0] = ['{"title": "长城"}', '{"title": "长城", "n": "one"}']
    summary = generate(make_spec(endpoint[0], tmp_path, count=1, schema=schema))
    assert summary.retried == {"schema_mismatch": 2} and summary.done == 1
    assert "'n' is a required property" in summary.first_error["schema_mismatch"]
    sent = script.requests[0]["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "record", "schema": schema, "strict": True}}


def test_resume_after_a_crash_fills_exactly_the_missing_indices(endpoint, script, tmp_path, waits):
    spec = make_spec(endpoint[0], tmp_path, count=6)
    earlier = [
        '{"title": "old 0", "_meta": {"index": 0, "seed": 100}}\n',
        '{"title": "old 2", "_meta": {"index": 2, "seed": 102}}\n',
        '{"title": "old 3", "_meta": {"ind',  # the line being written when the run was killed
    ]
    spec.output.write_text("".join(earlier), encoding="utf-8")
    summary = generate(spec)
    assert (summary.already_done, summary.done) == (2, 4)
    assert sorted(body["seed"] - SEED for body in script.requests) == [1, 3, 4, 5]
    lines = spec.output.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines[:2] == earlier[:2]
    assert indices(spec.output) == [0, 1, 2, 3, 4, 5]

    script.requests.clear()
    assert generate(spec).already_done == 6 and script.requests == []  # nothing left: no request at all


def test_concurrency_is_bounded(endpoint, script, tmp_path, waits):
    script.delay_s = 0.05
    generate(make_spec(endpoint[0], tmp_path, count=8, concurrency=3))
    assert script.most_in_flight == 3


def test_progress_reports_done_and_failed_out_of_the_total(endpoint, script, tmp_path, waits):
    script.replies[1] = [422]
    reports: list[GenerationProgress] = []
    generate(make_spec(endpoint[0], tmp_path, count=3), on_progress=reports.append)
    assert reports[0] == GenerationProgress(done=0, failed=0, total=3)
    assert reports[-1] == GenerationProgress(done=2, failed=1, total=3)


def test_an_unreachable_endpoint_is_one_clear_error_before_any_work(tmp_path, waits):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    spec = make_spec(f"http://127.0.0.1:{closed}/v1", tmp_path)
    with pytest.raises(EndpointError, match=rf"cannot reach http://127.0.0.1:{closed}/v1/ .*fix endpoint.base_url"):
        generate(spec)
    assert not spec.output.exists() and waits == []


def test_a_refused_api_key_stops_the_run(endpoint, script, tmp_path, waits):
    script.models_status = 401
    with pytest.raises(EndpointError, match="refused the API key"):
        generate(make_spec(endpoint[0], tmp_path))
    assert script.requests == []


def test_a_model_the_endpoint_does_not_have_stops_the_run_keeping_finished_records(endpoint, script, tmp_path, waits):
    script.replies[2] = [404]
    spec = make_spec(endpoint[0], tmp_path, count=6, concurrency=1)
    with pytest.raises(EndpointError, match="HTTP 404: scripted 404"):
        generate(spec)
    assert indices(spec.output) == [0, 1]


def test_a_missing_api_key_variable_is_named(endpoint, script, tmp_path, monkeypatch):
    monkeypatch.delenv("LLMKIT_TEST_NO_SUCH_KEY", raising=False)
    spec = make_spec(endpoint[0], tmp_path, endpoint={"base_url": endpoint[0], "api_key_env": "LLMKIT_TEST_NO_SUCH_KEY"})
    with pytest.raises(EndpointError, match="LLMKIT_TEST_NO_SUCH_KEY is not set"):
        generate(spec)
