"""lm-evaluation-harness's arithmetic on a fixed file: per-choice log-likelihoods saved as a finished run's rows, so
`eval mc` rescores them without a model, and every figure of its results.json is checked against numbers worked
out by hand from lm-eval's formulas.

The formulas (lm_eval/api/task.py, `ConfigurableTask.process_results` for output_type multiple_choice;
lm_eval/api/metrics.py, `mean` and `mean_stderr`):
    acc       = 1 if argmax(lls) == gold, else 0                      (np.argmax: a tie goes to the first)
    acc_norm  = 1 if argmax(lls / len(choice)) == gold, else 0        (len in characters, without the " " before it)
    value     = sum(x) / n
    stderr    = sqrt(sum((x - mean)^2) / (n - 1)) / sqrt(n)           ("N/A" when n < 2)
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from llmkit.eval.harness_scores import mean_stderr, predictions, sample_size
from llmkit.eval.multiple_choice import multiple_choice
from llmkit.eval.runs import EvalError
from llmkit.eval.tasks import find_tasks, run_tasks, select_tasks

FIXED = Path(__file__).parent / "data" / "lm_eval_fixed.jsonl"

# Per question of FIXED (choices, gold, lls → acc, acc_norm), by hand:
#   1  cat|elephant       gold 1  (-2, -4)          argmax 0 → 0;  per char (-0.667, -0.5)          → 1 → 1
#   2  red|blue|green     gold 0  (-1.5, -3, -4)    argmax 0 → 1;  per char (-0.5, -0.75, -0.8)     → 0 → 1
#   3  yes|no             gold 1  (-1, -0.8)        argmax 1 → 1;  per char (-0.333, -0.4)          → 0 → 0
#   4  a tie|b tie        gold 1  (-2.5, -2.5)      tie: 0 → 0;    per char tie                     → 0 → 0
#   5  Paris|Lyon         gold 0  (-6, -4.9)        argmax 1 → 0;  per char (-1.2, -1.225)          → 0 → 1
#                                  (with the " " counted it would be (-1.0, -0.98) → 1: the test tells them apart)
#   6  x|yy               gold 0  (-1, -3)          argmax 0 → 1;  per char (-1, -1.5)              → 0 → 1
ACC = [0, 1, 1, 0, 0, 1]
ACC_NORM = [1, 1, 0, 0, 1, 1]
# acc: mean 3/6 = 0.5; squared deviations 6 × 0.25 = 1.5; sqrt(1.5 / 5) / sqrt(6) = sqrt(0.05)
# acc_norm: mean 4/6; squared deviations 4 × 1/9 + 2 × 4/9 = 4/3; sqrt((4/3) / 5) / sqrt(6) = sqrt(2/45)
EXPECTED = {
    "acc,none": 0.5,
    "acc_stderr,none": math.sqrt(0.05),  # 0.2236…
    "acc_norm,none": 4 / 6,
    "acc_norm_stderr,none": math.sqrt(2 / 45),  # 0.2108…
}


def never_load(model: str):
    raise AssertionError("every question has saved log-likelihoods: no model may load")


def saved_run(out: Path) -> Path:
    """An output folder holding the fixed log-likelihoods as a finished run's rows (keyed by line number)."""
    out.mkdir(parents=True)
    lines = FIXED.read_text(encoding="utf-8").splitlines()
    rows = [{"index": number, "logprobs": json.loads(line)["logprobs"]} for number, line in enumerate(lines, 1)]
    (out / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return out


def rescore(out: Path, **settings) -> dict:
    multiple_choice("fixed", FIXED, saved_run(out), load_model=never_load, **settings)
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def test_acc_acc_norm_and_stderr_are_lm_evals_on_the_fixed_file(tmp_path):
    results = rescore(tmp_path / "out")
    entry = results["results"]["lm_eval_fixed"]
    assert {key: entry[key] for key in EXPECTED} == pytest.approx(EXPECTED, abs=1e-15)
    assert entry["alias"] == entry["name"] == "lm_eval_fixed" and entry["sample_len"] == 6
    assert results["n-shot"] == {"lm_eval_fixed": 0}
    assert results["n-samples"] == {"lm_eval_fixed": {"original": 6, "effective": 6}}
    assert results["higher_is_better"] == {"lm_eval_fixed": {"acc": True, "acc_norm": True}}
    assert results["versions"] == {"lm_eval_fixed": 1.0}
    assert results["config"] == {"model": "llmkit", "model_args": {"pretrained": "fixed"}, "limit": None}
    scores = json.loads((tmp_path / "out" / "scores.json").read_text(encoding="utf-8"))
    assert [row["chosen"] == row["answer"] for row in scores["rows"]] == [bool(x) for x in ACC]
    assert [row["chosen_norm"] == row["answer"] for row in scores["rows"]] == [bool(x) for x in ACC_NORM]
    # Per subject: t1 is questions 1–3 (acc 0 1 1, acc_norm 1 1 0), t2 questions 4–6 (acc 0 0 1, acc_norm 0 1 1).
    # Each is 2/3 or 1/3 of 3: sqrt((2/3)(1/3) · 3 / 2) / sqrt(3) = 1/3.
    t1, t2 = scores["subjects"]["t1"], scores["subjects"]["t2"]
    assert (t1["acc"], t1["acc_norm"], t2["acc"], t2["acc_norm"]) == pytest.approx((2 / 3, 2 / 3, 1 / 3, 2 / 3))
    assert t1["acc_stderr"] == t2["acc_norm_stderr"] == pytest.approx(1 / 3)


def test_limit_scores_the_first_questions_as_lm_eval(tmp_path):
    # --limit 4: acc 0 1 1 0 and acc_norm 1 1 0 0, each mean 0.5, stderr sqrt(4 × 0.25 / 3) / 2 = sqrt(1/12).
    entry = rescore(tmp_path / "four", limit=4)["results"]["lm_eval_fixed"]
    assert entry["acc,none"] == entry["acc_norm,none"] == 0.5 and entry["sample_len"] == 4
    assert entry["acc_stderr,none"] == entry["acc_norm_stderr,none"] == pytest.approx(math.sqrt(1 / 12), abs=1e-15)
    # --limit 0.5: a fraction, rounded up (lm-eval's get_sample_size): ceil(6 × 0.5) = 3 questions.
    results = rescore(tmp_path / "half", limit=0.5)
    assert results["n-samples"]["lm_eval_fixed"] == {"original": 6, "effective": 3}
    assert results["config"]["limit"] == 0.5
    # One question: lm-eval writes "N/A" for the standard error.
    entry = rescore(tmp_path / "one", limit=1)["results"]["lm_eval_fixed"]
    assert entry["acc,none"] == 0.0 and entry["acc_stderr,none"] == entry["acc_norm_stderr,none"] == "N/A"


def test_the_arithmetic_functions_themselves():
    assert predictions([-2.0, -4.0], ["cat", "elephant"]) == {"acc": 0, "acc_norm": 1}
    assert predictions([-2.5, -2.5], ["a tie", "b tie"]) == {"acc": 0, "acc_norm": 0}
    assert mean_stderr([1.0, 0.0]) == pytest.approx(0.5)  # sqrt(0.5 / 1) / sqrt(2)
    assert mean_stderr([1.0]) == "N/A"
    assert [sample_size(57, limit) for limit in (None, 5, 5.0, 100, 0.1)] == [57, 5, 5, 57, 6]
    with pytest.raises(EvalError, match="--limit must be a count of questions or a fraction above 0, not 0"):
        sample_size(57, 0)


def test_a_run_of_several_tasks_writes_one_results_file(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    for name in ("fixed_a", "fixed_b"):
        (folder / f"{name}.jsonl").write_text(FIXED.read_text(encoding="utf-8"), encoding="utf-8")
        saved_run(tmp_path / "out" / name)
    tasks = select_tasks(["fixed_*"], find_tasks([folder]))
    run = run_tasks("fixed", tasks, tmp_path / "out", limit=4, load_model=never_load)
    assert run.path == tmp_path / "out" / "results.json" and json.loads(run.path.read_text()) == run.results
    assert list(run.results["results"]) == ["fixed_a", "fixed_b"]
    assert all(entry["acc,none"] == 0.5 and entry["sample_len"] == 4 for entry in run.results["results"].values())
    assert run.results["n-shot"] == {"fixed_a": 0, "fixed_b": 0} and run.results["config"]["limit"] == 4
    assert set(run.results) == {"results", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config"}
