"""Tasks by name, as lm-eval's --tasks / --include_path: files name tasks, patterns pick them, unknown names say
which tasks there are; `llmkit eval run` scores the built-in demo tasks end to end and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmkit.cli.main import app
from llmkit.eval.runs import EvalError
from llmkit.eval.tasks import BUILTIN_TASKS, find_tasks, select_tasks

MODEL = ["--dtype", "float32", "--device", "cpu"]  # the `smollm` fixture's settings
RECORD = '{"question": "2 + 2 =", "choices": ["4", "5"], "answer": 0}\n'


@pytest.fixture
def folder(tmp_path) -> Path:
    """A user's task folder: MMLU-style files in a subfolder, a dev split, and a task that replaces a built-in."""
    (tmp_path / "mmlu").mkdir()
    for name in ("mmlu_anatomy", "mmlu_astronomy", "mmlu_anatomy.dev", "demo_geography"):
        (tmp_path / ("" if name.startswith("demo") else "mmlu") / f"{name}.jsonl").write_text(RECORD)
    return tmp_path


def test_tasks_are_named_after_their_files(folder):
    assert find_tasks() == {
        "demo_arithmetic": BUILTIN_TASKS / "demo_arithmetic.jsonl",
        "demo_geography": BUILTIN_TASKS / "demo_geography.jsonl",
    }
    tasks = find_tasks([folder])
    assert tasks == {
        "demo_arithmetic": BUILTIN_TASKS / "demo_arithmetic.jsonl",
        "demo_geography": folder / "demo_geography.jsonl",  # the user's file replaces the built-in task
        "mmlu_anatomy": folder / "mmlu" / "mmlu_anatomy.jsonl",  # its .dev file is no task of its own
        "mmlu_astronomy": folder / "mmlu" / "mmlu_astronomy.jsonl",
    }


def test_patterns_and_lists_pick_tasks(folder):
    tasks = find_tasks([folder])
    assert list(select_tasks(["mmlu_*"], tasks)) == ["mmlu_anatomy", "mmlu_astronomy"]
    assert list(select_tasks(["demo_geography,mmlu_an*", "mmlu_anatomy"], tasks)) == ["demo_geography", "mmlu_anatomy"]
    with pytest.raises(EvalError) as error:
        select_tasks(["mmlu_*", "arc_easy"], tasks)
    assert str(error.value) == (
        "no task matches 'arc_easy'; the tasks are demo_arithmetic, demo_geography, mmlu_anatomy, mmlu_astronomy "
        "(add your own: --include-path DIR, a folder of NAME.jsonl files)"
    )


def test_a_bad_include_path_or_two_tasks_of_one_name_are_errors(folder):
    with pytest.raises(EvalError, match="--include-path .*nowhere is not a folder"):
        find_tasks([folder / "nowhere"])
    (folder / "mmlu_anatomy.jsonl").write_text(RECORD)
    with pytest.raises(EvalError, match="two tasks named 'mmlu_anatomy'"):
        find_tasks([folder])


def test_the_tasks_command_lists_tasks_and_their_worked_examples(folder):
    result = CliRunner().invoke(app, ["eval", "tasks", "--include_path", str(folder)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "4 tasks" in result.output
    line = next(line for line in result.output.splitlines() if "mmlu_anatomy " in line)
    assert "mmlu_anatomy.dev.jsonl" in line


@pytest.mark.slow
def test_run_scores_demo_tasks_by_pattern_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["eval", "run", "--tasks", "demo_*", "--num_fewshot", "1", "--limit", "2", "--out", str(out), *MODEL]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "newly evaluated: demo_arithmetic 2 of 2, demo_geography 2 of 2" in result.output
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert list(results["results"]) == ["demo_arithmetic", "demo_geography"]
    assert results["n-shot"] == {"demo_arithmetic": 1, "demo_geography": 1}
    for task, entry in results["results"].items():
        assert set(entry) == {"name", "alias", "sample_len", "acc,none", "acc_stderr,none", "acc_norm,none",
                              "acc_norm_stderr,none"}
        assert results["n-samples"][task] == {"original": 8, "effective": 2}
        assert entry == json.loads((out / task / "results.json").read_text(encoding="utf-8"))["results"][task]
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.output.splitlines() if "│" in line]
    assert [row[:4] for row in rows] == [[task, "1.0", "1", metric] for task in results["results"] for metric in
                                         ("acc", "acc_norm")]
    again = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert "newly evaluated: demo_arithmetic 0 of 2, demo_geography 0 of 2" in again.output
    assert json.loads((out / "results.json").read_text(encoding="utf-8")) == results
