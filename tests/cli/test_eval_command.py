"""`llmkit eval compare`: a small base-vs-adapter run end to end, and bad input as one error line (`compare`,
and the lm-eval-style task options of `mc` and `run`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ALPACA = Path(os.environ["LLMKIT_SHARED_DATA"]) / "llama-factory" / "alpaca_en_demo.json"
DEMO = Path(__file__).resolve().parents[2] / "src" / "llmkit" / "eval" / "data" / "demo_geography.jsonl"


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "held_out.jsonl"
    records = json.loads(ALPACA.read_text(encoding="utf-8"))[:5]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.slow
def test_compare_writes_reports_and_prints_the_summary(llmkit, lora_adapters, data, tmp_path):
    out = tmp_path / "out"
    args = ["--tuned", str(lora_adapters["alpha"]), "--data", str(data), "--out", str(out)]
    result = llmkit("eval", "compare", *args, "--max-samples", "3", "--max-new-tokens", "8")
    assert result.returncode == 0, result.stderr
    assert "exact" in result.stdout and "rouge_l" in result.stdout and "Δ" in result.stdout
    assert "new answers: base 3, tuned 3" in result.stdout
    assert str(out / "report.html") in result.stdout.replace("\n", "")
    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    assert scores["records"] == 3 and set(scores["summary"]) == {"exact", "rouge_l"}
    assert len((out / "answers.jsonl").read_text(encoding="utf-8").splitlines()) == 6
    assert (out / "report.md").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "no_such_file.jsonl"], "'no_such_file.jsonl' is neither a registered name nor an existing path"),
        (["--metric", "meteor"], "unknown metric 'meteor'"),
        (["--metric", "no_such_package.scores:f1"], "no_such_package.scores: cannot import"),
    ],
)
def test_bad_input_is_one_error_line(llmkit, data, tmp_path, args, message):
    result = llmkit("eval", "compare", "--tuned", "default", "--data", str(data), "--out", str(tmp_path / "out"), *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line, no traceback
    assert result.stderr.startswith("error: ") and message in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--tasks", "mmlu_*"], "no task matches 'mmlu_*'; the tasks are demo_arithmetic, demo_geography "),
        (["mc", "--data", str(DEMO), "--num_fewshot", "6"], "has 5 worked example(s) of subject 'geography'"),
        (["run", "--tasks", "demo_geography", "--limit", "0"], "--limit must be a count of questions or a fraction"),
        (["mc", "--data", str(DEMO), "--chat-template", str(DEMO)], "--chat-template does not apply to eval mc"),
    ],
)
def test_task_mistakes_are_one_error_line_before_any_model_loads(llmkit, tmp_path, args, message):
    result = llmkit("eval", *args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert not (tmp_path / "out").exists()
