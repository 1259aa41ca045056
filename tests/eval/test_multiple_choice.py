"""Multiple choice: records of both styles become questions, each choice's score is its transformers
log-likelihood, and `llmkit eval mc` reports acc / acc_norm per subject on real ShopBench records, resuming."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from llmkit.api import LLM
from llmkit.cli.main import app
from llmkit.engine.engine import Engine
from llmkit.eval.multiple_choice import load_task, option_logprobs
from llmkit.eval.questions import answer_index, listed_options, to_question
from llmkit.eval.runs import EvalError, OtherTask

SHOPBENCH = Path(os.environ["LLMKIT_SHARED_DATA"]) / "shopbench" / "sample.jsonl"
MODEL = ["--dtype", "float32", "--device", "cpu"]  # the `smollm` fixture's settings


def shopbench() -> list[dict]:
    return [json.loads(line) for line in SHOPBENCH.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def llm(smollm) -> LLM:
    return LLM(Engine(smollm.model, smollm.tokenizer, max_batch_size=1, max_seq_len=512))


def test_shopbench_records_list_their_options_in_the_prompt():
    record = next(r for r in shopbench() if r["task_name"] == "task2")
    question = to_question(3, record)
    assert question.options == question.choices == ["mouse pad", "leash", "surveillance camera", "garbage bin"]
    assert question.answer == record["output_field"] == 0
    assert question.subject == "task2" and question.text == record["input_field"].rstrip()
    assert question.text.endswith("Answer:") and question.description == ""
    # A numbered list inside a product description is not the options: the last list before "Answer:" is.
    text = "Features: 1. strong\n2. light\n0. red\n1. blue\nAnswer: "
    assert listed_options(text) == ["red", "blue"]


def test_shopbench_records_of_other_tasks_are_skipped():
    records = shopbench()
    ranking = next(r for r in records if not r["is_multiple_choice"])
    rating = next(r for r in records if r["task_name"] == "task15")  # a 1–5 rating: no options listed
    for record in (ranking, rating):
        with pytest.raises(OtherTask):
            to_question(1, record)


def test_mmlu_and_ceval_style_records():
    mmlu = {"question": "2 + 2 =", "choices": ["3", "4", "5"], "answer": 1, "subject": "math"}
    ceval = {"question": "中国的首都是", "A": "上海", "B": "北京", "C": "广州", "D": "深圳", "answer": "B"}
    assert to_question(1, mmlu).options == ["3", "4", "5"] and to_question(1, mmlu).answer == 1
    assert to_question(1, mmlu).choices == ["A", "B", "C"]
    question = to_question(2, ceval)
    assert question.options == ["上海", "北京", "广州", "深圳"] and question.answer == 1 and question.subject == "all"
    assert question.text == "中国的首都是\nA. 上海\nB. 北京\nC. 广州\nD. 深圳\nAnswer:"
    assert answer_index("c", 4, "answer") == 2


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"choices": ["a", "b"], "answer": 0}, "no 'question' field"),
        ({"question": "q", "choices": "a or b", "answer": 0}, "'choices' must be a list"),
        ({"question": "q", "choices": ["only"], "answer": 0}, "at least two options"),
        ({"question": "q", "choices": ["a", ""], "answer": 0}, "every option must be non-empty text"),
        ({"question": "q", "A": "a", "C": "c", "answer": "A"}, "must run A, B, C, … without gaps; found A, C"),
        ({"question": "q", "A": "a", "B": "b", "answer": "E"}, "'answer' must be a letter A–B or an index 0–1"),
        ({"question": "q", "choices": ["a", "b"], "answer": 2}, "not 2"),
        ({"question": "q", "choices": ["a", "b"]}, "not None"),
        ({"is_multiple_choice": True, "input_field": "q\n0. a\n1. b\nAnswer: ", "output_field": 5}, "'output_field'"),
    ],
)
def test_broken_records_say_what_is_wrong(record, message):
    with pytest.raises(EvalError, match=message):
        to_question(1, record)


def test_option_scores_are_transformers_log_likelihoods(smollm, llm):
    tokenizer = smollm.tokenizer
    prompt, options = "The capital of France is", [" Paris", " London", " a large yellow banana"]
    # The context's trailing space moves to each continuation, as lm-eval's `_encode_pair` moves it.
    scores = option_logprobs(tokenizer, llm.prompt_logprobs, prompt + " ", [o.lstrip() for o in options])
    context = tokenizer.encode(prompt)
    for option, total in zip(options, scores):
        ids = tokenizer.encode(prompt + option)
        with torch.no_grad():
            logprobs = torch.log_softmax(smollm.model(torch.tensor([ids])).logits[0].double(), -1)
        expected = sum(logprobs[i - 1, ids[i]].item() for i in range(len(context), len(ids)))
        assert total == pytest.approx(expected, abs=1e-4)
    assert scores == option_logprobs(tokenizer, llm.prompt_logprobs, prompt, options)
    assert max(range(3), key=lambda i: scores[i]) == 0  # the model knows this one


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Real ShopBench records: the short multiple-choice ones (tasks 2, 9, 10, 11), a rating record and two
    records of other task types, which are skipped."""
    records = shopbench()
    chosen = [r for r in records if r["task_name"] in ("task2", "task9", "task10", "task11")]
    chosen += [next(r for r in records if r["task_name"] == "task15"), records[0], records[4]]
    path = tmp_path_factory.mktemp("mc") / "shopbench_mc.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chosen), encoding="utf-8")
    return path


