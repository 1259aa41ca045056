"""`llmkit rag` as a user runs it: index a folder, ask questions of examples/rag offline, evaluate on its QA set."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmkit.cli import rag
from llmkit.errors import InvalidRequestError, ModelNotFoundError
from llmkit.jsonl import read_jsonl
from llmkit.rag.answer import NOT_FOUND

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rag"
SQUAD = Path(os.environ["LLMKIT_SHARED_DATA"]) / "squad" / "squad2-dev-subset.json"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A store holding knowledge base `examples` built from examples/rag/docs (shared by the test modules that use
    it: a later module's run finds every file unchanged)."""
    from llmkit.rag.knowledge_base import KnowledgeBase

    location = tmp_path_factory.getbasetemp() / "rag-examples"
    kb = KnowledgeBase.open("examples", location, create=True)
    report = kb.index([EXAMPLES / "docs"])
    assert not report.failed and kb.store.count_chunks() > 0
    kb.close()
    return location


def examples_kb(store: Path) -> list[str]:
    return ["--kb", "examples", "--store", str(store)]


def test_ask_answers_with_a_citation_of_the_right_document(llmkit, store):
    result = llmkit("rag", "ask", "Who conquered England in 1066?", *examples_kb(store), "-n", "32")
    assert result.returncode == 0, result.stderr
    answer, _, sources = result.stdout.partition("Sources")
    assert answer.strip() and sources, result.stdout
    listed = [line for line in sources.splitlines() if line.startswith("[")]
    assert listed and all("normans.md" in line for line in listed), result.stdout
    assert "computational_complexity_theory" not in sources


def test_ask_off_topic_says_not_found_without_loading_a_model(llmkit, store):
    # A model that cannot be loaded proves none is: the question is refused before any model is needed.
    question = "How long should sourdough bread rise before baking?"
    result = llmkit("rag", "ask", question, *examples_kb(store), "--model", "/nonexistent/chat-model")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == NOT_FOUND
    assert "loading" not in result.stderr


@pytest.fixture(scope="module")
def filtered_search(llmkit, store) -> list[list[str]]:
    """`llmkit rag search` for a question about the HTML document, limited to Markdown files: its table rows."""
    filters = ["--source", "*.md", "--after", "2000-01-01"]
    result = llmkit("rag", "search", "What is a Turing machine?", *examples_kb(store), "-k", "3", *filters)
    assert result.returncode == 0, result.stderr
    return search_rows(result.stdout)


def test_search_shows_the_matching_chunks_within_the_filters(filtered_search):
    assert [row[0] for row in filtered_search] == ["1", "2", "3"]
    normans = " ".join((EXAMPLES / "docs" / "normans.md").read_text(encoding="utf-8").split())
    for number, score, similarity, source, text in filtered_search:
        assert " ".join(text.split())[:60] in normans  # the filter wins over relevance: no chunk of the HTML page
        assert float(similarity) < 0.3 and float(score) > 0


def test_search_names_each_source_file_in_full(filtered_search):
    """Output piped to a file is 80 columns wide: the source must still say which file a chunk comes from."""
    assert all("normans.md" in row[3] for row in filtered_search), [row[3] for row in filtered_search]


def search_rows(stdout: str) -> list[list[str]]:
    """The rows of `llmkit rag search`'s table (#, score, sim, source, text), each cell's wrapped lines rejoined."""
    rows, current = [], None
    for line in stdout.splitlines():
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip("│").split("│")]
            if current is None:
                current = cells
            else:
                current = [
                    a + (" " if a and b and column == 4 else "") + b
                    for column, (a, b) in enumerate(zip(current, cells))
                ]
        elif current is not None:
            rows.append(current)
            current = None
    return rows


@pytest.fixture(scope="module")
def qa(tmp_path_factory) -> Path:
    """Twenty questions of examples/rag/qa.jsonl: the first ten about each document."""
    records = [json.loads(line) for line in (EXAMPLES / "qa.jsonl").read_text(encoding="utf-8").splitlines()]
    subset = [r for r in records if r["source"] == "normans.md"][:10]
    subset += [r for r in records if r["source"] == "computational_complexity_theory.html"][:10]
    path = tmp_path_factory.mktemp("qa") / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in subset), encoding="utf-8")
    return path


def eval_summary(out: Path) -> dict:
    """scores.json flattened: the run's settings, the question count and the metrics."""
    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    return {**scores, **scores.pop("summary")}


