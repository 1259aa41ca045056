"""The default model served in-process (the `llmkit serve` app over httpx's ASGI transport): batching, tool calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmkit.api import LLM
from llmkit.engine.engine import Engine
from llmkit.jsonl import read_jsonl, write_jsonl
from llmkit.pipeline.client import open_client
from llmkit.pipeline.config import PipelineConfig, load_pipeline
from llmkit.pipeline.runner import run_pipeline

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

TOOLS_PY = '''
def price(product: str) -> dict:
    """The price of a product in euros.

    Args:
        product: The product's name.
    """
    return {"product": product, "euros": 42}
'''


@pytest.fixture
def engine_steps(smollm):
    """A fresh engine on the session's model, and the batch size of every step it takes."""
    engine = Engine(smollm.model, smollm.tokenizer, max_batch_size=4, max_seq_len=1024)
    sizes: list[int] = []
    step = engine.step

    def counted_step():
        sizes.append(len(engine.rows))
        return step()

    engine.step = counted_step
    return engine, sizes


def run(config: PipelineConfig, engine: Engine, records: list[dict], tmp_path: Path, **options):
    write_jsonl(tmp_path / "in.jsonl", records)
    return run_pipeline(config, tmp_path / "in.jsonl", tmp_path / "out.jsonl",
                        connect=lambda: open_client(config.model, load_llm=lambda model: LLM(engine)), **options)


def test_the_shop_pipeline_in_process_batches_concurrent_records(engine_steps, tmp_path):
    engine, sizes = engine_steps
    config = load_pipeline(ROOT / "examples/shop/pipeline.yaml")
    sample = list(read_jsonl(ROOT / "examples/shop/sample.jsonl"))
    records = [next(record for record in sample if record["task_type"] == kind)
               for kind in ("multiple-choice", "ranking", "retrieval", "named_entity_recognition")]
    summary = run(config, engine, records, tmp_path, concurrency=4)
    assert (summary.done, summary.failed, summary.model) == (4, 0, "default"), summary.first_error
    assert summary.prompt_tokens > 100 and summary.completion_tokens > 4
    assert max(sizes) > 1  # the records were decoded together in one batch
    outputs = {line["_task"]: line["prediction"] for line in read_jsonl(tmp_path / "out.jsonl")}
    assert outputs["multiple_choice"] is None or 0 <= outputs["multiple_choice"] <= 9
    assert sorted(outputs["ranking"]) == [1, 2, 3, 4, 5]
    assert len(outputs["retrieval"]) <= 3 and all(1 <= number <= 15 for number in outputs["retrieval"])
    assert isinstance(outputs["entities"], list)


def test_a_tool_call_round_trip_through_the_real_server(engine_steps, tmp_path):
    engine, _ = engine_steps
    (tmp_path / "shop_tools.py").write_text(TOOLS_PY)
    config = PipelineConfig.model_validate({"tasks": [{
        "name": "agent", "tools": [{"function": "shop_tools.py:price"}], "tool_choice": "required",
        "max_tool_rounds": 1, "sampling": {"max_tokens": 64, "temperature": 0},  # greedy: the same call every run
    }]}, context={"base_dir": tmp_path})
    summary = run(config, engine, [{"prompt": "How much does a red shoe cost?"}], tmp_path)
    assert summary.done == 1, summary.first_error
    (trace,) = read_jsonl(summary.trace)
    (call,) = trace["tool_calls"]  # "required": the model had to call; after one round it had to answer
    assert call["round"] == 1 and call["name"] == "price" and call["error"] is None
    assert json.loads(call["result"]) == {"product": json.loads(call["arguments"])["product"], "euros": 42}
    assert trace["finish_reason"] in ("stop", "length") and trace["usage"]["prompt_tokens"] > 0
