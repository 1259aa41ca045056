"""The official `openai` client against the live server: models, chat and completions, plain and streamed."""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.slow

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
MODEL_ID = "smollm2-135m"  # the id tests/serve/conftest.py serves


@pytest.fixture(scope="module")
def greedy_answer(client):
    return client.chat.completions.create(model=MODEL_ID, messages=FRANCE, temperature=0, max_tokens=16)


def prompt_tokens(server, messages) -> int:
    response = httpx.post(
        f"{server.url}/tokenize", json={"messages": messages}, headers={"Authorization": f"Bearer {server.api_key}"}
    )
    return response.json()["count"]


def test_models_list(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL_ID, "all-minilm-l6-v2"]  # the chat model, then the embedding one
    assert client.models.retrieve(MODEL_ID).id == MODEL_ID


def test_chat_greedy_answers_and_counts_usage(greedy_answer, server):
    choice = greedy_answer.choices[0]
    assert greedy_answer.object == "chat.completion" and greedy_answer.model == MODEL_ID
    assert choice.message.role == "assistant"
    assert "Paris" in choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = greedy_answer.usage
    assert usage.prompt_tokens == prompt_tokens(server, FRANCE)
    assert 0 < usage.completion_tokens <= 16
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_stream_matches_the_plain_answer(client, greedy_answer):
    chunks = list(
        client.chat.completions.create(
            model=MODEL_ID, messages=FRANCE, temperature=0, max_tokens=16, stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    *content_chunks, usage_chunk = chunks
    assert usage_chunk.choices == [] and usage_chunk.usage == greedy_answer.usage
    assert [c.choices[0].finish_reason for c in content_chunks].count(None) == len(content_chunks) - 1
    assert content_chunks[-1].choices[0].finish_reason == greedy_answer.choices[0].finish_reason
    text = "".join(c.choices[0].delta.content or "" for c in content_chunks)
    assert text == greedy_answer.choices[0].message.content
    assert sum(1 for c in content_chunks if c.choices[0].delta.content) > 1  # really streamed


def test_chat_n2_sums_completion_tokens(client):
    answer = client.chat.completions.create(
        model=MODEL_ID, messages=FRANCE, n=2, temperature=1.0, seed=3, max_tokens=8, logprobs=True
    )
    assert sorted(c.index for c in answer.choices) == [0, 1]
    generated = sum(len(c.logprobs.content) for c in answer.choices)
    assert answer.usage.completion_tokens == generated


def test_chat_stop_string_ends_the_answer(client, greedy_answer):
    answer = client.chat.completions.create(
        model=MODEL_ID, messages=FRANCE, temperature=0, max_tokens=16, stop=["Paris"]
    )
    content = answer.choices[0].message.content
    assert "Paris" not in content
    assert greedy_answer.choices[0].message.content.startswith(content)
    assert answer.choices[0].finish_reason == "stop"


def test_chat_seed_reproduces_a_sample(client):
    def sample(seed):
        return client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "Tell me a story."}], temperature=1.0,
            seed=seed, max_tokens=10,
        ).choices[0].message.content

    first = sample(7)
    assert sample(7) == first


def test_chat_logprobs_with_top_logprobs(client, greedy_answer):
    answer = client.chat.completions.create(
        model=MODEL_ID, messages=FRANCE, temperature=0, max_tokens=8, logprobs=True, top_logprobs=3
    )
    entries = answer.choices[0].logprobs.content
    assert len(entries) == answer.usage.completion_tokens
    for entry in entries:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token  # greedy takes the most likely token
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob
    # The end-of-turn token counts as generated (as in vLLM), so it closes the logprobs but not the text.
    assert "".join(e.token for e in entries).startswith(answer.choices[0].message.content)


def test_completions_plain_and_stream(client, smollm):
    prompt = "The capital of France is"
    plain = client.completions.create(model=MODEL_ID, prompt=prompt, temperature=0, max_tokens=8)
    assert plain.object == "text_completion"
    assert plain.usage.prompt_tokens == len(smollm.tokenizer.encode(prompt))
    assert 0 < plain.usage.completion_tokens <= 8
    chunks = list(
        client.completions.create(
            model=MODEL_ID, prompt=prompt, temperature=0, max_tokens=8, stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage
    assert "".join(c.choices[0].text for c in chunks[:-1]) == plain.choices[0].text
    assert chunks[-2].choices[0].finish_reason == plain.choices[0].finish_reason


def test_completions_many_prompts_token_ids_and_logprobs(client, smollm):
    ids = smollm.tokenizer.encode("Hello")
    answer = client.completions.create(
        model=MODEL_ID, prompt=["One, two,", "Hello"], temperature=0, max_tokens=4, logprobs=2
    )
    assert [c.index for c in answer.choices] == [0, 1]
    assert all(len(c.logprobs.tokens) == len(c.logprobs.top_logprobs) for c in answer.choices)
    by_ids = client.completions.create(model=MODEL_ID, prompt=ids, temperature=0, max_tokens=4)
    assert by_ids.choices[0].text == answer.choices[1].text
    assert answer.usage.completion_tokens == sum(len(c.logprobs.tokens) for c in answer.choices)


def test_streamed_completion_logprobs_continue_the_text_offsets(client):
    kwargs = dict(model="smollm2-135m", prompt="The capital of France is", max_tokens=8, temperature=0, logprobs=1)
    whole = client.completions.create(**kwargs).choices[0].logprobs
    offsets, tokens = [], []
    for chunk in client.completions.create(**kwargs, stream=True):
        if chunk.choices and chunk.choices[0].logprobs:
            offsets += chunk.choices[0].logprobs.text_offset
            tokens += chunk.choices[0].logprobs.tokens
    assert tokens == whole.tokens
    assert offsets == whole.text_offset == [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]


def test_disconnect_aborts_the_request(client, server):
    stream = client.chat.completions.create(
        model=MODEL_ID, messages=FRANCE, max_tokens=400, stream=True, extra_body={"ignore_eos": True}
    )
    for _, _chunk in zip(range(4), stream):
        pass
    stream.close()
    deadline = time.monotonic() + 10
    while server.engine.num_requests or server.engine.engine.has_unfinished():
        assert time.monotonic() < deadline, "the engine kept decoding for a client that left"
        time.sleep(0.05)
