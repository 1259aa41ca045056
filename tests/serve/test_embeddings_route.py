"""`/v1/embeddings` through the official `openai` client: vectors, usage, base64 and the errors."""

from __future__ import annotations

import base64
import math
import struct

import openai
import pytest

pytestmark = pytest.mark.slow

MODEL = "all-minilm-l6-v2"


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_single_text(client):
    response = client.embeddings.create(model=MODEL, input="The cat sits on the mat.", encoding_format="float")
    assert response.object == "list" and response.model == MODEL
    (item,) = response.data
    assert item.object == "embedding" and item.index == 0 and len(item.embedding) == 384
    assert response.usage.prompt_tokens > 0 and response.usage.total_tokens == response.usage.prompt_tokens


def test_batch_keeps_order_and_similar_texts_are_closer(client):
    texts = ["A cat sleeps on the sofa.", "A kitten naps on the couch.", "Interest rates rose by half a percent."]
    response = client.embeddings.create(model=MODEL, input=texts, encoding_format="float", dimensions=384)
    assert [d.index for d in response.data] == [0, 1, 2]
    cat, kitten, rates = (d.embedding for d in response.data)
    assert cosine(cat, kitten) > cosine(cat, rates) + 0.2
    single = client.embeddings.create(model=MODEL, input=texts[2], encoding_format="float")
    assert single.data[0].embedding == pytest.approx(rates, abs=1e-5)
    assert response.usage.prompt_tokens > single.usage.prompt_tokens


def test_base64_decodes_to_the_same_floats(client, server):
    import httpx

    text = "Embeddings as little-endian float32."
    floats = client.embeddings.create(model=MODEL, input=text, encoding_format="float").data[0].embedding
    raw = httpx.post(
        f"{server.url}/v1/embeddings", json={"input": text, "encoding_format": "base64"},
        headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60,
    ).json()
    assert raw["model"] == MODEL  # the default model when none is named
    decoded = struct.unpack("<384f", base64.b64decode(raw["data"][0]["embedding"]))
    assert list(decoded) == pytest.approx(floats, abs=1e-6)
    # The client asks for base64 by default and decodes it itself.
    assert client.embeddings.create(model=MODEL, input=text).data[0].embedding == pytest.approx(floats, abs=1e-6)


@pytest.mark.parametrize("bad_input", ["", [], ["fine", ""]])
def test_empty_input_is_a_400(client, bad_input):
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input=bad_input, encoding_format="float")
    assert caught.value.body["type"] == "invalid_request_error" and caught.value.body["param"] == "input"


def test_token_ids_are_refused(client):
    with pytest.raises(openai.BadRequestError, match="not supported"):
        client.embeddings.create(model=MODEL, input=[[101, 2023, 102]], encoding_format="float")


def test_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="no-such-embedding-model", input="hi", encoding_format="float")
    assert caught.value.body["type"] == "not_found_error" and caught.value.body["param"] == "model"


def test_a_hub_model_not_cached_offline_is_a_404_naming_the_served_models(client):
    """Not packaged, not local, not in the cache, and the hub cannot be asked (tests run with HF_HUB_OFFLINE=1):
    the model is not found here, not a server failure."""
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="org/does-not-exist", input="hi", encoding_format="float")
    body = caught.value.body
    assert body["type"] == "not_found_error" and body["param"] == "model"
    assert "'org/does-not-exist' is not available offline" in body["message"] and MODEL in body["message"]


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "ALL-MINILM-L6-V2"])
def test_the_models_own_names_are_accepted_and_answered_with_the_canonical_one(client, name):
    response = client.embeddings.create(model=name, input="The cat sits on the mat.", encoding_format="float")
    assert response.model == MODEL and len(response.data[0].embedding) == 384


def test_models_lists_the_embedding_model_but_chat_refuses_it(client, server):
    listed = {model.id: model for model in client.models.list().data}
    assert list(listed)[0] == server.model_id  # the chat model stays first: clients take it as the default
    assert listed[MODEL].owned_by == "llmkit"
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    assert caught.value.body["param"] == "model"


def test_other_dimensions_are_a_400(client):
    with pytest.raises(openai.BadRequestError, match="384") as caught:
        client.embeddings.create(model=MODEL, input="hi", dimensions=128, encoding_format="float")
    assert caught.value.body["param"] == "dimensions"
