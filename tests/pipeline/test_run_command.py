"""`llmkit run`: bad input is one red line and exit 2; a run prints its summary and the per-task table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fake_openai import ScriptedModel, last_user_text

from llmkit.cli.main import main
from llmkit.jsonl import read_jsonl, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
LLMKIT = Path(sys.executable).parent / "llmkit"
SHOP = ROOT / "examples" / "shop"


def llmkit_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the console script's entry point in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["llmkit", *map(str, args)])
    with pytest.raises(SystemExit) as exit:
        main()
    captured = capsys.readouterr()
    return exit.value.code, captured.out, captured.err


@pytest.fixture
def records(tmp_path) -> Path:
    path = tmp_path / "records.jsonl"
    write_jsonl(path, [{"prompt": "pick", "reference": 2}, {"prompt": "pick again", "reference": 3}])
    return path


@pytest.mark.parametrize(("pipeline", "message"), [
    (None, "cannot read pipeline {path}"),
    ("tasks: [{name: t, postprocess: [frist_digit]}]", "tasks[0].postprocess[0]: unknown post-processor 'frist_digit'"),
    ("tasks: [\n", "is not valid YAML"),
])
def test_a_bad_pipeline_is_one_error_line(tmp_path, monkeypatch, capsys, records, pipeline, message):
    path = tmp_path / "pipeline.yaml"
    if pipeline is not None:
        path.write_text(pipeline)
    code, _, err = llmkit_main(monkeypatch, capsys, "run", path, "--input", records)
    assert code == 2 and message.format(path=path) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_missing_input_is_one_error_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "pipeline.yaml"
    path.write_text("tasks: [{name: t}]\n")
    code, _, err = llmkit_main(monkeypatch, capsys, "run", path, "--input", tmp_path / "none.jsonl")
    assert code == 2 and f"input {tmp_path / 'none.jsonl'} does not exist" in err and len(err.strip().splitlines()) == 1


def test_a_run_against_a_server_prints_the_summary_and_the_eval_table(tmp_path, monkeypatch, capsys, loopback, records):
    server = loopback(ScriptedModel(lambda body: "2" if last_user_text(body) == "pick" else "0").app())
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({"model": {"base_url": f"{server.url}/v1"}, "tasks": [
        {"name": "choice", "postprocess": ["first_digit"], "metric": "accuracy"}]}))
    output = tmp_path / "out.jsonl"
    monkeypatch.setenv("COLUMNS", "120")
    code, out, err = llmkit_main(monkeypatch, capsys, "run", pipeline, "-i", records, "-o", output, "--eval", "-c", "2")
    assert code == 0, err
    assert "2/2 records in" in out and "new: 2 (choice 2) · from earlier runs: 0 · model: scripted" in out
    assert "tokens: 20 prompt + 4 completion" in out
    assert "│ choice          │ accuracy │ 2       │ 0.5000 │" in out
    assert "│ mean over tasks │          │ 2       │ 0.5000 │" in out
    assert sorted(line["prediction"] for line in read_jsonl(output)) == [0, 2]
    assert len(list(read_jsonl(tmp_path / "out.trace.jsonl"))) == 2


@pytest.mark.slow
def test_the_shop_example_runs_on_its_sample_records_and_prints_the_per_task_table(tmp_path):
    # One sample record of each task type, and a second multiple-choice one: every route, quick on two cores.
    sample = list(read_jsonl(SHOP / "sample.jsonl"))
    picked = {record["task_type"]: record for record in sample}
    records = tmp_path / "shop.jsonl"
    write_jsonl(records, [*picked.values(), sample[2]])
    output = tmp_path / "shop.out.jsonl"
    command = [str(LLMKIT), "run", str(SHOP / "pipeline.yaml"), "--input", str(records), "-o", str(output), "--eval"]
    result = subprocess.run(command, check=False, capture_output=True, encoding="utf-8", timeout=900,
                            env={**os.environ, "COLUMNS": "120"})
    assert result.returncode == 0, result.stderr
    assert "6/6 records" in result.stdout
    reused = re.search(r"prefix cache: (\d+) of (\d+) prompt tokens reused", result.stdout)
    assert reused and 0 < int(reused[1]) < int(reused[2])  # the tasks' shared system prompts are computed once
    for task, metric in [("multiple_choice", "accuracy"), ("ranking", "ndcg"), ("retrieval", "hit@3"),
                         ("entities", "micro_f1"), ("generation", "rouge_l")]:
        assert f"│ {task:<15} │ {metric:<8} │" in result.stdout
    traces = list(read_jsonl(tmp_path / "shop.out.trace.jsonl"))
    assert {trace["task"] for trace in traces} == {"multiple_choice", "ranking", "retrieval", "entities", "generation"}
    ranking = next(line for line in read_jsonl(output) if line["_task"] == "ranking")
    assert sorted(ranking["prediction"]) == [1, 2, 3, 4, 5]  # repaired into a full permutation, whatever the model said
    entities = next(trace for trace in traces if trace["task"] == "entities")
    assert entities["messages"][1]["content"].startswith("Query: ")  # the split transform and the user template
