"""LoRA adapters as model ids: listed, chosen per request, loaded and unloaded at run time behind the key."""

from __future__ import annotations

import asyncio

import httpx
import pytest

API_KEY = "test-key"
MODEL_ID = "smollm2-135m"  # as in conftest's servers
QUESTION = [{"role": "user", "content": "Name a fruit."}]
EMBEDDING_MODEL = "all-minilm-l6-v2"  # listed by every server, after the chat models


@pytest.fixture(scope="module")
def adapter_server(start_server, lora_adapters):
    """A server whose private model copy serves adapter "alpha" (beta is loaded at run time by the tests)."""
    from llmkit.api import LLM
    from llmkit.engine.engine import Engine
    from llmkit.models import load

    loaded = load("default", dtype="float32", device="cpu")
    llm = LLM(Engine(loaded.model, loaded.tokenizer, max_batch_size=4, max_seq_len=512))
    llm.engine.load_adapter("alpha", lora_adapters["alpha"])
    return start_server(llm)


@pytest.fixture(scope="module")
def http(adapter_server):
    with httpx.Client(base_url=adapter_server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as c:
        yield c


def answer(http: httpx.Client, model: str) -> dict:
    response = http.post("/v1/chat/completions", json={"model": model, "messages": QUESTION, "max_tokens": 10, "temperature": 0})
    assert response.status_code == 200, response.text
    return response.json()


def test_models_lists_base_and_adapters(http, lora_adapters):
    cards = {card["id"]: card for card in http.get("/v1/models").json()["data"]}
    assert list(cards) == [MODEL_ID, "alpha", EMBEDDING_MODEL]
    assert cards["alpha"]["parent"] == MODEL_ID and cards["alpha"]["root"] == "alpha"
    assert cards[MODEL_ID]["parent"] is None
    assert cards[MODEL_ID]["backend"] == cards["alpha"]["backend"] == "torch, llmkit forward"
    assert http.get("/v1/models/alpha").json()["root"] == "alpha"


def test_model_cards_never_show_the_servers_paths(http, lora_adapters):
    """An adapter is its own root: its directory on the server stays private."""
    for body in (http.get("/v1/models").text, http.get("/v1/models/alpha").text):
        assert str(lora_adapters["alpha"].parent) not in body


def test_each_request_runs_its_own_model(http):
    base, alpha = answer(http, MODEL_ID), answer(http, "alpha")
    assert alpha["model"] == "alpha" and base["model"] == MODEL_ID
    assert alpha["choices"][0]["message"]["content"] != base["choices"][0]["message"]["content"]
    assert answer(http, "alpha")["choices"] == alpha["choices"]


def test_concurrent_requests_on_different_adapters_match_solo_runs(http, adapter_server):
    solo = {model: answer(http, model)["choices"][0]["message"]["content"] for model in (MODEL_ID, "alpha")}

    async def together() -> list[dict]:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=adapter_server.url, headers=headers, timeout=60) as client:
            body = {"messages": QUESTION, "max_tokens": 10, "temperature": 0}
            responses = await asyncio.gather(*[
                client.post("/v1/chat/completions", json={**body, "model": model})
                for model in (MODEL_ID, "alpha", MODEL_ID, "alpha")
            ])
        return [r.json() for r in responses]

    for result in asyncio.run(together()):
        assert result["choices"][0]["message"]["content"] == solo[result["model"]]


def test_load_and_unload_at_run_time(http, lora_adapters):
    loaded = http.post("/v1/load_adapter", json={"lora_name": "beta", "lora_path": str(lora_adapters["beta"])})
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["id"] == "beta" and loaded.json()["parent"] == MODEL_ID
    assert [c["id"] for c in http.get("/v1/models").json()["data"]] == [MODEL_ID, "alpha", "beta", EMBEDDING_MODEL]
    beta = answer(http, "beta")["choices"][0]["message"]["content"]
    assert beta != answer(http, "alpha")["choices"][0]["message"]["content"]

    unloaded = http.post("/v1/unload_adapter", json={"lora_name": "beta"})
    assert unloaded.json() == {"id": "beta", "object": "model", "deleted": True}
    gone = http.post("/v1/chat/completions", json={"model": "beta", "messages": QUESTION, "max_tokens": 4})
    assert gone.status_code == 404
    assert "smollm2-135m, alpha" in gone.json()["error"]["message"]

    again = http.post("/v1/load_lora_adapter", json={"lora_name": "beta2", "lora_path": str(lora_adapters["beta"])})
    assert again.status_code == 200  # vLLM's route name
    assert answer(http, "beta2")["choices"][0]["message"]["content"] == beta
    assert http.post("/v1/unload_lora_adapter", json={"lora_name": "beta2"}).status_code == 200


@pytest.mark.parametrize(
    ("route", "body", "status", "message"),
    [
        ("/v1/load_adapter", {"lora_name": "x", "lora_path": "/nonexistent"}, 400, "not a LoRA adapter directory"),
        ("/v1/load_adapter", {"lora_name": MODEL_ID, "lora_path": "/tmp"}, 400, "base model's id"),
        ("/v1/load_adapter", {"lora_name": "has space", "lora_path": "/tmp"}, 400, "lora_name"),
        ("/v1/load_adapter", {"lora_name": "x"}, 400, "lora_path"),
        ("/v1/unload_adapter", {"lora_name": "never-loaded"}, 404, "no adapter named 'never-loaded'"),
    ],
)
def test_bad_adapter_requests(http, route, body, status, message):
    response = http.post(route, json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"] + str(response.json()["error"]["param"])


@pytest.mark.parametrize("name", ["rag:demo", "../x", "org/../x", "a/b/c", "__base__"])
def test_adapter_names_must_be_model_ids(http, lora_adapters, name):
    """A `rag:` name would be unreachable (knowledge bases own them) and a path-like one reaches PEFT: both 400."""
    response = http.post("/v1/load_adapter", json={"lora_name": name, "lora_path": str(lora_adapters["beta"])})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "lora_name" and "letters, digits" in error["message"]
    assert name not in [c["id"] for c in http.get("/v1/models").json()["data"]]


def test_loading_an_adapter_twice_is_refused(http, lora_adapters):
    response = http.post("/v1/load_adapter", json={"lora_name": "alpha", "lora_path": str(lora_adapters["alpha"])})
    assert response.status_code == 400
    assert "already loaded" in response.json()["error"]["message"]


def test_adapter_routes_need_the_key(adapter_server, lora_adapters):
    body = {"lora_name": "beta", "lora_path": str(lora_adapters["beta"])}
    assert httpx.post(f"{adapter_server.url}/v1/load_adapter", json=body).status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert httpx.post(f"{adapter_server.url}/v1/unload_adapter", json={"lora_name": "alpha"}, headers=wrong).status_code == 401


def test_servers_without_a_key_refuse_adapter_loading(start_server, lora_adapters):
    keyless = start_server(api_key=None)
    body = {"lora_name": "beta", "lora_path": str(lora_adapters["beta"])}
    response = httpx.post(f"{keyless.url}/v1/load_adapter", json=body)
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    assert "--api-key" in response.json()["error"]["message"]
