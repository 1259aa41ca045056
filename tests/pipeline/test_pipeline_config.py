"""Pipeline files: what loads, how sampling merges, and errors that name the bad key and what it allows."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmkit.pipeline.config import PipelineError, load_pipeline

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, pipeline: dict) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(pipeline, sort_keys=False), encoding="utf-8")
    return path


def error_of(tmp_path: Path, pipeline: dict) -> str:
    with pytest.raises(PipelineError) as caught:
        load_pipeline(write(tmp_path, pipeline))
    return str(caught.value)


def test_the_shop_example_loads_with_its_steps_and_metrics():
    config = load_pipeline(ROOT / "examples/shop/pipeline.yaml")
    assert [task.name for task in config.tasks] == ["multiple_choice", "ranking", "retrieval", "entities", "generation"]
    assert [task.metric.name for task in config.tasks] == ["accuracy", "ndcg", "hit@3", "micro_f1", "rouge_l"]
    assert config.tasks[2].postprocess[0].options == {"k": 3, "items_field": "input_field"}
    assert config.model.base_url is None and config.model.name == "default"


def test_a_task_overrides_only_the_sampling_keys_it_sets(tmp_path):
    config = load_pipeline(write(tmp_path, {
        "sampling": {"temperature": 0.7, "max_tokens": 100, "stop": ["\n"]},
        "tasks": [{"name": "short", "match": {"field": "x"}, "sampling": {"max_tokens": 5}}, {"name": "rest"}],
    }))
    short, rest = config.tasks
    assert config.sampling_for(short).model_dump(exclude_none=True) == {
        "temperature": 0.7, "max_tokens": 5, "stop": ["\n"]}
    assert config.sampling_for(rest) == config.sampling


def test_a_python_tool_takes_its_name_description_and_schema_from_the_function(tmp_path):
    (tmp_path / "shop_tools.py").write_text(
        "from typing import Literal\n\n"
        "def price(product: str, currency: Literal['EUR', 'USD'] = 'EUR', quantity: int | None = None) -> float:\n"
        '    """The price of a product.\n\n    Args:\n        product: The product name,\n'
        '            as the shop lists it.\n        currency: Which currency.\n    """\n    return 1.0\n'
    )
    config = load_pipeline(write(tmp_path, {"tasks": [{"name": "t", "tools": [{"function": "shop_tools.py:price"}]}]}))
    (tool,) = config.tasks[0].tools
    assert (tool.name, tool.description) == ("price", "The price of a product.")
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "product": {"type": "string", "description": "The product name, as the shop lists it."},
            "currency": {"enum": ["EUR", "USD"], "description": "Which currency."},
            "quantity": {"type": "integer"},
        },
        "required": ["product"],
    }


@pytest.mark.parametrize(("pipeline", "message"), [
    ({"tasks": [{"name": "t", "promt": "x"}]},
     "tasks[0]: unknown key 'promt' (allowed: name, match, transforms, system, user"),
    ({"modle": {}, "tasks": [{"name": "t"}]}, "unknown key 'modle' (did you mean 'model'? allowed: model,"),
    ({"tasks": []}, "tasks: List should have at least 1 item"),
    ({}, "tasks: required"),
    ({"tasks": [{"match": {"field": "x"}}]}, "tasks[0].name: required"),
    ({"tasks": [{"name": "a"}, {"name": "b"}]}, "task 'a' has no match, so it takes every record"),
    ({"tasks": [{"name": "a", "match": {"field": "x"}}, {"name": "a"}]}, "task names must differ: a given twice"),
    ({"tasks": [{"name": "t", "match": {"contains": "x", "regex": "y"}}]},
     "tasks[0].match: give one test, not contains and regex"),
    ({"tasks": [{"name": "t", "match": {"equals": 3}}]}, "tasks[0].match: equals needs the field it tests"),
    ({"tasks": [{"name": "t", "match": {"regex": "("}}]}, "tasks[0].match.regex: Input should be a valid regular"),
    ({"tasks": [{"name": "t", "system": "{{ unclosed"}]}, "tasks[0].system: Jinja syntax error on line 1"),
    ({"tasks": [{"name": "t", "postprocess": ["strip", "first_digits"]}]},
     "tasks[0].postprocess[1]: unknown post-processor 'first_digits'"),
    ({"tasks": [{"name": "t", "transforms": [{"split": {"fields": "x"}}]}]},
     "tasks[0].transforms[0]: split: unknown option 'fields' (its options: field, separator"),
    ({"tasks": [{"name": "t", "metric": "bleu"}]}, "tasks[0].metric: unknown metric 'bleu': use accuracy, ndcg"),
    ({"tasks": [{"name": "t", "sampling": {"temperature": 5}}]},
     "tasks[0].sampling.temperature: Input should be less than or equal to 2 (got 5)"),
    ({"model": {"base_url": "http://x/v1", "name": "big"}, "tasks": [{"name": "t"}]},
     "model: name apply to an in-process model; with base_url the server decides them"),
    ({"model": {"model": "gpt"}, "tasks": [{"name": "t"}]}, "model: model and api_key_env go with base_url"),
    ({"tasks": [{"name": "t", "tools": [{"url": "http://x"}]}]}, "tasks[0].tools[0]: an HTTP tool needs a name"),
    ({"tasks": [{"name": "t", "tools": [{"name": "x"}]}]}, "tasks[0].tools[0]: give a tool either function"),
    ({"tasks": [{"name": "t", "tools": [{"url": "http://x", "name": "x", "api_key_env": "NO_SUCH_VARIABLE_XYZ"}]}]},
     "tasks[0].tools[0]: api_key_env: the environment variable NO_SUCH_VARIABLE_XYZ is not set"),
    ({"tasks": [{"name": "t", "tools": [{"function": "json:dumps", "method": "GET"}]}]},
     "tasks[0].tools[0]: method: only for HTTP tools (url)"),
    ({"tasks": [{"name": "t", "tools": [{"function": "no_such_module_xyz:f"}]}]},
     "tasks[0].tools[0].function: tool no_such_module_xyz: cannot import"),
    ({"tasks": [{"name": "t", "tools": [{"url": "http://x", "name": "a"}, {"url": "http://y", "name": "a"}]}]},
     "tasks[0]: tool names must differ: a given twice"),
])
def test_errors_name_the_key(tmp_path, pipeline, message):
    assert message in error_of(tmp_path, pipeline)


def test_every_error_is_reported_at_once(tmp_path):
    message = error_of(tmp_path, {"concurrency": 0, "tasks": [{"name": "t", "metric": "bleu"}]})
    assert "concurrency: Input should be greater than or equal to 1" in message and "tasks[0].metric" in message


def test_unreadable_files(tmp_path):
    with pytest.raises(PipelineError, match="cannot read pipeline .*missing.yaml"):
        load_pipeline(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("tasks: [\n")
    with pytest.raises(PipelineError, match=r"bad.yaml is not valid YAML: .*line"):
        load_pipeline(tmp_path / "bad.yaml")
