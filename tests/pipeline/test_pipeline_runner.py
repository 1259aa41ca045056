"""The runner against a scripted OpenAI-compatible model: outputs, trace lines, failures, resume, concurrency, tools."""

from __future__ import annotations

import json
import re

import pytest
from fake_openai import ScriptedModel, last_user_text, tool_call
from fastapi import FastAPI

from llmkit.jsonl import read_jsonl, write_jsonl
from llmkit.pipeline.client import EndpointError, serve_in_process
from llmkit.pipeline.config import PipelineConfig, PipelineError
from llmkit.pipeline.runner import RunProgress, run_pipeline

PIPELINE = {
    "prompt_field": "question",
    "reference_field": "answer",
    "tasks": [
        {"name": "choice", "match": {"field": "options"}, "system": "Pick one of {{ options | length }} options.",
         "user": "{{ question }}\n{% for option in options %}{{ loop.index0 }}. {{ option }}\n{% endfor %}",
         "sampling": {"max_tokens": 3}, "postprocess": ["first_digit"], "metric": "accuracy"},
        {"name": "ranking", "match": {"regex": "(?i)^rank"}, "postprocess": [{"permutation": {"n": 3}}],
         "metric": "ndcg"},
        {"name": "split", "match": {"contains": "Input:"},
         "transforms": [{"split": {"field": "question", "separator": "Input:"}}],
         "system": "{{ instruction }}", "user": "{{ input }}", "postprocess": ["strip"]},
        {"name": "free", "postprocess": ["strip"], "metric": "rouge_l"},
    ],
}

RECORDS = [
    {"question": "Which is a fruit?", "options": ["stone", "apple"], "answer": 1},
    {"question": "Rank a, b, c", "answer": [0, 1, 2]},
    {"question": "Translate. Input: Haus", "answer": "house"},
    {"question": "Say hello", "answer": "hello there"},
]


def scripted_answer(body: dict) -> str:
    text = last_user_text(body)
    if "fruit" in text:
        return "Option 1, apple"
    if text.startswith("Rank"):
        return "3, 3, 1"
    return f"  echo: {text}  "


def config(**changes) -> PipelineConfig:
    return PipelineConfig.model_validate({**PIPELINE, **changes})


def run(tmp_path, model: ScriptedModel, records=RECORDS, pipeline: PipelineConfig | None = None, **options):
    source = tmp_path / "records.jsonl"
    if not source.exists():
        write_jsonl(source, records)
    return run_pipeline(pipeline or config(), source, tmp_path / "out.jsonl",
                        connect=lambda: serve_in_process(model.app(), "scripted"), **options)


def by_index(path) -> dict[int, dict]:
    return {line["_index"]: line for line in read_jsonl(path)}


def test_outputs_carry_the_record_its_task_and_the_prediction(tmp_path):
    progress: list[RunProgress] = []
    summary = run(tmp_path, ScriptedModel(scripted_answer), on_progress=progress.append)
    assert (summary.done, summary.failed, summary.already_done, summary.total) == (4, 0, 0, 4)
    assert summary.model == "scripted"
    assert summary.tasks == {"choice": 1, "ranking": 1, "split": 1, "free": 1}
    assert (summary.prompt_tokens, summary.completion_tokens) == (40, 8)
    assert progress[0] == RunProgress(0, 0, 4) and progress[-1] == RunProgress(4, 0, 4)
    outputs = by_index(tmp_path / "out.jsonl")
    assert outputs[0] == {"_index": 0, "_task": "choice", **RECORDS[0], "prediction": 1}
    assert [outputs[index]["prediction"] for index in range(4)] == [
        1, [3, 1, 2], "echo: Haus", "echo: Say hello"]


