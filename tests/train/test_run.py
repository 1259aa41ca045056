"""The training recipe's contract: checkpoints, resume, Ctrl-C, and refusing to train over an earlier run."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from llmkit.train.config import ConfigError, load_config
from llmkit.train.run import train

ALPACA = Path(os.environ["LLMKIT_SHARED_DATA"]) / "llama-factory/alpaca_en_demo.json"


def tiny(out: Path, *extra: str):
    """A few real alpaca records, short rows: seconds per step on a CPU."""
    return load_config(None, [
        f"dataset={ALPACA}", f"output_dir={out}", "max_samples=6", "cutoff_len=64", "per_device_train_batch_size=2",
        "logging_steps=1", "save_steps=1", "lora_rank=4", *extra,
    ])


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    first = train(tiny(out, "max_steps=2"))
    assert first.global_step == 2 and (out / "checkpoint-2" / "optimizer.pt").is_file()
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        train(tiny(out, "max_steps=3"))
    resumed = train(tiny(out, "max_steps=3", "resume_from_checkpoint=true"))
    assert resumed.global_step == 3
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]  # the first run's lines kept, the resumed one's appended
    assert (out / "adapter_model.safetensors").is_file()


def test_ctrl_c_saves_a_checkpoint_and_stops(tmp_path):
    out = tmp_path / "run"

    def interrupt(record: dict) -> None:
        if record.get("step") == 1:
            os.kill(os.getpid(), signal.SIGINT)

    from llmkit.train.run import train as run

    result = run(tiny(out, "max_steps=6", "save_steps=100"), interrupt)
    assert result.interrupted and result.global_step == 2
    assert (out / "checkpoint-2" / "scheduler.pt").is_file()
    assert not (out / "adapter_model.safetensors").exists()  # the final model is written only by a finished run
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_missing_checkpoint_to_resume(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint-N folder"):
        train(tiny(tmp_path / "empty", "resume_from_checkpoint=true"))
    with pytest.raises(ConfigError, match="not a checkpoint directory"):
        train(tiny(tmp_path / "x", f"resume_from_checkpoint={tmp_path / 'nowhere'}"))
