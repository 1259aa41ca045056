"""Answers grounded in retrieved chunks: the prompt that asks for cited answers, and the citations found in one.

The model sees the question and the chunks numbered [1] … [k], with where each comes from, and is told
to answer only from them and to cite them by number. When no chunk is similar enough to the question,
no model is asked: the answer is `NOT_FOUND`, since a small model would otherwise answer from memory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from llmkit.rag.keywords import keyword_terms
from llmkit.rag.knowledge_base import Hit
from llmkit.rag.store import StoredChunk

NOT_FOUND = "Not found in the knowledge base."
DEFAULT_MIN_SIMILARITY = 0.25  # cosine; all-MiniLM-L6-v2 puts unrelated text near 0.1 and answers above 0.3
SYSTEM_PROMPT = (
    "Answer the question using only the numbered sources. Cite each source you use by its number in "
    "square brackets, like [1] or [2]. If the sources do not contain the answer, reply exactly: "
    f"{NOT_FOUND}"
)
_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_CITATION_MARKER = re.compile(r"\s*" + _CITATION.pattern)  # with the space before it
_SENTENCE_END = re.compile(r"(?<=[.!?。！？\n])\s*")
MIN_SUPPORT = 0.5  # share of a sentence's content words a source must contain to be credited with it


def relevant_hits(hits: Sequence[Hit], min_similarity: float = DEFAULT_MIN_SIMILARITY) -> list[Hit]:
    """The hits similar enough to the question to answer from, in their ranked order."""
    return [hit for hit in hits if hit.similarity >= min_similarity]


def source_label(chunk: StoredChunk) -> str:
    """Where a chunk comes from, for people: path, then page or heading."""
    place = f"page {chunk.page}" if chunk.page is not None else chunk.heading
    return f"{chunk.path} ({place})" if place else chunk.path


def build_messages(question: str, hits: Sequence[Hit]) -> list[dict[str, str]]:
    """Chat messages asking for an answer from `hits` only, each numbered from 1 for citation."""
    sources = "\n\n".join(
        f"[{number}] {hit.chunk.title} — {source_label(hit.chunk)}\n{hit.chunk.text}"
        for number, hit in enumerate(hits, 1)
    )
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Sources:\n\n{sources}\n\nQuestion: {question}"},
    ]


def cited_numbers(answer: str, count: int) -> list[int]:
    """The source numbers an answer cites ([2], [1, 3]), in first-cited order, ignoring numbers beyond `count`."""
    numbers = (int(n) for group in _CITATION.findall(answer) for n in group.split(","))
    return list(dict.fromkeys(n for n in numbers if 1 <= n <= count))


def answer_sentences(answer: str) -> list[str]:
    """The answer's sentences, citation markers ([1], [2, 3]) removed: the claims it makes."""
    sentences = _SENTENCE_END.split(_CITATION_MARKER.sub("", answer))
    return [" ".join(sentence.split()) for sentence in sentences if sentence.strip()]


def sentence_support(answer: str, hits: Sequence[Hit], min_support: float = MIN_SUPPORT) -> list[int | None]:
    """For each sentence of the answer with content words: the number of the source containing most of them,
    if at least `min_support` of them, else None (a claim the sources do not back by their words)."""
    sources = [set(keyword_terms(hit.chunk.text)) for hit in hits]
    support = []
    for sentence in answer_sentences(answer):
        words = set(keyword_terms(sentence))
        if not words:
            continue
        shares = [len(words & source) / len(words) for source in sources] or [0.0]
        best = max(range(len(shares)), key=shares.__getitem__)
        support.append(best + 1 if shares[best] >= min_support else None)
    return support


def supporting_numbers(answer: str, hits: Sequence[Hit]) -> list[int]:
    """Source numbers that back the answer by its words: the citations of an answer that cites nothing
    (small models often don't)."""
    return list(dict.fromkeys(n for n in sentence_support(answer, hits) if n is not None))
