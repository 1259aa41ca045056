"""Scores in lm-evaluation-harness's terms, so a llmkit figure can be set beside an lm-eval one.

The arithmetic is lm-eval's: `acc` / `acc_norm` of one question as `process_results` of a multiple-choice task
(lm_eval/api/task.py), their aggregation `mean` and its standard error `mean_stderr` (lm_eval/api/metrics.py), and
the results file in the shape `lm_eval --output_path` writes (lm_eval/evaluator_utils.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from llmkit.eval.runs import EvalError

METRICS = ("acc", "acc_norm")
FILTER = "none"  # lm-eval's name for "no answer filter", part of every metric key ("acc,none")
NOT_AVAILABLE = "N/A"  # what lm-eval writes for the standard error of fewer than two values
TASK_SECTIONS = ("results", "configs", "versions", "n-shot", "higher_is_better", "n-samples")  # keyed by task
RESULT_HEADER = ["Tasks", "Version", "n-shot", "Metric", "Value", "± Stderr"]  # the columns lm-eval prints


def predictions(logprobs: Sequence[float], choices: Sequence[str]) -> dict[str, int]:
    """The choice each metric picks: `acc` the highest log-likelihood, `acc_norm` the highest per character of the
    choice's text (the delimiter before it not counted); ties go to the earlier choice, as numpy's argmax."""
    per_character = [logprob / len(choice) for logprob, choice in zip(logprobs, choices)]
    return {"acc": _argmax(logprobs), "acc_norm": _argmax(per_character)}


def mean(values: Sequence[float]) -> float:
    """lm-eval's `mean` aggregation."""
    return sum(values) / len(values)


def mean_stderr(values: Sequence[float]) -> float | str:
    """lm-eval's `mean_stderr`: the sample standard deviation (n − 1 in the denominator) over √n; "N/A" for fewer
    than two values, as lm-eval reports it."""
    if len(values) < 2:
        return NOT_AVAILABLE
    mu = mean(values)
    return math.sqrt(sum((x - mu) ** 2 for x in values) / (len(values) - 1)) / math.sqrt(len(values))


def aggregate(scores: Sequence[Mapping[str, float]]) -> dict[str, float | str]:
    """Each metric's mean over the questions and its standard error: {"acc": …, "acc_stderr": …, …}."""
    result: dict[str, float | str] = {}
    for metric in METRICS:
        values = [score[metric] for score in scores]
        result[metric], result[f"{metric}_stderr"] = mean(values), mean_stderr(values)
    return result


def task_results(
    task: str, aggregated: Mapping[str, float | str], *, count: int, total: int, num_fewshot: int, config: dict
) -> dict[str, Any]:
    """One task's entries of the results file: its metrics under "metric,none" keys, and its config, version,
    n-shot, higher_is_better and n-samples (`total` questions, `count` of them scored: fewer under --limit)."""
    metrics = {f"{name},{FILTER}": value for name, value in aggregated.items()}
    return {
        "results": {task: {"name": task, "alias": task, "sample_len": count, **metrics}},
        "configs": {task: config},
        "versions": {task: config["metadata"]["version"]},
        "n-shot": {task: num_fewshot},
        "higher_is_better": {task: dict.fromkeys(METRICS, True)},
        "n-samples": {task: {"original": total, "effective": count}},
    }


def sample_size(total: int, limit: float | None) -> int:
    """How many of `total` questions `--limit` keeps, as lm-eval's `get_sample_size`: a count, or below 1 a
    fraction rounded up; all without a limit."""
    if limit is None:
        return total
    if limit <= 0:
        raise EvalError(f"--limit must be a count of questions or a fraction above 0, not {limit:g}")
    return min(total, math.ceil(total * limit) if limit < 1 else int(limit))


def run_config(model: str, loading: Mapping[str, Any], limit: float | None) -> dict[str, Any]:
    """The results file's "config": which model, loaded how, and the --limit (lm-eval's `model_args`, `limit`)."""
    return {"model": "llmkit", "model_args": {"pretrained": model, **loading}, "limit": limit}


def merge_results(parts: Iterable[Mapping[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    """One results file from the task entries of several (`task_results`, or results files), with the run's
    `config` (model, limit)."""
    merged: dict[str, Any] = {section: {} for section in TASK_SECTIONS}
    for part in parts:
        for section in TASK_SECTIONS:
            merged[section] |= part[section]
    return {**{key: dict(sorted(value.items())) for key, value in merged.items()}, "config": config}


def result_rows(results: Mapping[str, Any]) -> list[list[str]]:
    """A results file as the table lm-eval prints: task, version, n-shot, metric, value, ± stderr."""
    rows = []
    for task, entry in results["results"].items():
        for metric in METRICS:
            stderr = entry[f"{metric}_stderr,{FILTER}"]
            cells = [str(results["versions"][task]), str(results["n-shot"][task]), metric]
            cells += [f"{entry[f'{metric},{FILTER}']:.4f}", stderr if isinstance(stderr, str) else f"{stderr:.4f}"]
            rows.append([task, *cells])
    return rows


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])
