"""Scores of one prediction against one reference, each in [0, 1], and the lookup of a metric by name.

Metrics are plain functions `(prediction, reference) -> float`, so a user's own is a function too:
`resolve_metric` takes a built-in name or the dotted path / file path of such a function.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from numbers import Real

from llmkit.errors import LLMKitError
from llmkit.user_code import load_object

Metric = Callable[[str, str], float]

# Scripts written without spaces between words: every character is a token of its own.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W_])+")


class MetricError(LLMKitError):
    """A metric that cannot be used: unknown name, unimportable function, or one that returns no number."""


def normalize(text: str) -> str:
    """Text with outer whitespace stripped, inner runs of whitespace made one space, and case folded."""
    return " ".join(text.split()).casefold()


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the texts are equal after `normalize` (whitespace and case do not count), else 0.0."""
    return float(normalize(prediction) == normalize(reference))


def tokenize(text: str) -> list[str]:
    """Lower-cased words of letters and digits, and each CJK character alone, so Chinese needs no segmenter.

    On English text this is the `rouge-score` package's default tokenizer (no stemming).
    """
    return _TOKEN.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (dynamic programming, two rows)."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure: harmonic mean of LCS precision and recall over `tokenize` tokens (0.0 if either is empty)."""
    predicted, expected = tokenize(prediction), tokenize(reference)
    common = lcs_length(predicted, expected)
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


BUILTIN_METRICS: dict[str, Metric] = {"exact": exact_match, "rouge_l": rouge_l}


def resolve_metric(name: str) -> Metric:
    """A built-in metric (exact, rouge_l) or a user's function: `package.module:function`,
    `package.module.function` (importable: installed or on PYTHONPATH) or `path/to/file.py:function`."""
    if name in BUILTIN_METRICS:
        return BUILTIN_METRICS[name]
    if ":" not in name and "." not in name:
        raise MetricError(
            f"unknown metric {name!r}: use {', '.join(BUILTIN_METRICS)}, package.module:function "
            "or path/to/file.py:function"
        )
    function = load_object(name, "metric")
    if not callable(function):
        raise MetricError(f"metric {name!r}: {type(function).__name__} is not a function")
    return _returning_numbers(function, name)


def _returning_numbers(function: Callable[[str, str], object], name: str) -> Metric:
    """The user's function, checked to return a real number on every call (bools count as 0 and 1)."""

    def metric(prediction: str, reference: str) -> float:
        value = function(prediction, reference)
        if not isinstance(value, Real):
            raise MetricError(f"metric {name!r} returned {type(value).__name__} {value!r}; it must return a number")
        return float(value)

    return metric
