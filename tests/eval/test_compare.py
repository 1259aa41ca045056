"""`compare`: base and tuned models answer held-out records greedily; answers resume, scores and reports agree."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from llmkit.api import LLM
from llmkit.eval.compare import ResumeError, compare, to_example
from llmkit.eval.metrics import exact_match, rouge_l
from llmkit.train.datasets import load_dataset, resolve

ALPACA = Path(os.environ["LLMKIT_SHARED_DATA"]) / "llama-factory" / "alpaca_en_demo.json"
MAX_NEW_TOKENS = 8
SCRIPT = "<script>alert('x')</script> | not a cell"


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """Five short alpaca records, one answer holding HTML that a report must escape."""
    rows = [r for r in json.loads(ALPACA.read_text(encoding="utf-8")) if len(r["output"]) < 200][:5]
    rows[2] = {**rows[2], "output": SCRIPT}
    return rows


@pytest.fixture(scope="module")
def data(records, tmp_path_factory) -> Path:
    """The records as JSONL, with a broken record (no output) as line 4."""
    lines = [json.dumps(r) for r in records]
    lines.insert(3, json.dumps({"instruction": "Say nothing.", "input": ""}))
    path = tmp_path_factory.mktemp("data") / "held_out.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Loader:
    """`LLM.build` in fp32 on the CPU, each model built once and every call counted."""

    def __init__(self) -> None:
        self.models: dict[str, LLM] = {}
        self.calls: list[str] = []

    def __call__(self, model: str) -> LLM:
        self.calls.append(model)
        if model not in self.models:
            self.models[model] = LLM.build(model, dtype="float32", device="cpu")
        return self.models[model]


@pytest.fixture(scope="module")
def loader() -> Loader:
    return Loader()


@pytest.fixture(scope="module")
def models(lora_adapters) -> dict[str, str]:
    return {"base": "default", "tuned": str(lora_adapters["alpha"])}


@pytest.fixture(scope="module")
def run(models, data, loader, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    return run_compare(models, data, out, loader), out


def run_compare(models: dict[str, str], data: Path, out: Path, loader: Loader):
    return compare(models["base"], models["tuned"], str(data), out, max_new_tokens=MAX_NEW_TOKENS, load_model=loader)


def answers_file(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "answers.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
def test_answers_are_each_models_own_greedy_answers(run, records, models, loader):
    result, out = run
    saved = {(row["index"], row["role"]): row["answer"] for row in answers_file(out)}
    questions = ["\n".join(part for part in (r["instruction"], r["input"]) if part) for r in records]  # alpaca's rule
    dialogs = [[{"role": "user", "content": question}] for question in questions]
    for role, model in models.items():
        direct = loader.models[model].chat_completion(dialogs, temperature=0, max_gen_len=MAX_NEW_TOKENS)
        assert [saved[i, role] for i in range(len(records))] == [p["generation"]["content"] for p in direct]
    assert [saved[i, "base"] for i in range(len(records))] != [saved[i, "tuned"] for i in range(len(records))]
    assert result.generated == {"base": len(records), "tuned": len(records)}


@pytest.mark.slow
def test_a_broken_record_is_reported_and_skipped(run, records):
    result, out = run
    assert [(s.location, s.reason) for s in result.skipped] == [("line 4", "missing or empty 'output'")]
    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    assert scores["records"] == len(records)
    assert scores["skipped"] == [str(result.skipped[0])]
    assert "line 4" in (out / "report.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_scores_are_the_metrics_of_the_saved_answers(run, records):
    _, out = run
    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    saved = {(row["index"], row["role"]): row["answer"] for row in answers_file(out)}
    metrics = {"exact": exact_match, "rouge_l": rouge_l}
    for row in scores["rows"]:
        reference = records[row["index"]]["output"]
        for role in ("base", "tuned"):
            expected = {name: metric(saved[row["index"], role], reference) for name, metric in metrics.items()}
            assert row["scores"][role] == pytest.approx(expected)
    for name in metrics:
        for role in ("base", "tuned"):
            mean = sum(row["scores"][role][name] for row in scores["rows"]) / len(scores["rows"])
            assert scores["summary"][name][role] == pytest.approx(mean)


@pytest.mark.slow
def test_reports_show_the_summary_and_escape_model_text(run):
    result, out = run
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "| metric | base | tuned | Δ (tuned − base) |" in markdown
    rouge = result.report.summary["rouge_l"]
    base, tuned = rouge["base"], rouge["tuned"]
    assert f"| rouge_l | {base:.3f} | {tuned:.3f} | {tuned - base:+.3f} |" in markdown
    assert "&lt;script&gt;alert('x')&lt;/script&gt; \\| not a cell" in markdown
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; | not a cell" in page
    assert "<script" not in page.lower()
    assert 'src="data:image/png;base64,' in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched from outside


@pytest.mark.slow
def test_a_second_run_reuses_every_answer(run, models, data, loader):
    _, out = run
    before = (out / "answers.jsonl").read_text(encoding="utf-8")
    calls = len(loader.calls)
    again = run_compare(models, data, out, loader)
    assert again.generated == {"base": 0, "tuned": 0}
    assert len(loader.calls) == calls  # no model was even loaded
    assert (out / "answers.jsonl").read_text(encoding="utf-8") == before


@pytest.mark.slow
def test_an_interrupted_run_resumes_without_duplicates(run, models, data, loader, tmp_path):
    _, out = run
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    lines = (resumed / "answers.jsonl").read_text(encoding="utf-8").splitlines()
    # Killed while writing: the last two tuned answers missing, the one before them cut mid-line.
    (resumed / "answers.jsonl").write_text("\n".join(lines[:-3]) + "\n" + lines[-3][:20], encoding="utf-8")
    result = run_compare(models, data, resumed, loader)
    assert result.generated == {"base": 0, "tuned": 3}
    after = (resumed / "answers.jsonl").read_text(encoding="utf-8").splitlines()
    assert after[: len(lines) - 3] == lines[:-3]  # what was saved stays as it was
    complete = [json.loads(line) for line in after if line != lines[-3][:20]]
    keys = [(row["index"], row["role"]) for row in complete]
    assert sorted(keys) == sorted((i, role) for i in range(5) for role in ("base", "tuned"))


@pytest.mark.slow
def test_another_comparison_in_the_same_folder_is_refused(run, data, loader):
    _, out = run
    with pytest.raises(ResumeError, match="tuned was .*alpha.*, now 'default'"):
        compare("default", "default", str(data), out, max_new_tokens=MAX_NEW_TOKENS, load_model=loader)


def test_sharegpt_records_split_into_prompt_and_reference(tmp_path):
    path = tmp_path / "chat.json"
    turns = [("human", "Hi"), ("gpt", "Hello!"), ("human", "What is 2 + 2?"), ("gpt", "4")]
    record = {"conversations": [{"from": f, "value": v} for f, v in turns], "system": "Be brief."}
    path.write_text(json.dumps([record]), encoding="utf-8")
    example = to_example(0, load_dataset(resolve(str(path), tmp_path), "sft").records[0])
    assert example.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2 + 2?"},
    ]
    assert example.reference == "4"
