"""vLLM's request fields through the live app: each changes the answer as vLLM's does, or is a 400 naming it.

`include_stop_str_in_output`, `skip_special_tokens` and `echo` on both routes; `add_generation_prompt`,
`continue_final_message` and `chat_template_kwargs` on chat. Greedy decoding and a few tokens throughout.
"""

from __future__ import annotations

import copy
import json

import httpx
import pytest

from llmkit.models import render_chat

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"
QUESTION = {"role": "user", "content": "What is the capital of France?"}
OPENING = {"role": "assistant", "content": "The capital of France is"}
GREEDY = {"temperature": 0, "max_tokens": 6}
IM_START = 1  # SmolLM2's <|im_start|>: a special token that is not EOS
# SmolLM2's own template, with the switch Qwen3 and SmolLM3 read from chat_template_kwargs.
THINKING_TEMPLATE = (
    "{%- if enable_thinking is defined and not enable_thinking %}<|im_start|>system\n/no_think<|im_end|>\n{% endif %}"
)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60) as http:
        yield http


def complete(http: httpx.Client, **fields) -> dict:
    response = http.post("/v1/completions", json={"prompt": PROMPT, **GREEDY, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def chat(http: httpx.Client, messages: list[dict], **fields) -> dict:
    response = http.post("/v1/chat/completions", json={"messages": messages, **GREEDY, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def streamed_text(http: httpx.Client, route: str, body: dict) -> str:
    """The text a streamed response's chunks add up to (chat: content deltas; completions: text)."""
    text = []
    with http.stream("POST", route, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line.removeprefix("data: "))["choices"]:
                    text.append(choice.get("text") or (choice.get("delta") or {}).get("content") or "")
    return "".join(text)


def assert_400(response: httpx.Response, param: str) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    return error["message"]


def test_include_stop_str_in_output_keeps_the_stop_string(http):
    plain = complete(http)["choices"][0]["text"]
    stop = plain.split()[1]  # a word the greedy answer writes
    cut = complete(http, stop=[stop])["choices"][0]
    kept = complete(http, stop=[stop], include_stop_str_in_output=True)["choices"][0]
    assert cut["finish_reason"] == kept["finish_reason"] == "stop"
    assert kept["text"] == cut["text"] + stop and plain.startswith(kept["text"])
    body = {"prompt": PROMPT, **GREEDY, "stop": [stop], "include_stop_str_in_output": True}
    assert streamed_text(http, "/v1/completions", body) == kept["text"]


def test_skip_special_tokens_false_returns_them(http):
    forced = {"logit_bias": {str(IM_START): 100}, "max_tokens": 2}
    assert complete(http, **forced)["choices"][0]["text"] == ""
    assert complete(http, **forced, skip_special_tokens=False)["choices"][0]["text"] == "<|im_start|>" * 2


def test_completion_echo_prepends_each_prompt(http, server):
    plain = complete(http)["choices"][0]["text"]
    assert complete(http, echo=True)["choices"][0]["text"] == PROMPT + plain
    two = complete(http, prompt=[PROMPT, "Paris is"], echo=True)["choices"]
    assert two[0]["text"] == PROMPT + plain and two[1]["text"].startswith("Paris is")
    ids = server.engine.tokenizer.encode(PROMPT)
    assert complete(http, prompt=ids, echo=True)["choices"][0]["text"] == server.engine.tokenizer.decode(ids) + plain
    assert streamed_text(http, "/v1/completions", {"prompt": PROMPT, **GREEDY, "echo": True}) == PROMPT + plain


def test_completion_echo_with_logprobs_is_refused(http):
    response = http.post("/v1/completions", json={"prompt": PROMPT, **GREEDY, "echo": True, "logprobs": 1})
    assert "prompt's logprobs" in assert_400(response, "echo")


def test_add_generation_prompt_false_leaves_the_assistant_turn_unopened(http):
    opened = chat(http, [QUESTION])["usage"]["prompt_tokens"]
    closed = chat(http, [QUESTION], add_generation_prompt=False)["usage"]["prompt_tokens"]
    tokenized = http.post("/tokenize", json={"messages": [QUESTION], "add_generation_prompt": False}).json()
    assert closed == tokenized["count"] < opened


def test_continue_final_message_continues_the_assistant_turn_and_echo_shows_it(http, server):
    messages = [QUESTION, OPENING]
    continued = chat(http, messages, add_generation_prompt=False, continue_final_message=True)
    prompt = render_chat(server.engine.tokenizer, messages, add_generation_prompt=False, continue_final_message=True)
    assert continued["usage"]["prompt_tokens"] == len(prompt)
    same = complete(http, prompt=prompt)["choices"][0]["text"]  # the open prompt, continued as plain text
    assert continued["choices"][0]["message"]["content"] == same
    echoed = chat(http, messages, add_generation_prompt=False, continue_final_message=True, echo=True)
    assert echoed["choices"][0]["message"]["content"] == OPENING["content"] + same
    body = {"messages": messages, **GREEDY, "add_generation_prompt": False, "continue_final_message": True, "echo": True}
    assert streamed_text(http, "/v1/chat/completions", body) == OPENING["content"] + same
    answer = chat(http, [QUESTION])["choices"][0]["message"]["content"]
    assert chat(http, [QUESTION], echo=True)["choices"][0]["message"]["content"] == answer  # the user's: not echoed


def test_continue_final_message_needs_add_generation_prompt_false(http):
    body = {"messages": [QUESTION, OPENING], **GREEDY, "continue_final_message": True}
    assert "add_generation_prompt" in assert_400(http.post("/v1/chat/completions", json=body), "continue_final_message")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"enable_thinking": False}, "does not read 'enable_thinking'"),
        ({"add_generation_prompt": False}, "set by llmkit"),
        ({"messages": []}, "set by llmkit"),
    ],
)
def test_chat_template_kwargs_the_template_does_not_read_are_refused(http, kwargs, message):
    body = {"messages": [QUESTION], **GREEDY, "chat_template_kwargs": kwargs}
    response = http.post("/v1/chat/completions", json=body)
    assert message in assert_400(response, f"chat_template_kwargs.{next(iter(kwargs))}")


def test_chat_template_kwargs_reach_the_template(start_server, smollm):
    from llmkit.api import LLM
    from llmkit.engine.engine import Engine

    tokenizer = copy.deepcopy(smollm.tokenizer)
    tokenizer.chat_template = THINKING_TEMPLATE + tokenizer.chat_template
    server = start_server(LLM(Engine(smollm.model, tokenizer, max_batch_size=2, max_seq_len=256)))
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60) as http:
        thinking = chat(http, [QUESTION], chat_template_kwargs={"enable_thinking": True})["usage"]["prompt_tokens"]
        quiet = chat(http, [QUESTION], chat_template_kwargs={"enable_thinking": False})["usage"]["prompt_tokens"]
    no_think = render_chat(tokenizer, [QUESTION], template_kwargs={"enable_thinking": False})
    assert quiet == len(no_think) > thinking
