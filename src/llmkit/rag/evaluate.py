"""How well a knowledge base answers a question set: retrieval hit@k, recall@k and MRR; answers' SQuAD scores
and faithfulness.

A question is hit at rank r when the r-th chunk contains one of its answer strings (case and spacing ignored) or
most of the words of one of its reference passages. hit@k counts the questions hit in the top k (LlamaIndex's hit
rate), MRR averages 1 / the first such rank, and recall@k (reported when some question has several reference
passages) is the share of each question's passages found in the top k. Answers are scored by SQuAD's exact match
and F1 against the answer strings, and by faithfulness to the retrieved chunks (see `faithfulness`). Each
question's result is appended as it is scored, so a long run resumes where it stopped (and a different run is
refused the same folder), then the scores and a report are written as `llmkit eval` writes them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.errors import LLMKitError
from llmkit.eval.report import Report, Sample
from llmkit.eval.runs import EvalRun, Evaluation
from llmkit.jsonl import read_jsonl
from llmkit.rag.answer import NOT_FOUND, answer_sentences, build_messages, relevant_hits
from llmkit.rag.faithfulness import Judge, faithfulness
from llmkit.rag.keywords import keyword_terms
from llmkit.rag.knowledge_base import Hit, KnowledgeBase, SearchMode
from llmkit.rag.squad import squad_scores

PASSAGE_OVERLAP = 0.5  # share of a reference passage's words a chunk must hold to count as that passage
Answerer = Callable[[list[dict[str, str]]], str]  # chat messages → the model's answer


class QAError(LLMKitError):
    """A question file that cannot be evaluated: unreadable, or a record without a question and a reference."""


@dataclass(frozen=True)
class Question:
    """One evaluation record: the question, and what a relevant chunk contains (answer strings, reference passages)."""

    index: int
    question: str
    answers: tuple[str, ...] = ()
    passages: tuple[str, ...] = ()


def read_questions(path: Path) -> list[Question]:
    """Records `{"question", "answers": [...] | "answer": "...", "passages": [...] | "passage" | "context"}` (answer
    strings, reference passages or both), one JSON object per line."""
    if not path.is_file():
        raise QAError(f"{path}: no such file")
    questions = []
    for number, record in enumerate(read_jsonl(path), 1):
        question = record.get("question")
        try:
            answers = _texts(record, "answers", "answer")
            passages = _texts(record, "passages", "passage", "context")
        except QAError as error:
            raise QAError(f"{path}:{number}: {error}") from None
        if not isinstance(question, str) or not question.strip() or not (answers or passages):
            raise QAError(
                f"{path}:{number}: needs a 'question' and 'answers' (or 'answer') or reference 'passages' "
                "(or 'passage', 'context')"
            )
        questions.append(Question(len(questions), question, answers, passages))
    if not questions:
        raise QAError(f"{path}: no questions")
    return questions


def retrieval_ranks(question: Question, hits: Sequence[Hit]) -> tuple[int | None, list[int | None]]:
    """The 1-based rank of the first chunk holding an answer string or a reference passage, and for each gold item
    (each reference passage, or else the answer strings taken together) the rank of the first chunk holding it;
    None where no chunk does."""
    answers = [_squash(a) for a in question.answers]
    passages = [set(keyword_terms(p)) for p in question.passages]
    first, gold = None, [None] * max(len(passages), 1)
    for rank, hit in enumerate(hits, 1):
        holds_answer = any(answer in _squash(hit.chunk.text) for answer in answers)
        terms = set(keyword_terms(hit.chunk.text))
        held = [bool(p) and len(p & terms) >= PASSAGE_OVERLAP * len(p) for p in passages] or [holds_answer]
        if first is None and (holds_answer or any(held)):
            first = rank
        gold = [rank if found is None and holds else found for found, holds in zip(gold, held)]
    return first, gold


def evaluate(
    kb: KnowledgeBase,
    questions: Sequence[Question],
    run: EvalRun,
    *,
    k: int = 5,
    mode: SearchMode = "hybrid",
    answerer: Answerer | None = None,
    judge: Judge | None = None,
    progress: Callable[[int, int], None] | None = None,
    **search: Any,
) -> Evaluation:
    """Score every question into the run's folder (results.jsonl row by row, resuming what it holds), then
    write scores.json, report.md and report.html. `search` goes on to `KnowledgeBase.search` (filters, mmr,
    reranker, candidates)."""

    def score(batch: list[Question]) -> list[dict]:
        return [_score(kb, question, answerer, judge, k=k, mode=mode, **search) for question in batch]

    run.complete(run.pending(questions), score, progress=progress)
    rows = [run.rows[question.index] for question in questions]
    ks = sorted({1, 3, k})
    summary = summarize(rows, ks)
    recall = reports_recall(rows)
    samples = [
        Sample(
            q.index,
            {"question": q.question, "answer": row.get("answer") or "", "found at": str(row["rank"])},
            {kb.name: {metric: question_scores(row, ks, recall).get(metric, math.nan) for metric in summary}},
        )
        for q, row in zip(questions, rows)
    ]
    pool = f", fetch_k={search['candidates']}" if search.get("candidates") else ""
    details = {"knowledge base": kb.name, "questions": str(len(rows)), "search": f"{mode}, k={k}{pool}"}
    report = Report("Retrieval evaluation", [kb.name], {m: {kb.name: v} for m, v in summary.items()}, samples, details)
    return run.finish(report, {"questions": len(rows), "summary": summary}, len(rows))


def _score(
    kb: KnowledgeBase, question: Question, answerer: Answerer | None, judge: Judge | None, **search: Any
) -> dict:
    """One question's row: where its relevant chunks rank, the sources searched, and the answer with its scores."""
    hits = kb.search(question.question, **search)
    first, gold = retrieval_ranks(question, hits)
    row = dict(question=question.question, rank=first, gold_ranks=gold, sources=[h.chunk.path for h in hits])
    if answerer is not None:
        grounded = relevant_hits(hits)
        answer = answerer(build_messages(question.question, grounded)) if grounded else None
        row["answer"] = answer
        row["faithfulness"] = faithfulness(answer, grounded, judge) if grounded else None
        if question.answers:
            row.update(squad_scores(squad_prediction(answer), question.answers))
    return row


