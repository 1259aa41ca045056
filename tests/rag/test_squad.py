"""SQuAD exact match and F1, with the official SQuAD v2.0 evaluation script's arithmetic on fixed answers."""

from __future__ import annotations

import pytest

from llmkit.rag.answer import NOT_FOUND
from llmkit.rag.evaluate import squad_prediction
from llmkit.rag.squad import compute_exact, compute_f1, normalize_answer, squad_scores


def test_normalize_answer_drops_case_punctuation_articles_and_extra_spaces():
    # Punctuation is deleted, not replaced by a space: "10th-century" becomes one token.
    assert normalize_answer("The  Normans, in 10th-century France!") == "normans in 10thcentury france"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("Theatre") == "theatre"  # only whole words are articles


def test_exact_and_f1_of_one_gold_answer():
    assert compute_exact("in the 10th and 11th centuries", "In the 10th and 11th centuries.") == 1
    # gold: 10th and 11th centuries (4 tokens); prediction: normans were in normandy in 10th and 11th centuries (9).
    prediction = "The Normans were in Normandy in the 10th and 11th centuries"
    assert compute_f1("10th and 11th centuries", prediction) == pytest.approx(2 * (4 / 9) * 1 / (4 / 9 + 1))
    # "Denmark,Iceland" is one token once its comma is gone: 2 common tokens, precision 2/3, recall 2/4.
    assert compute_f1("Denmark, Iceland and Norway", "Denmark,Iceland and Norway") == pytest.approx(4 / 7)
    assert compute_f1("France", "Normandy") == 0.0


def test_a_question_scores_its_best_gold_answer():
    prediction = "The Normans were in Normandy in the 10th and 11th centuries"
    scores = squad_scores(prediction, ["10th and 11th centuries", "in the 10th and 11th centuries"])
    assert scores == pytest.approx({"exact": 0.0, "f1": 5 / 7})  # the second: 5 common tokens of 9 and of 5
    assert squad_scores("in the 10th and 11th centuries.", ["10th century", "In the 10th and 11th centuries"]) == {
        "exact": 1.0,
        "f1": 1.0,
    }


def test_without_a_gold_answer_only_the_empty_answer_is_right():
    assert squad_scores("", ["France"]) == {"exact": 0.0, "f1": 0.0}
    assert squad_scores("", ["", "a"]) == {"exact": 1.0, "f1": 1.0}  # both normalise to nothing: unanswerable
    assert squad_scores("France", []) == {"exact": 0.0, "f1": 0.0}


def test_the_prediction_is_the_answer_without_citations_and_empty_when_declined():
    assert squad_prediction("In the 10th and 11th centuries [1]. Rollo led them [2, 3].") == (
        "In the 10th and 11th centuries. Rollo led them."
    )
    assert squad_prediction(NOT_FOUND) == "" and squad_prediction(None) == ""
