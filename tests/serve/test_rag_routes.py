"""Knowledge bases on the server: `POST /v1/rag/{kb}/query`, and `rag:{kb}` chat models through the openai client."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from llmkit.rag.answer import NOT_FOUND

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rag"
QUESTION = "Who conquered England in 1066?"
OFF_TOPIC = "How long should sourdough bread rise before baking?"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A store holding knowledge base `examples` built from examples/rag/docs (shared by the test modules that use
    it: a later module's run finds every file unchanged)."""
    from llmkit.rag.knowledge_base import KnowledgeBase

    location = tmp_path_factory.getbasetemp() / "rag-examples"
    kb = KnowledgeBase.open("examples", location, create=True)
    assert not kb.index([EXAMPLES / "docs"]).failed
    kb.close()
    return location


@pytest.fixture(scope="module")
def rag_server(start_server, smollm, store):
    """The default model with a context long enough for four retrieved chunks, and the example store."""
    from llmkit.api import LLM
    from llmkit.engine.engine import Engine

    return start_server(
        LLM(Engine(smollm.model, smollm.tokenizer, max_batch_size=2, max_seq_len=2048)), rag_store=str(store)
    )


@pytest.fixture(scope="module")
def http(rag_server):
    headers = {"Authorization": f"Bearer {rag_server.api_key}"}
    with httpx.Client(base_url=rag_server.url, headers=headers, timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def client(rag_server):
    with openai.OpenAI(
        base_url=f"{rag_server.url}/v1", api_key=rag_server.api_key, max_retries=0, timeout=120
    ) as client:
        yield client


def assert_error(response: httpx.Response, status: int, *, param: str | None = None, says: str = "") -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}[status]
    if param is not None:
        assert error["param"] == param
    assert says.lower() in error["message"].lower()
    return error


def test_query_returns_ranked_chunks_with_their_sources(http):
    response = http.post("/v1/rag/examples/query", json={"query": QUESTION, "k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "rag.query" and body["kb"] == "examples"
    data = body["data"]
    assert [chunk["index"] for chunk in data] == [1, 2, 3]
    assert [chunk["score"] for chunk in data] == sorted((chunk["score"] for chunk in data), reverse=True)
    top = data[0]
    assert Path(top["source"]["path"]).name == "normans.md" and top["source"]["heading"] == "The Normans"
    assert "1066" in top["text"] and -1 <= top["similarity"] <= 1
    diverse = http.post("/v1/rag/examples/query", json={"query": QUESTION, "k": 3, "mmr": 0.5}).json()["data"]
    assert len(diverse) == 3 and diverse[0]["text"] == top["text"]


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_query_filters_by_source_and_date(http, mode):
    query = {"query": "What is a Turing machine and who conquered England?", "k": 6, "mode": mode}
    html = http.post("/v1/rag/examples/query", json={**query, "sources": ["*.html"]}).json()["data"]
    assert html and {Path(c["source"]["path"]).name for c in html} == {"computational_complexity_theory.html"}
    markdown = http.post("/v1/rag/examples/query", json={**query, "sources": ["docs/*.md"]}).json()["data"]
    assert markdown and {Path(c["source"]["path"]).name for c in markdown} == {"normans.md"}
    assert http.post("/v1/rag/examples/query", json={**query, "before": "2000-01-01"}).json()["data"] == []
    assert len(http.post("/v1/rag/examples/query", json={**query, "after": "2000-01-01"}).json()["data"]) == 6


def test_query_min_similarity_drops_unrelated_chunks(http):
    data = http.post("/v1/rag/examples/query", json={"query": OFF_TOPIC, "k": 5}).json()["data"]
    assert len(data) == 5 and max(c["similarity"] for c in data) < 0.25
    assert http.post("/v1/rag/examples/query", json={"query": OFF_TOPIC, "min_similarity": 0.25}).json()["data"] == []


def test_query_unknown_kb_is_404(http):
    assert_error(http.post("/v1/rag/nothing-here/query", json={"query": QUESTION}), 404, says="nothing-here")


def test_unknown_kb_404s_list_the_knowledge_bases_and_never_the_store(http, client, store):
    """Clients learn which knowledge bases there are, by name; where the server keeps them stays private."""
    error = assert_error(http.post("/v1/rag/nothing-here/query", json={"query": QUESTION}), 404)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="rag:nothing-here", messages=[{"role": "user", "content": QUESTION}])
    for message in (error["message"], caught.value.body["message"]):
        assert "'nothing-here' (knowledge bases: examples)" in message
        assert str(store) not in message and store.name not in message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"query": QUESTION, "k": 0}, "k"),
        ({"query": QUESTION, "k": 1000}, "k"),
        ({"query": ""}, "query"),
        ({"query": QUESTION, "mode": "fuzzy"}, "mode"),
        ({"query": QUESTION, "mmr": 1.5}, "mmr"),
        ({"query": QUESTION, "after": "last tuesday"}, "after"),
        ({"k": 3}, "query"),
    ],
)
def test_query_bad_bodies_are_400_naming_the_field(http, body, param):
    assert_error(http.post("/v1/rag/examples/query", json=body), 400, param=param)


