"""Faithfulness: the share of an answer's claims that the retrieved chunks support, by their words or by a judge.

The claims are the answer's sentences, citation markers dropped. By words, a claim holding a name or a number found
nowhere in the chunks is unsupported outright (an invented "SCOTLAS" where the text says "SoCal"), and any other
claim scores the share of its content words that occur in the chunks, so every word the context lacks counts
against it. With a judge model, RAGAS-style, each claim is put to the judge with the chunks and scores 1
when the judge says it can be inferred from them. An answer that declines (`NOT_FOUND`) makes no claim.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from llmkit.rag.answer import NOT_FOUND, answer_sentences
from llmkit.rag.keywords import STOPWORDS, keyword_terms, words
from llmkit.rag.knowledge_base import Hit

Judge = Callable[[list[dict[str, str]]], str]  # chat messages → the judge model's reply
CLAIM_PROMPT = (
    "Context:\n\n{context}\n\nStatement: {claim}\n\nCan the statement be inferred from the context alone? "
    "Reply with one word: yes or no."
)
_VERDICT = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def faithfulness(answer: str, hits: Sequence[Hit], judge: Judge | None = None) -> float | None:
    """Mean support of the answer's claims by the chunks (see the module docstring); None when it makes none."""
    claims = [] if answer.strip() == NOT_FOUND else [s for s in answer_sentences(answer) if keyword_terms(s)]
    if not claims:
        return None
    if judge is not None:
        context = "\n\n".join(hit.chunk.text for hit in hits)
        return sum(judged_supported(claim, context, judge) for claim in claims) / len(claims)
    context_words = {word.lower() for hit in hits for word in words(hit.chunk.text)}
    return sum(word_support(claim, context_words) for claim in claims) / len(claims)


def word_support(claim: str, context_words: set[str]) -> float:
    """0 when a name or number of the claim is not among the context's (lower-cased) words, else the share of the
    claim's content words that are."""
    if any(name not in context_words for name in names_and_numbers(claim)):
        return 0.0
    content = keyword_terms(claim)
    return sum(word in context_words for word in content) / len(content) if content else 1.0


def names_and_numbers(claim: str) -> list[str]:
    """The claim's numbers (words with a digit) and names (capitalised words other than its first, and words with
    a capital after their first letter, like "SoCal" or "SCOTLAS"), lower-cased; stop words are neither."""
    found = []
    for position, word in enumerate(words(claim)):
        name = (word[:1].isupper() and position > 0) or any(c.isupper() for c in word[1:])
        if (name or any(c.isdigit() for c in word)) and word.lower() not in STOPWORDS:
            found.append(word.lower())
    return found


def judged_supported(claim: str, context: str, judge: Judge) -> bool:
    """Whether the judge's first yes or no about the claim, given the context, is yes (no verdict counts as no)."""
    reply = judge([{"role": "user", "content": CLAIM_PROMPT.format(context=context, claim=claim)}])
    verdict = _VERDICT.search(reply)
    return verdict is not None and verdict.group(1).lower() == "yes"
