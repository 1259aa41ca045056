"""Task metrics against values worked out by hand, and the per-task evaluation of an output file."""

from __future__ import annotations

import math

import pytest

from llmkit.jsonl import write_jsonl
from llmkit.pipeline.config import PipelineConfig
from llmkit.pipeline.evaluation import evaluate
from llmkit.pipeline.metrics import (
    accuracy,
    entity_counts,
    hit_at,
    json_exact,
    micro_f1,
    ndcg,
    resolve_metric,
    rouge_l,
)


def test_accuracy():
    assert accuracy(3, 3) == 1.0
    assert accuracy("3", 3) == 1.0
    assert accuracy(" b", "B") == 1.0
    assert accuracy(2, 3) == 0.0
    assert accuracy(None, 0) == 0.0


def test_ndcg_of_integer_relevances():
    # Items 1, 2, 3 have relevance 3, 2, 0 (gains 2^rel - 1 = 7, 3, 0). Ranked 2, 1, 3:
    # DCG = 3/log2(2) + 7/log2(3) + 0 = 3 + 4.41651 = 7.41651; ideal (1, 2, 3): 7 + 3/log2(3) = 8.89279.
    assert ndcg([2, 1, 3], [3, 2, 0]) == pytest.approx(7.41651 / 8.89279, abs=1e-5)
    assert ndcg([1, 2, 3], [3, 2, 0]) == pytest.approx(1.0)


def test_ndcg_of_a_shopbench_ranking_record():
    relevance = [1, 0.01, 0.1, 1, 0]  # task12's first sample record
    gains = {item: 2 ** rel - 1 for item, rel in enumerate(relevance, start=1)}  # 1, 0.00696, 0.07177, 1, 0
    dcg = gains[5] / 1 + gains[2] / math.log2(3) + gains[1] / 2 + gains[3] / math.log2(5) + gains[4] / math.log2(6)
    ideal = 1 + 1 / math.log2(3) + gains[3] / 2 + gains[2] / math.log2(5)
    assert dcg == pytest.approx(0.92215, abs=1e-5) and ideal == pytest.approx(1.66981, abs=1e-5)
    assert ndcg([5, 2, 1, 3, 4], relevance) == pytest.approx(0.92215 / 1.66981, abs=1e-5)
    assert ndcg([4, 1, 3, 2, 5], relevance) == pytest.approx(1.0)


def test_ndcg_of_odd_predictions():
    assert ndcg([2, 1, 3, 9, 1], [3, 2, 0]) == ndcg([2, 1, 3], [3, 2, 0])  # cut to the reference's length
    assert ndcg([9, 0, 1], [3, 2, 0]) == pytest.approx((7 / 2) / 8.89279, abs=1e-5)  # unknown items gain nothing
    assert ndcg(None, [3, 2, 0]) == 0.0
    assert ndcg([1, 2], [0, 0]) == 0.0  # nothing relevant: no ideal to divide by


def test_hit_at_k():
    hit3 = hit_at(3)
    assert hit3([9, 1, 15, 6], [6, 9, 15]) == pytest.approx(2 / 3)  # 6 is fourth: out of the top 3
    assert hit3([6, 9, 15], [6, 9, 15]) == 1.0
    assert hit3([], [6, 9, 15]) == 0.0
    assert hit3(None, [6]) == 0.0
    assert hit_at(1)([2, 1], [1, 2]) == 0.5


def test_rouge_l_and_json_exact():
    assert rouge_l("the red shoe", "red shoe") == pytest.approx(0.8)  # LCS 2: precision 2/3, recall 1
    assert rouge_l(None, "red shoe") == 0.0
    assert json_exact('{"a": 1, "b": [1]}', {"b": [1], "a": 1}) == 1.0
    assert json_exact({"a": 1}, '{"a": 1}') == 1.0
    assert json_exact({"a": 1}, {"a": 2}) == 0.0
    assert json_exact(None, None) == 0.0


def test_micro_f1_pools_the_counts_of_a_task():
    counts = [
        entity_counts(["tablette", "asus"], ["tablette"]),  # 1 found, 1 extra
        entity_counts(["Mens "], ["mens"]),  # case and outer spaces do not count
        entity_counts([], ["women"]),  # 1 missed
    ]
    assert counts == [(1, 1, 0), (1, 0, 0), (0, 0, 1)]
    assert micro_f1(counts) == pytest.approx(2 / 3)  # precision 2/3, recall 2/3
    assert micro_f1([entity_counts([], ["x"])]) == 0.0
    assert micro_f1([]) == 0.0
    assert entity_counts("tablette", ["tablette"]) == (1, 0, 0)  # a lone string is one entity


def test_metrics_by_name_and_user_metrics(tmp_path):
    assert resolve_metric("hit@5").score([1, 2, 3, 4, 5], [5]) == 1.0
    (tmp_path / "mine.py").write_text(
        "def length_gap(prediction, reference):\n    return abs(len(prediction) - len(reference))\n")
    assert resolve_metric("mine.py:length_gap", tmp_path).score("abc", "a") == 2.0
    for bad in ("hit@0", "bleu", 3):
        with pytest.raises(ValueError):
            resolve_metric(bad)


def test_evaluate_scores_each_task_with_its_metric(tmp_path):
    config = PipelineConfig.model_validate({"reference_field": "truth", "tasks": [
        {"name": "choice", "match": {"field": "mc"}, "metric": "accuracy"},
        {"name": "entities", "match": {"field": "ner"}, "metric": "micro_f1"},
        {"name": "free", "match": {"field": "free"}},  # no metric: left out of the table
        {"name": "retrieval", "metric": "hit@3"},
    ]})
    write_jsonl(tmp_path / "out.jsonl", [
        {"_index": 0, "_task": "choice", "truth": 1, "prediction": 1},
        {"_index": 1, "_task": "choice", "truth": 2, "prediction": 0},
        {"_index": 2, "_task": "choice", "truth": 3, "prediction": None},
        {"_index": 3, "_task": "retrieval", "truth": [6, 9, 15], "prediction": [9, 1, 15]},
        {"_index": 4, "_task": "entities", "truth": ["a"], "prediction": ["a", "b"]},
        {"_index": 5, "_task": "entities", "truth": ["c"], "prediction": ["c"]},
        {"_index": 6, "_task": "free", "truth": "x", "prediction": "x"},
        {"_index": 7, "_task": "choice", "prediction": 1},
        {"_index": 8, "_task": "gone", "truth": 1, "prediction": 1},
    ])
    report = evaluate(config, tmp_path / "out.jsonl")
    rows = [(row.task, row.metric, row.records, round(row.score, 4)) for row in report.tasks]
    assert rows == [("choice", "accuracy", 3, 0.3333), ("entities", "micro_f1", 2, 0.8),
                    ("retrieval", "hit@3", 1, 0.6667)]
    assert report.overall == pytest.approx((1 / 3 + 0.8 + 2 / 3) / 3)  # each task counts once
    assert report.unscored == {"task 'free' has no metric": 1, "no 'truth' field": 1,
                               "task 'gone' is not in the pipeline": 1}