def test_the_trace_shows_every_step_of_a_record(tmp_path):
    model = ScriptedModel(scripted_answer)
    summary = run(tmp_path, model)
    assert summary.trace == tmp_path / "out.trace.jsonl"
    traces = by_index(summary.trace)
    choice = traces[0]
    assert choice["task"] == "choice" and choice["transformed"] == {} and choice["error"] is None
    assert choice["messages"] == [{"role": "system", "content": "Pick one of 2 options."},
                                  {"role": "user", "content": "Which is a fruit?\n0. stone\n1. apple\n"}]
    assert (choice["raw_output"], choice["finish_reason"], choice["tool_calls"]) == ("Option 1, apple", "stop", [])
    assert choice["postprocess"] == [{"step": "first_digit", "output": 1}] and choice["output"] == 1
    assert choice["usage"] == {"prompt_tokens": 10, "completion_tokens": 2} and choice["latency_s"] >= 0
    assert traces[1]["postprocess"] == [{"step": "permutation", "output": [3, 1, 2]}]
    assert traces[2]["transformed"] == {"instruction": "Translate.", "input": "Haus"}
    assert traces[2]["messages"] == [{"role": "system", "content": "Translate."}, {"role": "user", "content": "Haus"}]
    assert traces[3]["messages"] == [{"role": "user", "content": "Say hello"}]  # no template: the prompt as it is
    sent = {last_user_text(request): request for request in model.requests}
    assert sent["Which is a fruit?\n0. stone\n1. apple\n"]["max_tokens"] == 3  # the task's sampling
    assert sent["Say hello"]["max_tokens"] == 256 and "temperature" not in sent["Say hello"]  # the model's default


def test_failed_records_are_traced_not_output_and_run_again_next_time(tmp_path):
    pipeline = config(tasks=PIPELINE["tasks"][:2])  # no catch-all: two records match no task
    records = [*RECORDS, {"question": "Which is a fruit?", "answer": 0, "options": ["x"], "extra": 1}]
    source = tmp_path / "records.jsonl"
    write_jsonl(source, records)
    with source.open("a", encoding="utf-8") as data:
        data.write("{not json\n")
    summary = run(tmp_path, ScriptedModel(scripted_answer), pipeline=pipeline)
    assert (summary.done, summary.failed) == (3, 3)
    assert summary.first_error.startswith("record ")
    traces = by_index(summary.trace)
    assert traces[2] == {"_index": 2, "task": None, "latency_s": traces[2]["latency_s"],
                         "error": "no task matches the record; add a task without match as the last task"}
    assert re.fullmatch(r"line 6: .*", traces[5]["error"])
    assert set(by_index(tmp_path / "out.jsonl")) == {0, 1, 4}
    again = run(tmp_path, ScriptedModel(scripted_answer))  # the full pipeline now: the failures are retried
    assert (again.already_done, again.done, again.failed) == (3, 2, 1)  # the broken line fails again
    assert set(by_index(tmp_path / "out.jsonl")) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize(("task", "error"), [
    ({"name": "t", "user": "{{ missing }}"}, "user template: 'missing' is undefined (record fields: question, answer)"),
    ({"name": "t", "postprocess": [{"regex": {"pattern": "x", "group": 3}}]},
     "post-processor regex failed: IndexError: no such group"),
])
def test_a_failing_step_is_named_in_the_trace(tmp_path, task, error):
    summary = run(tmp_path, ScriptedModel(lambda body: "x"), records=RECORDS[3:], pipeline=config(tasks=[task]))
    (trace,) = read_jsonl(summary.trace)
    assert summary.failed == 1 and trace["error"] == error


def test_a_server_error_fails_the_record_with_the_servers_words(tmp_path):
    summary = run(tmp_path, ScriptedModel(lambda body: 500 if "hello" in last_user_text(body) else "fine"))
    traces = by_index(summary.trace)
    assert (summary.done, summary.failed) == (3, 1)
    assert traces[3]["error"] == "the model server answered HTTP 500: scripted 500"
    assert traces[3]["messages"] == [{"role": "user", "content": "Say hello"}]  # the steps before the failure


def test_a_refused_key_stops_the_run(tmp_path):
    with pytest.raises(EndpointError, match="HTTP 401: scripted 401"):
        run(tmp_path, ScriptedModel(lambda body: 401))


def test_resume_after_a_kill_skips_finished_records_without_duplicates(tmp_path):
    first = run(tmp_path, ScriptedModel(scripted_answer), limit=2)
    assert (first.done, first.total) == (2, 2)
    output = tmp_path / "out.jsonl"
    with output.open("a", encoding="utf-8") as out:  # the run was killed while writing record 2
        out.write('{"_index": 2, "_task": "spl')
    model = ScriptedModel(scripted_answer)
    second = run(tmp_path, model)
    assert (second.already_done, second.done, second.total) == (2, 2, 4)
    assert len(model.requests) == 2
    indices = [line["_index"] for line in read_jsonl(output)]
    assert sorted(indices) == [0, 1, 2, 3]
    assert output.read_text(encoding="utf-8").count('"_index": 2') == 1
    third = run(tmp_path, ScriptedModel(scripted_answer))  # nothing left to do: the model is not even asked
    assert (third.already_done, third.done, third.model) == (4, 0, None)