def test_query_blank_query_and_bad_kb_name_are_400(http):
    assert_error(http.post("/v1/rag/examples/query", json={"query": "   "}), 400, says="empty")
    assert_error(http.post("/v1/rag/bad.name/query", json={"query": QUESTION}), 400, says="bad knowledge base name")


def test_query_needs_the_api_key(rag_server):
    response = httpx.post(f"{rag_server.url}/v1/rag/examples/query", json={"query": QUESTION})
    assert_error(response, 401)


@pytest.fixture(scope="module")
def grounded_answer(client):
    return client.chat.completions.create(
        model="rag:examples", messages=[{"role": "user", "content": QUESTION}], max_tokens=32, temperature=0
    )


def test_rag_model_answers_with_its_sources(grounded_answer):
    assert grounded_answer.model == "rag:examples"
    answer = grounded_answer.choices[0].message.content
    assert answer and answer != NOT_FOUND
    assert grounded_answer.usage.completion_tokens > 0 and grounded_answer.usage.prompt_tokens > 300
    sources = grounded_answer.model_extra["sources"]
    assert [s["index"] for s in sources] == list(range(1, len(sources) + 1)) and 1 <= len(sources) <= 4
    assert Path(sources[0]["source"]["path"]).name == "normans.md" and "1066" in sources[0]["text"]
    assert all(s["similarity"] >= 0.25 for s in sources)


def test_rag_model_streams_the_same_answer(client, grounded_answer):
    stream = client.chat.completions.create(
        model="rag:examples",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=32,
        temperature=0,
        stream=True,
    )
    chunks = list(stream)
    assert chunks and chunks[0].choices[0].delta.role == "assistant"
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == grounded_answer.choices[0].message.content
    )
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert {c.model for c in chunks} == {"rag:examples"}  # as the plain answer and the not-found stream name it


def test_rag_model_says_not_found_without_generating(client):
    response = client.chat.completions.create(model="rag:examples", messages=[{"role": "user", "content": OFF_TOPIC}])
    assert response.choices[0].message.content == NOT_FOUND
    assert response.choices[0].finish_reason == "stop"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens, response.usage.total_tokens) == (0, 0, 0)
    assert response.model == "rag:examples" and response.model_extra["sources"] == []

    chunks = list(
        client.chat.completions.create(
            model="rag:examples", messages=[{"role": "user", "content": OFF_TOPIC}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == NOT_FOUND
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_rag_model_reads_a_question_sent_as_text_parts(client):
    """The chat models take content as a list of text parts (as many clients send it); so must rag models."""
    parts = [
        {"type": "text", "text": "How long should sourdough bread rise "},
        {"type": "text", "text": "before baking?"},
    ]
    response = client.chat.completions.create(model="rag:examples", messages=[{"role": "user", "content": parts}])
    assert response.choices[0].message.content == NOT_FOUND and response.usage.completion_tokens == 0


def test_rag_model_keeps_the_conversation_and_answers_the_last_question(client):
    messages = [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "What is a Turing machine?"},
        {"role": "assistant", "content": "A mathematical model of computation."},
        {"role": "user", "content": OFF_TOPIC},
    ]
    response = client.chat.completions.create(model="rag:examples", messages=messages, max_tokens=8)
    assert response.choices[0].message.content == NOT_FOUND  # retrieval is for the last user message only


def test_rag_model_errors(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="rag:nothing-here", messages=[{"role": "user", "content": QUESTION}])
    assert "nothing-here" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="rag:examples", messages=[{"role": "system", "content": "Be brief."}])
    assert caught.value.body["param"] == "messages"
