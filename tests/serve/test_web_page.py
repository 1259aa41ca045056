"""The web chat page at `GET /`: served without a key, self-contained, and speaking the API as the server does.

These tests read the page and replay its requests over HTTP; a headless-browser test that clicks through it
comes later.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

pytestmark = pytest.mark.slow

IDS = ["model", "system", "temperature", "top-p", "max-tokens", "api-key", "input", "send", "stop", "clear",
       "messages", "error"]


@pytest.fixture(scope="module")
def page(server) -> str:
    response = httpx.get(f"{server.url}/", timeout=30)  # no Authorization header: the page is public
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def test_page_has_the_controls_a_browser_test_finds_by_id(page):
    for element_id in IDS:
        assert f'id="{element_id}"' in page, element_id
    assert ".message.assistant" in page  # each answer is a `.message.assistant` element


def test_page_loads_nothing_from_outside(page):
    assert not re.search(r"https?://", page), "the page must work offline: no absolute URLs"
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", page, re.IGNORECASE)
    assert "@import" not in page and "url(" not in page
    assert "<style>" in page and "<script>" in page  # everything inline


def test_page_streams_chat_completions_and_lists_models(page):
    assert '"/v1/chat/completions"' in page and "stream: true" in page
    assert '"/v1/models"' in page
    assert "AbortController" in page and "[DONE]" in page and "Bearer " in page


def test_page_is_not_in_the_openapi_schema(server):
    paths = httpx.get(f"{server.url}/openapi.json", timeout=30).json()["paths"]
    assert "/" not in paths and "/v1/chat/completions" in paths


def test_models_without_the_key_give_the_error_message_the_page_shows(server):
    response = httpx.get(f"{server.url}/v1/models", timeout=30)
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["error"]["message"]


def test_the_pages_streaming_request_gets_data_lines_then_done(server):
    """The body the page builds, and its way of reading SSE: `data:` lines of JSON deltas until `[DONE]`."""
    body = {
        "model": server.model_id,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}],
        "stream": True, "temperature": 0.7, "top_p": 1, "max_tokens": 8,
    }
    headers = {"Authorization": f"Bearer {server.api_key}"}
    events, done = [], False
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            events.append(json.loads(data))
    assert done and events and not any("error" in event for event in events)
    text = "".join(event["choices"][0]["delta"].get("content") or "" for event in events)
    assert text
