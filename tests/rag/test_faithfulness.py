"""Faithfulness of an answer to the retrieved chunks: strict about words the chunks lack, or checked by a judge."""

from __future__ import annotations

import pytest

from llmkit.rag.answer import NOT_FOUND
from llmkit.rag.faithfulness import faithfulness, names_and_numbers
from llmkit.rag.knowledge_base import Hit
from llmkit.rag.store import StoredChunk

# SQuAD 2.0 dev, "Southern_California" (CC BY-SA 4.0): the article on which the default model answered "SCOTLAS".
SOCAL = (
    "Southern California, often abbreviated SoCal, is a geographic and cultural region that generally comprises "
    "California's southernmost 10 counties. The region is traditionally described as \"eight counties\", based on "
    "demographics and economic ties: Imperial, Los Angeles, Orange, Riverside, San Bernardino, San Diego, Santa "
    "Barbara, and Ventura."
)
ROLLO = (
    "The Normans were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, under their "
    "leader Rollo, agreed to swear fealty to King Charles III of West Francia."
)
HASTINGS = "In 1066, Duke William II of Normandy conquered England killing King Harold II at the Battle of Hastings."


def hits(*texts: str) -> list[Hit]:
    return [
        Hit(StoredChunk(i, text, f"/kb/{i}.md", "doc", 0, None, None, "2024-01-01"), 1.0, 0.5)
        for i, text in enumerate(texts, 1)
    ]


def test_an_invented_name_makes_its_claim_unsupported():
    assert faithfulness('Southern California is often abbreviated as "SCOTLAS".', hits(SOCAL)) == 0.0
    assert faithfulness("Southern California is often abbreviated as SoCal [1].", hits(SOCAL)) == 1.0
    faithful = "Southern California is often abbreviated as SoCal. It comprises California's 10 southernmost counties."
    assert faithfulness(faithful, hits(SOCAL)) == 1.0
    assert faithfulness(faithful.replace("10", "12"), hits(SOCAL)) == 0.5  # a number the context lacks


def test_names_and_numbers_are_capitalised_words_after_the_first_and_words_with_digits():
    claim = 'In 1066 William of Normandy was called "SCOTLAS", or SoCal, in the 10th century.'
    assert names_and_numbers(claim) == ["1066", "william", "normandy", "scotlas", "socal", "10th"]


def test_each_claim_scores_the_share_of_its_content_words_in_the_chunks():
    sources = hits(HASTINGS, ROLLO)
    # 1: william, conquered, england, 1066: all in the chunks. 2: rollo, fealty are, "swore" is not ("swear"): 2/3.
    # 3: "France" is a name the chunks lack: 0.
    answer = "William conquered England in 1066. Rollo swore fealty. Paris is the capital of France."
    assert faithfulness(answer, sources) == pytest.approx((1 + 2 / 3 + 0) / 3)
    cited = "William conquered England in 1066 [1], and Rollo was the leader of the Norse [2]."
    assert faithfulness(cited, sources) == 1.0
    assert faithfulness("Yes.", []) == 0.0


def test_an_answer_making_no_claim_has_no_faithfulness():
    assert faithfulness("", hits(HASTINGS)) is None
    assert faithfulness(NOT_FOUND, hits(HASTINGS)) is None


def test_chinese_answers_are_checked_word_by_word():
    chunk = hits("1066年，诺曼底公爵威廉征服了英格兰。")
    assert faithfulness("威廉征服了英格兰。", chunk) == 1.0
    assert faithfulness("巴黎是法国的首都。", chunk) == 0.0
    assert faithfulness("1067年，威廉征服了英格兰。", chunk) == 0.0


def test_a_judge_checks_each_claim_against_the_chunks():
    asked = []

    def judge(messages):
        asked.append(messages[-1]["content"])
        statement = messages[-1]["content"].rsplit("Statement: ", 1)[1]
        return "Yes." if "SoCal" in statement else "I cannot tell from this."  # no verdict counts as no

    answer = "Southern California is often abbreviated as SoCal [1]. Its largest city is San Francisco."
    assert faithfulness(answer, hits(SOCAL, HASTINGS), judge) == 0.5
    assert len(asked) == 2 and all(SOCAL in prompt and HASTINGS in prompt for prompt in asked)
    assert "Statement: Southern California is often abbreviated as SoCal.\n" in asked[0]
    assert faithfulness(answer, hits(SOCAL), lambda messages: "no") == 0.0
    assert faithfulness(NOT_FOUND, hits(SOCAL), judge) is None and len(asked) == 2