def squad_prediction(answer: str | None) -> str:
    """The answer as SQuAD scores it: its text without citation markers; empty when the model declined or was not
    asked (nothing relevant was retrieved)."""
    if answer is None or answer.strip() == NOT_FOUND:
        return ""
    return " ".join(answer_sentences(answer))


def reports_recall(rows: Sequence[dict]) -> bool:
    """Whether recall@k says more than hit@k: some question has several reference passages."""
    return any(len(row.get("gold_ranks", ())) > 1 for row in rows)


def question_scores(row: dict, ks: Sequence[int], recall: bool) -> dict[str, float]:
    """One question's scores: hit in the top k (1 or 0) and, when `recall`, the share of its gold items found there,
    for each k; reciprocal rank; SQuAD exact and F1 and faithfulness when it was answered (faithfulness NaN when
    nothing relevant was retrieved or the answer makes no claim)."""
    rank = row["rank"]
    scores = {f"hit@{k}": float(rank is not None and rank <= k) for k in ks}
    if recall:
        gold = row["gold_ranks"]
        scores |= {f"recall@{k}": sum(r is not None and r <= k for r in gold) / len(gold) for k in ks}
    scores["mrr"] = 1.0 / rank if rank else 0.0
    scores |= {metric: row[metric] for metric in ("exact", "f1") if metric in row}
    if "faithfulness" in row:
        scores["faithfulness"] = math.nan if row["faithfulness"] is None else row["faithfulness"]
    return scores


def summarize(results: Sequence[dict], ks: Sequence[int]) -> dict[str, float]:
    """hit@k (and recall@k when it differs) for each k, MRR, and the means of the answer scores over the questions
    that have them."""
    recall = reports_recall(results)
    per_question = [question_scores(row, ks, recall) for row in results]
    summary = {}
    for metric in dict.fromkeys(name for scores in per_question for name in scores):
        values = [v for scores in per_question if not math.isnan(v := scores.get(metric, math.nan))]
        if values:
            summary[metric] = sum(values) / len(values)
    return summary


def _texts(record: dict, *names: str) -> tuple[str, ...]:
    """The non-blank texts of the first of `names` in the record: a text, a list of texts, or a Hugging Face
    `squad` answers object (`{"text": [...], "answer_start": [...]}`)."""
    name = next((name for name in names if name in record), None)
    value = record.get(name)
    if isinstance(value, dict) and "text" in value:
        value = value["text"]
    value = [value] if isinstance(value, str) else [] if value is None else value
    if not isinstance(value, list) or not all(isinstance(text, str) for text in value):
        raise QAError(f"{name!r} must be a text or a list of texts")
    return tuple(text for text in value if text.strip())


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()
