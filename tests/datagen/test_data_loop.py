"""The whole data loop on the example spec, as a user runs it: generate through a real `llmkit serve`, kill the
generator half-way and resume it, validate, calibrate with the fix-up script, merge, convert, and train on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from llmkit.datagen.local_server import local_server
from llmkit.jsonl import read_jsonl
from llmkit.train.config import load_config
from llmkit.train.run import train

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples/data"
LLMKIT = Path(sys.executable).parent / "llmkit"
COUNT = 20


def llmkit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LLMKIT), *args], capture_output=True, text=True, cwd=cwd, timeout=900)


def example_spec(directory: Path, base_url: str) -> Path:
    """The example spec pointed at `base_url`, with its CSV beside it; shorter answers keep the test quick."""
    spec = yaml.safe_load((EXAMPLE / "spec.yaml").read_text(encoding="utf-8"))
    spec["endpoint"]["base_url"] = base_url
    spec.update(count=COUNT, concurrency=4, output="landmarks.jsonl")
    spec["sampling"]["max_tokens"] = 320
    (directory / "landmarks.csv").write_bytes((EXAMPLE / "landmarks.csv").read_bytes())
    (directory / "schema.json").write_bytes((EXAMPLE / "schema.json").read_bytes())
    path = directory / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return path


def generate_until_killed(spec: Path, output: Path, at_least: int) -> None:
    """Start the generator, and kill it (SIGKILL: no clean-up) once `at_least` records are on disk."""
    process = subprocess.Popen([str(LLMKIT), "data", "generate", str(spec)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=spec.parent, start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if output.exists() and len(output.read_bytes().splitlines()) >= at_least:
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_generate_resume_validate_calibrate_convert_train(tmp_path):
    with local_server() as base_url:
        spec = example_spec(tmp_path, base_url)
        output = tmp_path / "landmarks.jsonl"
        generate_until_killed(spec, output, at_least=5)
        before = output.read_bytes()
        finished_before = list(read_jsonl(output))
        assert 5 <= len(finished_before) < COUNT, "the generator was to be stopped half-way"

        resumed = llmkit("data", "generate", str(spec), cwd=tmp_path)
    assert resumed.returncode in (0, 1), resumed.stderr  # 1: some records failed after their retries
    records = list(read_jsonl(output))
    failed = list(read_jsonl(tmp_path / "landmarks.failed.jsonl"))
    indices = Counter(record["_meta"]["index"] for record in records)
    assert max(indices.values()) == 1, "a record was generated twice"
    assert set(indices) | {f["_meta"]["index"] for f in failed} == set(range(COUNT)), "a record was lost"
    assert len(records) >= COUNT - 2
    assert output.read_bytes().startswith(before.rsplit(b"\n", 1)[0]), "the resumed run rewrote finished lines"
    assert all(set(r["_meta"]["fields"]) == {"id", "landmark", "style", "visit_date"} for r in records)
    assert len({r["_meta"]["fields"]["landmark"]["name_en"] for r in records}) > 5  # spread drawn in Python

    checks = ["--schema", str(EXAMPLE / "schema.json"), "--rules", str(EXAMPLE / "rules.py")]
    validated = llmkit("data", "validate", str(output), "--out", str(tmp_path / "checked"), *checks, cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    valid = list(read_jsonl(tmp_path / "checked/valid.jsonl"))
    invalid = list(read_jsonl(tmp_path / "checked/invalid.jsonl"))
    assert len(valid) + len(invalid) == len(records) and invalid
    assert all(error["message"] and error["path"] for line in invalid for error in line["errors"])

    fixed = llmkit("data", "calibrate", str(tmp_path / "checked"), *checks, "--fix", str(EXAMPLE / "fix.py"),
                   cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    calibrated = list(read_jsonl(tmp_path / "checked/calibrated.jsonl"))
    dropped = list(read_jsonl(tmp_path / "checked/dropped.jsonl"))
    remaining = list(read_jsonl(tmp_path / "checked/remaining.jsonl"))
    assert len(calibrated) + len(dropped) + len(remaining) == len(invalid)  # nothing silently dropped
    assert calibrated

    merged = tmp_path / "clean.jsonl"
    joined = llmkit("data", "merge", str(tmp_path / "checked/valid.jsonl"), str(tmp_path / "checked/calibrated.jsonl"),
                    "-o", str(merged), cwd=tmp_path)
    assert joined.returncode == 0, joined.stderr
    alpaca = tmp_path / "train.jsonl"
    converted = llmkit("data", "convert", str(merged), "-o", str(alpaca), "--format", "alpaca",
                       "--mapping", str(EXAMPLE / "alpaca.yaml"), cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    examples = list(read_jsonl(alpaca))
    assert len(examples) == len(valid) + len(calibrated)
    assert all(e["instruction"] and e["output"].startswith('{"landmark"') for e in examples)
    assert "\\u" not in alpaca.read_text(encoding="utf-8")  # Chinese as written, also inside the JSON answers

    config = load_config(None, [f"dataset={alpaca}", f"output_dir={tmp_path / 'out'}", "max_steps=1",
                                "per_device_train_batch_size=2", "cutoff_len=256", "save_steps=100"])
    assert train(config).global_step == 1