def test_an_output_not_written_by_the_runner_is_refused(tmp_path):
    write_jsonl(tmp_path / "out.jsonl", [{"text": "mine"}])
    with pytest.raises(PipelineError, match="has lines without _index"):
        run(tmp_path, ScriptedModel(scripted_answer))
    with pytest.raises(PipelineError, match="input .*missing.jsonl does not exist"):
        run_pipeline(config(), tmp_path / "missing.jsonl", tmp_path / "o.jsonl")


@pytest.mark.parametrize("concurrency", [1, 3])
def test_no_more_records_are_in_flight_than_the_concurrency(tmp_path, concurrency):
    model = ScriptedModel(scripted_answer, delay_s=0.05)
    records = [{"question": f"Say {number}", "answer": "x"} for number in range(12)]
    assert run(tmp_path, model, records=records, concurrency=concurrency).done == 12
    assert model.most_in_flight == concurrency


TOOLS_PY = '''
def price(product: str) -> dict:
    """The price of a product in euros."""
    return {"product": product, "euros": 42}
'''


def stock_app() -> FastAPI:
    app = FastAPI()

    @app.post("/stock")
    async def stock(body: dict):
        return {"product": body["product"], "in_stock": 3}

    return app


def shopping_agent(body: dict):
    """Calls both tools in one round, then answers from their results."""
    if body["messages"][-1]["role"] != "tool":
        call = tool_call("c1", "price", '{"product": "shoe"}')
        call["tool_calls"].append({"id": "c2", "type": "function",
                                   "function": {"name": "stock", "arguments": '{"product": "shoe"}'}})
        return call
    price, stock = (json.loads(message["content"]) for message in body["messages"][-2:])
    return f"{stock['in_stock']} shoes at {price['euros']} euros"


def test_python_and_http_tools_through_the_runner(tmp_path, loopback):
    (tmp_path / "shop_tools.py").write_text(TOOLS_PY)
    server = loopback(stock_app())
    pipeline = PipelineConfig.model_validate({"prompt_field": "question", "tasks": [{
        "name": "agent", "max_tool_rounds": 2, "postprocess": [{"regex": {"pattern": r"(\d+) shoes"}}],
        "tools": [{"function": "shop_tools.py:price"},
                  {"url": f"{server.url}/stock", "name": "stock", "description": "Units in stock."}],
    }]}, context={"base_dir": tmp_path})
    summary = run(tmp_path, ScriptedModel(shopping_agent), records=[{"question": "Shoes?"}], pipeline=pipeline)
    (trace,) = read_jsonl(summary.trace)
    assert trace["raw_output"] == "3 shoes at 42 euros" and trace["output"] == "3"
    assert [(call["round"], call["name"], call["result"], call["error"]) for call in trace["tool_calls"]] == [
        (1, "price", '{"product": "shoe", "euros": 42}', None),
        (1, "stock", '{"product":"shoe","in_stock":3}', None),
    ]
    assert trace["usage"] == {"prompt_tokens": 20, "completion_tokens": 4}


def test_a_server_over_http(tmp_path, loopback, monkeypatch):
    server = loopback(ScriptedModel(scripted_answer).app())
    monkeypatch.setenv("SHOP_KEY", "secret")
    remote = config(model={"base_url": f"{server.url}/v1", "api_key_env": "SHOP_KEY"})
    write_jsonl(tmp_path / "records.jsonl", RECORDS)
    summary = run_pipeline(remote, tmp_path / "records.jsonl", tmp_path / "out.jsonl")
    assert (summary.done, summary.model) == (4, "scripted")  # the first model the server lists


def test_an_unusable_server_is_one_clear_error(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "records.jsonl", RECORDS)
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    for model, message in [
        ({"base_url": "http://127.0.0.1:9/v1"}, "cannot reach http://127.0.0.1:9/v1"),
        ({"base_url": "http://127.0.0.1:9/v1", "api_key_env": "NO_SUCH_KEY_VAR"}, "NO_SUCH_KEY_VAR is not set"),
    ]:
        with pytest.raises(EndpointError, match=message):
            run_pipeline(config(model=model), tmp_path / "records.jsonl", tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()
