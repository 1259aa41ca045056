"""Rank fusion and MMR against hand computations, and the knowledge base's hybrid order on real paragraphs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from llmkit.errors import InvalidRequestError
from llmkit.rag.keywords import keyword_terms
from llmkit.rag.knowledge_base import KnowledgeBase
from llmkit.rag.ranking import maximal_marginal_relevance, reciprocal_rank_fusion
from llmkit.rag.store import Filters

SQUAD = Path(os.environ["LLMKIT_SHARED_DATA"]) / "squad" / "squad2-dev-subset.json"


def test_rrf_sums_one_over_sixty_plus_rank():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]])
    expected = {
        1: 1 / 61 + 1 / 62,  # 0.032522
        3: 1 / 63 + 1 / 61,  # 0.032266
        2: 1 / 62,  # 0.016129
        4: 1 / 63,  # 0.015873
    }
    assert [item for item, _ in fused] == [1, 3, 2, 4]
    assert dict(fused) == pytest.approx(expected, abs=1e-12)


def test_rrf_second_in_both_lists_beats_first_in_one_and_absent_from_the_other():
    fused = reciprocal_rank_fusion([[7, 8], [9, 8]])
    assert fused[0] == (8, pytest.approx(2 / 62))
    assert [item for item, _ in fused[1:]] == [7, 9]  # tied at 1/61: first seen first


def test_rrf_constant_k_is_used():
    assert dict(reciprocal_rank_fusion([[5, 6]], k=0)) == pytest.approx({5: 1.0, 6: 0.5})


def test_mmr_picks_a_diverse_second_item():
    query = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    vectors = np.array(
        [
            [0.8, 0.6, 0.0],  # relevance 0.8
            [0.6, 0.8, 0.0],  # relevance 0.6, similarity to row 0: 0.96 (a near repeat)
            [0.6, 0.0, 0.8],  # relevance 0.6, similarity to row 0: 0.48
        ],
        dtype=np.float32,
    )
    # Relevance alone: row 0, then the first of the two tied at 0.6.
    assert maximal_marginal_relevance(query, vectors, 3, 1.0) == [0, 1, 2]
    # weight 0.5, after row 0: row 1 scores 0.5 * 0.6 - 0.5 * 0.96 = -0.18, row 2 0.5 * 0.6 - 0.5 * 0.48 = 0.06.
    assert maximal_marginal_relevance(query, vectors, 3, 0.5) == [0, 2, 1]
    # weight 0.9: row 1 scores 0.54 - 0.096 = 0.444, row 2 0.54 - 0.048 = 0.492: still the diverse one.
    assert maximal_marginal_relevance(query, vectors, 2, 0.9) == [0, 2]
    assert maximal_marginal_relevance(query, vectors, 10, 0.5) == [0, 2, 1]  # k beyond the rows: all of them


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    """Eight SQuAD paragraphs, four of each article, one file each."""
    folder = tmp_path_factory.mktemp("ranking")
    articles = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    for article in articles:
        for number, paragraph in enumerate(article["paragraphs"][:4]):
            (folder / "docs" / f"{article['title'].lower()}-{number}.txt").parent.mkdir(exist_ok=True)
            (folder / "docs" / f"{article['title'].lower()}-{number}.txt").write_text(paragraph["context"])
    knowledge_base = KnowledgeBase.open("ranking", folder / "store", create=True)
    knowledge_base.index([folder / "docs"])
    yield knowledge_base
    knowledge_base.close()


@pytest.mark.parametrize(
    "query", ["Who was the leader of the Norse raiders who swore fealty?", "What does a complexity class contain?"]
)
def test_hybrid_search_is_the_rank_fusion_of_vector_and_keyword_lists(kb, query):
    vector = [i for i, _ in kb.store.vector_search(kb.embedder.embed([query])[0], 20, Filters())]
    keyword = [i for i, _ in kb.store.keyword_search(keyword_terms(query), 20, Filters())]
    scores: dict[int, float] = {}
    for ranking in (vector, keyword):
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1 / (60 + rank)
    hits = kb.search(query, k=5, mode="hybrid")
    assert [hit.score for hit in hits] == pytest.approx(sorted(scores.values(), reverse=True)[:5])
    assert [hit.chunk.id for hit in hits][:2] == sorted(scores, key=lambda i: -scores[i])[:2]


@pytest.mark.parametrize("fetch_k", [3, 6])
def test_fetch_k_is_how_many_candidates_each_list_gives_the_fusion(kb, fetch_k):
    query = "Norse raiders who swore fealty to the king"
    vector = [i for i, _ in kb.store.vector_search(kb.embedder.embed([query])[0], fetch_k, Filters())]
    keyword = [i for i, _ in kb.store.keyword_search(keyword_terms(query), fetch_k, Filters())]
    fused = reciprocal_rank_fusion([vector, keyword])
    hits = kb.search(query, k=3, mode="hybrid", candidates=fetch_k)
    assert [hit.chunk.id for hit in hits] == [i for i, _ in fused[:3]]
    assert [hit.score for hit in hits] == pytest.approx([score for _, score in fused[:3]])
    with pytest.raises(InvalidRequestError, match="fetch_k .* 2 is fewer than the 3 results"):
        kb.search(query, k=3, candidates=2)


def test_the_document_top_in_both_lists_comes_first(kb):
    query = "Rollo swore fealty to King Charles III of West Francia"
    by_vector = kb.search(query, k=3, mode="vector")
    by_keyword = kb.search(query, k=3, mode="keyword")
    assert by_vector[0].chunk.id == by_keyword[0].chunk.id  # the first Normans paragraph, in both
    hybrid = kb.search(query, k=3, mode="hybrid")
    assert hybrid[0].chunk.id == by_vector[0].chunk.id
    assert Path(hybrid[0].chunk.path).name == "normans-0.txt"
    assert hybrid[0].score == pytest.approx(2 / 61)


def test_vector_scores_are_cosine_and_keyword_scores_are_bm25(kb):
    query = "Norse raiders from Denmark, Iceland and Norway"
    vector_hits = kb.search(query, k=4, mode="vector")
    assert [h.score for h in vector_hits] == pytest.approx([h.similarity for h in vector_hits], abs=1e-4)
    assert [h.score for h in vector_hits] == sorted((h.score for h in vector_hits), reverse=True)
    keyword_hits = kb.search(query, k=4, mode="keyword")
    assert all(h.score > 0 for h in keyword_hits)
    assert all({"norse", "denmark", "iceland", "norway"} & set(keyword_terms(h.chunk.text)) for h in keyword_hits)


def test_mmr_in_search_avoids_returning_near_repeats(kb):
    query = "Normandy, a region in France, is named after the Normans"
    plain = kb.search(query, k=3, mode="vector")
    diverse = kb.search(query, k=3, mode="vector", mmr=0.3)
    assert diverse[0].chunk.id == plain[0].chunk.id  # the most relevant always comes first
    vectors = kb.store.vectors([h.chunk.id for h in diverse])
    plain_vectors = kb.store.vectors([h.chunk.id for h in plain])
    assert float(vectors[0] @ vectors[1]) <= float(plain_vectors[0] @ plain_vectors[1]) + 1e-6
