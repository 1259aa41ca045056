"""Evaluating a knowledge base: where the relevant chunks rank (hit@k, recall@k, MRR), the answers' SQuAD scores and
faithfulness, and a resumable run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmkit.eval.runs import EvalRun, ResumeError
from llmkit.jsonl import read_jsonl
from llmkit.rag.evaluate import QAError, Question, evaluate, read_questions, retrieval_ranks, summarize
from llmkit.rag.knowledge_base import Hit, KnowledgeBase
from llmkit.rag.squad import squad_scores
from llmkit.rag.store import StoredChunk

SQUAD = Path(os.environ["LLMKIT_SHARED_DATA"]) / "squad" / "squad2-dev-subset.json"
ROLLO = (
    "The Normans were descended from Norse raiders and pirates from Denmark,  Iceland\nand Norway who, under "
    "their leader Rollo, agreed to swear fealty to King Charles III of West Francia."
)
HASTINGS = "In 1066, Duke William II of Normandy conquered England killing King Harold II at the Battle of Hastings."
NAME = "The Normans gave their name to Normandy, a region in France."
TURING = "A Turing machine is a mathematical model of a general computing machine."
SETTINGS = {"kb": "squad", "k": 5, "mode": "hybrid"}  # what a run records in run.json


def hits(*texts: str) -> list[Hit]:
    return [
        Hit(StoredChunk(i, text, f"/kb/{i}.md", "Normans", 0, None, None, "2024-01-01"), 1.0 / i, 0.5)
        for i, text in enumerate(texts, 1)
    ]


def test_the_first_relevant_rank_by_answer_string_ignores_case_and_spacing():
    question = Question(0, "From which countries did the Norse originate?", ("denmark, iceland and norway",))
    assert retrieval_ranks(question, hits(HASTINGS, ROLLO)) == (2, [2])
    assert retrieval_ranks(question, hits(ROLLO, HASTINGS)) == (1, [1])
    assert retrieval_ranks(question, hits(HASTINGS, NAME)) == (None, [None])
    either = Question(1, "Who was the duke in the Battle of Hastings?", ("William the Conqueror", "Duke William II"))
    assert retrieval_ranks(either, hits(ROLLO, HASTINGS)) == (2, [2])  # any answer string: one gold item


def test_a_reference_passage_is_found_in_a_chunk_holding_half_its_words():
    # Passage words without stop words: normans, gave, their, name, normandy, region, france (7); half is 3.5.
    question = Question(0, "What is France a region of?", passages=(NAME,))
    four_of_seven = "Normandy is a region of France; the Normans named it."  # normandy, region, france, normans
    two_of_seven = "Normandy is a region by the sea."  # normandy, region
    assert retrieval_ranks(question, hits(two_of_seven, four_of_seven)) == (2, [2])
    assert retrieval_ranks(question, hits(HASTINGS, two_of_seven)) == (None, [None])


def test_each_reference_passage_of_a_question_gets_its_own_rank():
    question = Question(0, "Who were the Normans and what did they conquer?", passages=(ROLLO, HASTINGS, NAME))
    assert retrieval_ranks(question, hits(HASTINGS, TURING, ROLLO)) == (1, [3, 1, None])
    assert retrieval_ranks(question, hits(TURING, TURING)) == (None, [None, None, None])
    # An answer string found earlier than any passage is where the question is first hit.
    both = Question(1, "Where is Normandy?", ("France",), (HASTINGS,))
    assert retrieval_ranks(both, hits(NAME, HASTINGS)) == (1, [2])


def test_summary_is_hit_at_k_and_mean_reciprocal_rank_and_the_answer_scores():
    results = [
        {"rank": 1, "gold_ranks": [1]},
        {"rank": 3, "gold_ranks": [3]},
        {"rank": None, "gold_ranks": [None]},
        {"rank": 2, "gold_ranks": [2], "faithfulness": 0.5, "exact": 0.0, "f1": 0.4},
        {"rank": 1, "gold_ranks": [1], "faithfulness": 1.0, "exact": 1.0, "f1": 1.0},
        {"rank": 1, "gold_ranks": [1], "faithfulness": None},  # answered from a passage: no SQuAD scores
    ]
    summary = summarize(results, [1, 3])
    assert list(summary) == ["hit@1", "hit@3", "mrr", "exact", "f1", "faithfulness"]  # one gold item each: no recall
    assert summary == pytest.approx(
        {
            "hit@1": 3 / 6,
            "hit@3": 5 / 6,
            "mrr": (1 + 1 / 3 + 0 + 1 / 2 + 1 + 1) / 6,
            "exact": 0.5,
            "f1": 0.7,
            "faithfulness": 0.75,
        }
    )


def test_recall_at_k_is_the_share_of_each_questions_passages_found():
    results = [
        {"rank": 1, "gold_ranks": [1, 4, None, 2]},  # top 1: 1 of 4; top 3: 2 of 4
        {"rank": 2, "gold_ranks": [2]},
    ]
    summary = summarize(results, [1, 3])
    assert summary == pytest.approx(
        {
            "hit@1": 1 / 2,
            "hit@3": 1.0,
            "recall@1": (1 / 4 + 0) / 2,
            "recall@3": (2 / 4 + 1) / 2,
            "mrr": (1 + 1 / 2) / 2,
        }
    )


def test_read_questions_accepts_answers_answer_or_passage_and_names_bad_lines(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(
        json.dumps({"question": "Where is Normandy?", "answers": ["France", ""]})
        + "\n"
        + json.dumps({"question": "Who was Rollo?", "answer": "a Viking leader"})
        + "\n"
        + json.dumps({"question": "What is Normandy?", "passage": NAME})
        + "\n",
        encoding="utf-8",
    )
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"question": "Who were the Normans?", "passages": [ROLLO, HASTINGS]}) + "\n")
        squad = {"text": ["Rollo", "Rollo"], "answer_start": [0, 0]}  # Hugging Face `squad` rows
        handle.write(json.dumps({"question": "Who led them?", "answers": squad, "context": ROLLO}) + "\n")
    questions = read_questions(path)
    assert [(q.index, q.answers, q.passages) for q in questions] == [
        (0, ("France",), ()),
        (1, ("a Viking leader",), ()),
        (2, (), (NAME,)),
        (3, (), (ROLLO, HASTINGS)),
        (4, ("Rollo", "Rollo"), (ROLLO,)),
    ]
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"question": "Unanswerable?", "answers": []}) + "\n")
    with pytest.raises(QAError, match=f"{path}:6"):
        read_questions(path)
    path.write_text(json.dumps({"question": "Who?", "answers": [1066]}) + "\n", encoding="utf-8")
    with pytest.raises(QAError, match=f"{path}:1: 'answers' must be a text or a list of texts"):
        read_questions(path)
    with pytest.raises(QAError, match="no such file"):
        read_questions(tmp_path / "missing.jsonl")


@pytest.fixture(scope="module")
def squad_kb(tmp_path_factory):
    """Ten Normans paragraphs (one file each) and the answerable SQuAD questions about them."""
    folder = tmp_path_factory.mktemp("squad-kb")
    normans = json.loads(SQUAD.read_text(encoding="utf-8"))["data"][0]["paragraphs"][:10]
    questions = []
    for number, paragraph in enumerate(normans):
        (folder / "docs").mkdir(exist_ok=True)
        (folder / "docs" / f"p{number:02d}.txt").write_text(paragraph["context"], encoding="utf-8")
        questions += [
            {"question": qa["question"], "answers": [a["text"] for a in qa["answers"]]}
            for qa in paragraph["qas"]
            if not qa["is_impossible"]
        ][:2]
    qa_path = folder / "qa.jsonl"
    qa_path.write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
    kb = KnowledgeBase.open("squad", folder / "store", create=True)
    kb.index([folder / "docs"])
    yield kb, read_questions(qa_path)
    kb.close()


def test_evaluate_writes_one_result_per_question_and_resumes(squad_kb, tmp_path):
    kb, questions = squad_kb
    out = tmp_path / "run"
    results_path = out / "results.jsonl"
    evaluate(kb, questions, EvalRun(out, SETTINGS), k=5)
    results = sorted(read_jsonl(results_path), key=lambda r: r["index"])
    assert [r["index"] for r in results] == list(range(len(questions))) and len(questions) >= 15
    summary = summarize(results, [1, 5])
    assert summary["hit@5"] >= 0.7 and 0 < summary["mrr"] <= summary["hit@5"]
    assert "recall@5" not in summary  # one gold item per question: it would only repeat hit@5
    for record in results:
        if record["rank"] is not None:
            question = questions[record["index"]]
            chunk_text = kb.search(question.question, k=5)[record["rank"] - 1].chunk.text.lower()
            assert any(answer.lower() in chunk_text for answer in question.answers)

    # A run stopped after 6 questions resumes: the rest are added once, the first 6 not redone.
    lines = results_path.read_text(encoding="utf-8").splitlines(keepends=True)
    results_path.write_text("".join(lines[:6]), encoding="utf-8")
    seen = []
    resumed = evaluate(kb, questions, EvalRun(out, SETTINGS), k=5, progress=lambda done, total: seen.append(done))
    assert seen == list(range(len(questions) - 6 + 1))  # only the questions left, then the end
    assert resumed.evaluated == len(questions)
    assert sorted(read_jsonl(results_path), key=lambda r: r["index"]) == results
    other = dict(SETTINGS, mode="keyword")
    with pytest.raises(ResumeError, match="another run"):
        EvalRun(out, other)
    indices = [r["index"] for r in read_jsonl(results_path)]
    assert sorted(indices) == list(range(len(questions)))


def test_evaluate_with_an_answerer_scores_faithfulness(squad_kb, tmp_path):
    kb, questions = squad_kb
    asked = []

    def extractive(messages):
        """Answers with the first sentence of the first source: faithful by construction."""
        asked.append(messages)
        first_source = messages[-1]["content"].split("\n", 3)[3]
        return first_source.split(". ")[0] + "."

    evaluate(kb, questions[:3], EvalRun(tmp_path, SETTINGS), answerer=extractive)
    results = list(read_jsonl(tmp_path / "results.jsonl"))
    assert len(asked) == 3 and all(r["faithfulness"] == 1.0 for r in results)
    assert all(r["answer"] for r in results)
    for row, question in zip(results, questions):  # a whole sentence is no exact match, and its F1 is partial
        assert {"exact": row["exact"], "f1": row["f1"]} == squad_scores(row["answer"], question.answers)
        assert row["exact"] == 0.0 and 0.0 <= row["f1"] < 1.0


def test_answers_are_scored_against_the_gold_answers_as_squad_scores_them(squad_kb, tmp_path):
    kb, questions = squad_kb
    gold = {q.question: q.answers[-1] for q in questions}

    def reader(messages):
        """Answers with a gold answer and a citation, as a good reader model would."""
        return f"{gold[messages[-1]['content'].rsplit('Question: ', 1)[1]]} [1]."

    result = evaluate(kb, questions[:4], EvalRun(tmp_path, SETTINGS), answerer=reader)
    assert result.report.summary["exact"] == result.report.summary["f1"] == {"squad": 1.0}
    scores = json.loads((tmp_path / "scores.json").read_text(encoding="utf-8"))["summary"]
    assert list(scores) == ["hit@1", "hit@3", "hit@5", "mrr", "exact", "f1", "faithfulness"]
    assert "| exact | 1.000 |" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_questions_with_several_passages_get_recall_at_k(squad_kb, tmp_path):
    kb, _ = squad_kb
    normans, complexity = (a["paragraphs"] for a in json.loads(SQUAD.read_text(encoding="utf-8"))["data"])
    passages = (normans[0]["context"], normans[1]["context"], complexity[0]["context"])  # the last is not indexed
    asked = "Who was Rollo, and what impact did the Norman dynasty have on medieval Europe?"
    questions = [
        Question(0, asked, passages=passages),
        Question(1, "When did the Normans first gain a separate identity?", ("10th century",)),
    ]
    result = evaluate(kb, questions, EvalRun(tmp_path, SETTINGS), k=5)
    rows = sorted(read_jsonl(tmp_path / "results.jsonl"), key=lambda r: r["index"])
    ranks, (hit,) = rows[0]["gold_ranks"], rows[1]["gold_ranks"]
    assert None not in ranks[:2] and max(ranks[:2]) <= 5 and ranks[2] is None and rows[0]["rank"] == min(ranks[:2])
    summary = {metric: means["squad"] for metric, means in result.report.summary.items()}
    assert list(summary) == ["hit@1", "hit@3", "hit@5", "recall@1", "recall@3", "recall@5", "mrr"]
    found = float(hit is not None and hit <= 5)
    assert summary["hit@5"] == (1 + found) / 2 and summary["recall@5"] == pytest.approx((2 / 3 + found) / 2)
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| recall@5 |" in report and "| hit@5 |" in report