def table_rows(stdout: str) -> dict[str, str]:
    """The rows of a two-column rich table as {first cell: second cell}."""
    cells = [line.strip("│┃ ").split("│" if "│" in line else "┃") for line in stdout.splitlines()]
    return {row[0].strip(): row[1].strip() for row in cells if len(row) == 2}


def results_indices(out: Path) -> list[int]:
    return [json.loads(line)["index"] for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def test_eval_prints_hit_rate_and_mrr_and_resumes_without_duplicates(llmkit, store, qa, tmp_path):
    out = tmp_path / "eval"
    args = ["rag", "eval", "--qa", str(qa), *examples_kb(store), "--out", str(out), "-k", "5"]
    result = llmkit(*args)
    assert result.returncode == 0, result.stderr
    printed = table_rows(result.stdout)
    assert list(printed) == ["metric", "hit@1", "hit@3", "hit@5", "mrr"]
    assert sorted(results_indices(out)) == list(range(20))
    summary = eval_summary(out)
    assert summary["questions"] == 20 and summary["mode"] == "hybrid" and summary["k"] == 5
    assert 0.5 <= summary["hit@5"] <= 1.0 and summary["hit@1"] <= summary["hit@3"] <= summary["hit@5"]
    assert all(printed[name] == f"{summary[name]:.3f}" for name in ("hit@1", "hit@3", "hit@5", "mrr"))

    # Interrupted after 8 questions: the re-run scores the other 12 and writes no duplicates.
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[:8]), encoding="utf-8")
    again = llmkit(*args)
    assert again.returncode == 0, again.stderr
    assert sorted(results_indices(out)) == list(range(20))
    assert (out / "results.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:8] == lines[:8]
    assert eval_summary(out) == summary


def test_eval_in_another_mode_does_not_report_the_first_modes_results(llmkit, store, qa, tmp_path):
    """Comparing search modes (or knowledge bases) is what an eval is for; with the same --out (the default is
    always eval/rag) a second run must not pass off the first run's ranks as its own."""
    from llmkit.eval.runs import EvalRun
    from llmkit.rag.evaluate import evaluate, read_questions, summarize
    from llmkit.rag.knowledge_base import KnowledgeBase

    out = tmp_path / "eval"
    kb = KnowledgeBase.open("examples", store)
    questions = read_questions(qa)
    settings = dict(kb="examples", store=kb.store.location, qa=str(qa.resolve()), k=5, answer=False, model=None)
    evaluate(kb, questions, EvalRun(out, {**settings, "judge": None, "mode": "vector"}), k=5, mode="vector")
    keyword_out = tmp_path / "keyword"
    evaluate(kb, questions, EvalRun(keyword_out, {**settings, "judge": None, "mode": "keyword"}), k=5, mode="keyword")
    expected = summarize(list(read_jsonl(keyword_out / "results.jsonl")), [1, 3, 5])
    kb.close()
    assert expected != summarize(list(read_jsonl(out / "results.jsonl")), [1, 3, 5])  # the modes do differ here

    keyword = llmkit(
        "rag", "eval", "--qa", str(qa), *examples_kb(store), "--out", str(out), "-k", "5", "--mode", "keyword"
    )
    if keyword.returncode == 0:
        summary = eval_summary(out)
        assert {name: summary[name] for name in expected} == pytest.approx(expected)
    else:  # refusing to mix runs is fine too, with one clear error line
        assert keyword.returncode == 2 and keyword.stderr.startswith("error: ")


def test_index_reports_a_broken_file_and_refuses_new_chunk_sizes(llmkit, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    normans = json.loads(SQUAD.read_text(encoding="utf-8"))["data"][0]["paragraphs"]
    (docs / "normans.md").write_text("# Normans\n\n" + normans[0]["context"], encoding="utf-8")
    (docs / "events.json").write_text(
        json.dumps([{"id": "hastings", "body": normans[16]["context"]}]), encoding="utf-8"
    )
    (docs / "records.jsonl").write_text(
        json.dumps({"body": normans[25]["context"]}) + "\n" + '{"body": "cut off\n', encoding="utf-8"
    )
    store = tmp_path / "store"
    result = llmkit("rag", "index", str(docs), "--kb", "mine", "--store", str(store), "--text-field", "body")
    assert result.returncode == 1  # the good files are indexed, and the run says it was not complete
    rows = table_rows(result.stdout)
    assert rows["added"] == "2" and rows["failed"] == "1" and rows["unchanged"] == "0"
    assert "skipped" in result.stderr and "records.jsonl:2" in result.stderr.replace("\n", "")
    assert (store / "mine.sqlite").is_file()

    refused = llmkit("rag", "index", str(docs), "--kb", "mine", "--store", str(store), "--chunk-tokens", "100")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: ") and "chunk size 254" in refused.stderr
    assert "Traceback" not in refused.stderr

    deleted = llmkit("rag", "delete", "--kb", "mine", "--store", str(store))
    assert deleted.returncode == 0 and "deleted knowledge base mine" in deleted.stdout
    assert not any(store.iterdir())  # the database, its WAL files and the vector index


def test_langchain_names_are_aliases_of_the_chunk_options(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    normans = json.loads(SQUAD.read_text(encoding="utf-8"))["data"][0]["paragraphs"]
    (docs / "normans.txt").write_text(normans[0]["context"] + "\n\n" + normans[1]["context"], encoding="utf-8")
    store = tmp_path / "store"
    args = ["index", str(docs), "--kb", "lc", "--store", str(store), "--chunk-size", "60", "--chunk-overlap", "12"]
    result = CliRunner().invoke(rag.app, args)
    assert result.exit_code == 0, result.output
    assert "chunks of ≤ 60 tokens, 12 overlap" in " ".join(result.stdout.split())


def test_fetch_k_is_the_candidate_pool_of_search_and_eval(store, qa, tmp_path):
    search = ["search", "Who was Rollo?", *examples_kb(store), "-k", "5", "--fetch-k", "3"]
    refused = CliRunner().invoke(rag.app, search)
    assert isinstance(refused.exception, InvalidRequestError) and "fetch_k" in str(refused.exception)
    out = tmp_path / "eval"
    args = ["eval", "--qa", str(qa), *examples_kb(store), "-k", "3", "--out", str(out)]
    too_few = CliRunner().invoke(rag.app, [*args, "--fetch-k", "2"])
    assert isinstance(too_few.exception, InvalidRequestError) and not out.exists()  # refused before the run starts
    assert CliRunner().invoke(rag.app, [*args, "--candidates", "3"]).exit_code == 0
    assert eval_summary(out)["candidates"] == 3
    assert "fetch_k=3" in (out / "report.md").read_text(encoding="utf-8")


def test_the_judge_is_its_own_model_and_judges_answers_only(store, qa, tmp_path):
    args = ["eval", "--qa", str(qa), *examples_kb(store), "--judge", "/nonexistent/judge", "-o", str(tmp_path)]
    refused = CliRunner().invoke(rag.app, args)
    assert isinstance(refused.exception, InvalidRequestError) and "add --answer" in str(refused.exception)
    missing = CliRunner().invoke(rag.app, [*args, "--answer"])  # the judge is loaded by its own name
    assert isinstance(missing.exception, ModelNotFoundError) and "/nonexistent/judge" in str(missing.exception)


def test_eval_answers_are_scored_by_squad_and_a_judge_model(store, qa, tmp_path):
    first = qa.read_text(encoding="utf-8").splitlines()[0]  # "In what country is Normandy located?" France
    one = tmp_path / "one.jsonl"
    one.write_text(first + "\n", encoding="utf-8")
    out = tmp_path / "eval"
    args = ["eval", "--qa", str(one), *examples_kb(store), "--answer", "-n", "24", "--judge", "default", "-o", str(out)]
    result = CliRunner().invoke(rag.app, args)
    assert result.exit_code == 0, result.output
    assert {"exact", "f1", "faithfulness"} <= set(table_rows(result.stdout))
    (row,) = read_jsonl(out / "results.jsonl")
    summary = eval_summary(out)
    assert summary["judge"] == "default" and summary["f1"] == row["f1"] and 0 <= row["faithfulness"] <= 1


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("index", ["--chunk-tokens,--chunk-size", "--overlap,--chunk-overlap", "[default: 64]", "[default: 512,"]),
        ("search", ["--fetch-k,--candidates", "[default: 4 × k]"]),
        ("ask", ["--fetch-k,--candidates", "[default: 0.25]"]),
        ("eval", ["--fetch-k,--candidates", "--mmr", "--rerank", "--source", "[default: 128]"]),
    ],
)
def test_help_shows_the_langchain_aliases_and_the_defaults(command, shown):
    result = CliRunner().invoke(rag.app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and all(text in result.stdout for text in shown), result.stdout
