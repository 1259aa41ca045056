"""SQuAD's answer scores, computed as the official SQuAD v2.0 evaluation script computes them.

Both texts are normalised (lower case; punctuation, the articles a / an / the and extra whitespace removed);
exact match is equality of the normalised texts, F1 the overlap of their whitespace tokens. A question's score
is the best over its gold answers, and a question without one is scored against the empty answer.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from llmkit.eval.metrics import f_measure

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """The script's `normalize_answer`: lower-cased, punctuation removed, articles removed, whitespace collapsed."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def compute_exact(gold: str, prediction: str) -> int:
    """1 when the normalised texts are equal, else 0."""
    return int(normalize_answer(gold) == normalize_answer(prediction))


def compute_f1(gold: str, prediction: str) -> float:
    """Token F1 of the normalised texts; when either has no token, 1 if both have none, else 0."""
    gold_tokens, predicted_tokens = normalize_answer(gold).split(), normalize_answer(prediction).split()
    if not gold_tokens or not predicted_tokens:
        return float(gold_tokens == predicted_tokens)
    common = sum((Counter(gold_tokens) & Counter(predicted_tokens)).values())
    return f_measure(common, len(predicted_tokens), len(gold_tokens))


def squad_scores(prediction: str, answers: Sequence[str]) -> dict[str, float]:
    """`exact` and `f1` of one prediction: the maximum over the gold answers that survive normalisation,
    or against the empty answer when none does (an unanswerable question)."""
    golds = [answer for answer in answers if normalize_answer(answer)] or [""]
    return {
        "exact": float(max(compute_exact(gold, prediction) for gold in golds)),
        "f1": max(compute_f1(gold, prediction) for gold in golds),
    }
