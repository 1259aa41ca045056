"""Tools: calls and their failures as the model sees them, and the tool-call rounds against a scripted model."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fake_openai import ScriptedModel, tool_call
from fastapi import FastAPI, Header, HTTPException

from llmkit.pipeline.client import serve_in_process
from llmkit.pipeline.config import PipelineConfig, Sampling, ToolConfig
from llmkit.pipeline.tools import Toolset

TOOLS_PY = '''
import asyncio
import time


def price(product: str, quantity: int = 1) -> dict:
    """The price of a product in euros."""
    if product == "unknown":
        raise LookupError(f"no product {product!r}")
    return {"product": product, "euros": 21 * quantity}


def slow(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


async def slow_async(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"
'''


def stock_app() -> FastAPI:
    """An HTTP tool: GET /stock?product=… answers JSON; an unknown product is a 404."""
    app = FastAPI()

    @app.get("/stock")
    async def stock(product: str):
        if product == "unknown":
            raise HTTPException(404, "no such product")
        return {"product": product, "in_stock": 3}

    @app.post("/echo")
    async def echo(body: dict):
        return body

    @app.get("/secret")
    async def secret(authorization: str = Header("")):
        if authorization != "Bearer tool-key":
            raise HTTPException(401, "wrong key")
        return "the secret"

    return app


@pytest.fixture
def tools(tmp_path, monkeypatch) -> list[ToolConfig]:
    (tmp_path / "shop_tools.py").write_text(TOOLS_PY)
    monkeypatch.setenv("SHOP_TOOL_KEY", "tool-key")
    config = PipelineConfig.model_validate({"tasks": [{"name": "t", "tools": [
        {"function": "shop_tools.py:price"},
        {"function": "shop_tools.py:slow", "timeout": 0.2},
        {"function": "shop_tools.py:slow_async", "timeout": 0.2},
        {"url": "http://tools/stock", "method": "GET", "name": "stock", "description": "Units in stock.",
         "parameters": {"type": "object", "properties": {"product": {"type": "string"}}}},
        {"url": "http://tools/echo", "name": "echo"},
        {"url": "http://tools/secret", "method": "GET", "name": "secret", "api_key_env": "SHOP_TOOL_KEY"},
    ]}]}, context={"base_dir": tmp_path})
    return config.tasks[0].tools


def call(toolset: Toolset, name: str, arguments: str):
    return asyncio.run(toolset.call("call-1", name, arguments))


def toolset(tools: list[ToolConfig]) -> Toolset:
    return Toolset(tools, httpx.AsyncClient(transport=httpx.ASGITransport(app=stock_app())))


def test_the_tools_entries_sent_to_the_model(tools):
    specs = toolset(tools).specs
    assert [spec["function"]["name"] for spec in specs] == ["price", "slow", "slow_async", "stock", "echo", "secret"]
    assert specs[0] == {"type": "function", "function": {
        "name": "price", "description": "The price of a product in euros.",
        "parameters": {"type": "object", "properties": {"product": {"type": "string"}, "quantity": {"type": "integer"}},
                       "required": ["product"]}}}
    assert specs[4]["function"]["parameters"] == {"type": "object", "properties": {}}


def test_python_and_http_calls_answer_json_text(tools):
    box = toolset(tools)
    result = call(box, "price", '{"product": "shoe", "quantity": 2}')
    assert (result.id, result.name, result.error) == ("call-1", "price", None)
    assert json.loads(result.result) == {"product": "shoe", "euros": 42}
    assert json.loads(call(box, "stock", '{"product": "shoe"}').result) == {"product": "shoe", "in_stock": 3}
    assert json.loads(call(box, "echo", '{"a": [1, "二"]}').result) == {"a": [1, "二"]}
    assert call(box, "secret", "{}").result == '"the secret"'  # the key from api_key_env went along


@pytest.mark.parametrize(("name", "arguments", "error"), [
    ("nope", "{}", "there is no tool 'nope'; the tools are price, slow, slow_async, stock, echo, secret"),
    ("price", '{"product": ', "the arguments are not JSON (Expecting value)"),
    ("price", "[1]", "the arguments must be a JSON object, not list"),
    ("price", '{"colour": "red"}', "TypeError: price() got an unexpected keyword argument 'colour'"),
    ("price", '{"product": "unknown"}', "LookupError: no product 'unknown'"),
    ("slow", '{"seconds": 2}', "slow did not answer within 0.2 s"),
    ("slow_async", '{"seconds": 2}', "slow_async did not answer within 0.2 s"),
    ("stock", '{"product": "unknown"}', 'http://tools/stock answered HTTP 404: {"detail":"no such product"}'),
])
def test_failed_calls_tell_the_model_what_went_wrong(tools, name, arguments, error):
    result = call(toolset(tools), name, arguments)
    assert result.error.startswith(error)
    assert result.result == f"error: {result.error}"


def price_then_answer(body: dict):
    """Asks for the price once, then answers with what the tool said."""
    if body["messages"][-1]["role"] != "tool":
        return tool_call("call-7", "price", '{"product": "shoe", "quantity": 2}')
    return f"It costs {json.loads(body['messages'][-1]['content'])['euros']} euros."


def complete(model: ScriptedModel, tools, **options):
    async def go():
        async with serve_in_process(model.app(), "scripted") as client, httpx.AsyncClient() as http:
            messages = [{"role": "user", "content": "How much are two shoes?"}]
            return await client.complete(messages, Sampling(), Toolset(tools, http), **options)

    return asyncio.run(go())


def test_a_tool_round_trip_feeds_the_result_back(tools):
    model = ScriptedModel(price_then_answer)
    completion = complete(model, tools[:1], max_tool_rounds=3)
    assert completion.text == "It costs 42 euros." and completion.finish_reason == "stop"
    assert (completion.prompt_tokens, completion.completion_tokens) == (20, 4)  # two requests
    assert completion.tool_calls == [{"round": 1, "id": "call-7", "name": "price",
                                      "arguments": '{"product": "shoe", "quantity": 2}',
                                      "result": '{"product": "shoe", "euros": 42}', "error": None,
                                      "seconds": completion.tool_calls[0]["seconds"]}]
    first, second = model.requests
    assert first["tools"][0]["function"]["name"] == "price" and first["tool_choice"] == "auto"
    assert second["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call-7", "type": "function",
             "function": {"name": "price", "arguments": '{"product": "shoe", "quantity": 2}'}}]},
        {"role": "tool", "tool_call_id": "call-7", "content": '{"product": "shoe", "euros": 42}'},
    ]


def test_tool_rounds_are_bounded_and_the_last_request_forbids_tools(tools):
    model = ScriptedModel(lambda body: tool_call(f"call-{len(body['messages'])}", "price", '{"product": "hat"}'))
    completion = complete(model, tools[:1], max_tool_rounds=2, tool_choice="required")
    assert [request["tool_choice"] for request in model.requests] == ["required", "required", "none"]
    assert [call["round"] for call in completion.tool_calls] == [1, 2]
    assert completion.text == ""  # it still asked for a tool: its calls are not run, its (empty) content is the answer


def test_a_task_without_tools_sends_none(tools):
    model = ScriptedModel(lambda body: "plain")
    assert complete(model, [], max_tool_rounds=3).text == "plain"
    assert "tools" not in model.requests[0]