@pytest.mark.slow
def test_mc_command_on_shopbench_reports_accuracy_per_subject_and_resumes(data, tmp_path):
    out = tmp_path / "out"
    args = ["eval", "mc", "--data", str(data), "--out", str(out), *MODEL]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "newly evaluated: 10 of 10" in result.output and "By subject" in result.output
    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    assert scores["skipped"] == [
        "skipped records that list no options as lines '0. …', '1. …': line 11",
        "skipped records that are not multiple-choice (is_multiple_choice false): lines 12, 13",
    ]
    records = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    for row in scores["rows"]:
        record = records[row["index"] - 1]
        assert row["answer"] == record["output_field"] and len(row["logprobs"]) == 4
        assert row["chosen"] == max(range(4), key=lambda i: row["logprobs"][i])
    for subject in ("task2", "task9", "task10", "task11"):
        rows = [row for row in scores["rows"] if records[row["index"] - 1]["task_name"] == subject]
        accuracy = sum(row["chosen"] == row["answer"] for row in rows) / len(rows)
        assert scores["subjects"][subject]["acc"] == pytest.approx(accuracy)
        assert scores["subjects"][subject]["questions"] == len(rows)
    overall = sum(row["chosen"] == row["answer"] for row in scores["rows"]) / 10
    assert scores["summary"]["acc"]["default"] == scores["subjects"]["overall"]["acc"] == overall
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["results"]["shopbench_mc"]["acc,none"] == overall and results["n-shot"] == {"shopbench_mc": 0}
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "## By subject" in markdown
    assert "| subject | questions | acc | acc_stderr | acc_norm | acc_norm_stderr |" in markdown

    again = CliRunner().invoke(app, args)
    assert "newly evaluated: 0 of 10" in again.output
    assert json.loads((out / "scores.json").read_text(encoding="utf-8")) == scores


def test_a_broken_record_stops_the_command_before_the_model_loads(tmp_path):
    data = tmp_path / "mc.jsonl"
    data.write_text('{"question": "2 + 2 =", "choices": ["4", "5"], "answer": "C"}\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", "mc", "--data", str(data), "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, EvalError)
    assert (
        str(result.exception) == f"{data} line 1: 'answer' must be a letter A–B or an index 0–1 of the options, not 'C'"
    )
    assert not (tmp_path / "out").exists()


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def geography(question: str, answer: int, subject: str = "high_school_geography") -> dict:
    choices = ["Paris", "Rome", "Lima", "Oslo"]
    return {"question": f" {question} ", "subject": subject, "choices": choices, "answer": answer}


@pytest.fixture
def mmlu(tmp_path) -> Path:
    """Two test questions, and worked examples beside them: one of another subject, then two of theirs."""
    dev = [geography("Capital of Peru?", 2, "world_capitals"), geography("Capital of Italy?", 1)]
    write_jsonl(tmp_path / "mmlu_geo.dev.jsonl", dev + [geography("Capital of Norway?", 3)])
    return write_jsonl(tmp_path / "mmlu_geo.jsonl", [geography("Capital of France?", 0), geography("Where?", 1)])


def test_mmlu_prompts_read_as_lm_evals(mmlu):
    # lm-eval's tasks/mmlu/default/_default_template_yaml and _generate_configs.py: the description "The following
    # are multiple choice questions (with answers) about {subject, _ as spaces}.\n\n", doc_to_text
    # "{{question.strip()}}\nA. {{choices[0]}}\n…\nAnswer:", worked examples answered after target_delimiter " "
    # and closed by fewshot_delimiter "\n\n", the first n of the dev split (sampler first_n), choices " A", " B", ….
    options = "A. Paris\nB. Rome\nC. Lima\nD. Oslo\nAnswer:"
    description = "The following are multiple choice questions (with answers) about high school geography.\n\n"
    assert load_task(mmlu).prompts[1] == f"{description}Capital of France?\n{options}"
    two_shot = load_task(mmlu, num_fewshot=2, limit=1)
    assert two_shot.prompts == {
        1: f"{description}Capital of Italy?\n{options} B\n\n"
        f"Capital of Norway?\n{options} D\n\n"
        f"Capital of France?\n{options}"
    }
    assert two_shot.fewshot == mmlu.with_name("mmlu_geo.dev.jsonl") and [q.index for q in two_shot.questions] == [1]
    # The test file as its own few-shot source (lm-eval's rule): a question is never its own example.
    same = load_task(mmlu, num_fewshot=1, fewshot=mmlu)
    assert same.prompts[1].count("Capital of France?") == 1 and "Where?\n" in same.prompts[1]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"num_fewshot": 3}, "--num-fewshot 3: .*mmlu_geo.dev.jsonl has 2 worked example\\(s\\) of subject "
         "'high_school_geography': lower --num-fewshot or add examples"),
        ({"fewshot": Path("dev.jsonl")}, "--fewshot-data dev.jsonl is used only with --num-fewshot K"),
        ({"num_fewshot": 1, "fewshot": Path("missing.jsonl")}, "missing.jsonl does not exist"),
    ],
)
def test_few_shot_mistakes_are_found_before_the_model_loads(mmlu, settings, message):
    with pytest.raises(EvalError, match=message):
        load_task(mmlu, **settings)


def test_a_missing_dev_file_says_where_worked_examples_go(mmlu):
    mmlu.with_name("mmlu_geo.dev.jsonl").unlink()
    with pytest.raises(EvalError, match="--num-fewshot 5 needs worked examples: put them in .*mmlu_geo.dev.jsonl"):
        load_task(mmlu, num_fewshot=5)
