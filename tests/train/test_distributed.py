"""`llmkit train` under torchrun: two CPU processes (gloo) train one model with DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path):
    alpaca = Path(os.environ["LLMKIT_SHARED_DATA"]) / "llama-factory/alpaca_en_demo.json"
    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"dataset: {alpaca}\nmax_samples: 8\ncutoff_len: 64\nper_device_train_batch_size: 2\nmax_steps: 2\n"
        f"logging_steps: 1\nsave_steps: 100\nlora_rank: 4\noutput_dir: {tmp_path / 'out'}\n"
    )
    result = subprocess.run(
        [str(BIN / "torchrun"), "--nproc_per_node", "2", "--no-python", str(BIN / "llmkit"), "train", str(config)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("done after 2 steps") == 1  # rank 0 alone reports
    logged = [json.loads(line) for line in (tmp_path / "out/metrics.jsonl").read_text().splitlines()]
    steps = [r for r in logged if "loss" in r]
    # 8 examples, 2 per process per step: two processes cover the epoch in 2 steps (one process would need 4).
    assert [r["epoch"] for r in steps] == [0.5, 1.0]
    assert (tmp_path / "out/adapter_model.safetensors").is_file()
