"""`llmkit data generate`: records from the example spec through a real local `llmkit serve`, and bad input."""

from __future__ import annotations

import re
import runpy
import socket
import sys
from collections import Counter
from pathlib import Path

import pytest

from llmkit.cli.console import console
from llmkit.cli.data_generate import render
from llmkit.cli.main import main
from llmkit.datagen.generate import GenerationSummary
from llmkit.jsonl import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples/data/spec.yaml"


@pytest.mark.slow
def test_the_example_spec_writes_records_through_a_local_server_it_starts(llmkit, tmp_path, monkeypatch, capsys):
    out = tmp_path / "landmarks.jsonl"
    result = llmkit("data", "generate", str(EXAMPLE), "--count", "2", "--concurrency", "2", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "2/2 records" in result.stdout and re.search(r"tokens: \d+ prompt \+ \d+ completion", result.stdout)
    assert "llmkit serve" in result.stderr  # it said which server it used (or started)
    records = list(read_jsonl(out))
    assert sorted(record["_meta"]["index"] for record in records) == [0, 1]
    for record in records:
        assert set(record) == {"id", "landmark", "question_zh", "answer_zh", "question_en", "answer_en",
                               "latitude", "longitude", "_meta"}
        fields = record["_meta"]["fields"]
        assert set(fields) == {"id", "landmark", "style", "visit_date"} and "latitude" in fields["landmark"]
        assert record["_meta"]["seed"] == 2025 + record["_meta"]["index"]
    text = out.read_text(encoding="utf-8")
    assert re.search(r"[\u4e00-\u9fff]", text) and "\\u" not in text
    rules = runpy.run_path(str(EXAMPLE.parent / "rules.py"))
    for record in records:  # the example's rules read what the records carry: a verdict each, never a crash
        assert all(rules[name](record) is None or isinstance(rules[name](record), str)
                   for name in rules if name.startswith("check_"))

    # Run again (in this process; it finds nothing to do, so starts no server): the file stays as it is.
    monkeypatch.setattr(sys, "argv", ["llmkit", "data", "generate", str(EXAMPLE), "-n", "2", "-o", str(out)])
    with pytest.raises(SystemExit) as exit:
        main()
    assert exit.value.code == 0 and "new: 0 · from earlier runs: 2" in capsys.readouterr().out
    assert out.read_text(encoding="utf-8") == text


def test_an_unreachable_endpoint_is_one_error_line(llmkit, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"endpoint: {{base_url: 'http://127.0.0.1:{port}/v1'}}\ncount: 2\nprompt: {{template: hi}}\n")
    result = llmkit("data", "generate", str(spec))
    assert result.returncode == 2
    assert f"cannot reach http://127.0.0.1:{port}/v1/" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "generated.jsonl").exists()


def test_a_malformed_spec_is_one_error_line_naming_the_key(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("count: 2\nprompt: {template: hi}\nfields: {n: {type: integer, min: 1, maxi: 3}}\n")
    monkeypatch.setattr(sys, "argv", ["llmkit", "data", "generate", str(spec)])
    with pytest.raises(SystemExit) as exit:
        main()  # the console script's entry point, in this process: no second start-up of torch
    assert exit.value.code == 2
    stderr = capsys.readouterr().err
    assert "fields.n.maxi: unknown key (allowed: type, min, max)" in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def test_the_summary_shows_failures_and_retries_by_cause():
    summary = GenerationSummary(
        Path("out.jsonl"), Path("out.failed.jsonl"), total=10, already_done=4, model="default", done=3,
        failed=Counter(truncated=2, http_400=1), retried=Counter(rate_limited=5, truncated=4),
        first_error={"truncated": "Unterminated string", "rate_limited": "slow down", "http_400": "too long"},
        prompt_tokens=1200, completion_tokens=800, seconds=12.5,
    )
    with console.capture() as captured:
        render(summary)
    text = captured.get()
    assert "7/10 records" in text and "new: 3 · from earlier runs: 4" in text
    assert "tokens: 1200 prompt + 800 completion = 2000" in text
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") >= 4}
    assert re.search(r"truncated\s+│\s+2\s+│\s+4\s+│ Unterminated string", rows["truncated"])
    assert re.search(r"rate_limited\s+│\s+0\s+│\s+5", rows["rate_limited"])
    assert "3 records failed" in text and "out.failed.jsonl" in text
