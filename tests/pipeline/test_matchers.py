"""Routing: each kind of match, the order tasks are tried in, and the fallback to the catch-all task."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from llmkit.pipeline.config import Match, PipelineConfig
from llmkit.pipeline.matchers import matches, route

SHOPBENCH = Path(os.environ["LLMKIT_SHARED_DATA"]) / "shopbench" / "sample.jsonl"


def pipeline(*tasks: dict) -> PipelineConfig:
    return PipelineConfig.model_validate({"prompt_field": "text", "tasks": list(tasks)})


def test_each_kind_of_match():
    record = {"text": "Rank these 5 products", "kind": "ranking", "mc": False, "n": 5}
    assert matches(Match(field="kind"), record, "text")  # a true field
    assert not matches(Match(field="mc"), record, "text")
    assert not matches(Match(field="absent"), record, "text")
    assert matches(Match(contains="5 products"), record, "text")  # in the prompt field by default
    assert not matches(Match(contains="rank"), record, "text")  # case counts
    assert matches(Match(regex=r"(?i)^rank"), record, "text")
    assert matches(Match(field="kind", regex="^rank"), record, "text")
    assert matches(Match(field="n", equals=5), record, "text")
    assert not matches(Match(field="n", equals="5"), record, "text")
    assert matches(Match(field="kind", one_of=["retrieval", "ranking"]), record, "text")
    assert not matches(Match(contains="x"), {"other": "x"}, "text")  # no prompt field: no match


def test_the_first_matching_task_wins_and_the_last_catches_the_rest():
    config = pipeline(
        {"name": "ranking", "match": {"contains": "rank"}},
        {"name": "numbers", "match": {"regex": r"\d"}},  # would match the ranking records too: order decides
        {"name": "default"},
    )
    names = [route(config.tasks, {"text": text}, "text").name for text in ("rank 3 items", "pick 1", "hello", "")]
    assert names == ["ranking", "numbers", "default", "default"]


def test_without_a_catch_all_an_unmatched_record_has_no_task():
    config = pipeline({"name": "only", "match": {"contains": "x"}})
    assert route(config.tasks, {"text": "y"}, "text") is None


def test_the_shop_records_route_by_task_type():
    config = PipelineConfig.model_validate({"prompt_field": "input_field", "tasks": [
        {"name": "multiple_choice", "match": {"field": "is_multiple_choice"}},
        {"name": "ranking", "match": {"field": "task_type", "equals": "ranking"}},
        {"name": "lists", "match": {"field": "task_type", "one_of": ["retrieval", "named_entity_recognition"]}},
        {"name": "generation"},
    ]})
    with SHOPBENCH.open(encoding="utf-8") as lines:
        routed = Counter(route(config.tasks, json.loads(line), "input_field").name for line in lines)
    assert routed == {"multiple_choice": 26, "lists": 12, "generation": 9, "ranking": 2}
