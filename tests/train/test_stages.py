"""pt, dpo and rm on the real demo data: each runs and its loss (or reward accuracy) moves the right way."""

from __future__ import annotations

import json
import os
from pathlib import Path

from llmkit.train.config import load_config
from llmkit.train.run import train

DATA = Path(os.environ["LLMKIT_SHARED_DATA"]) / "llama-factory"


def logs(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def run(out: Path, *overrides: str):
    config = load_config(None, [f"output_dir={out}", "logging_steps=1", "save_steps=1000", *overrides])
    return train(config)


def test_pt_learns_plain_text(tmp_path):
    out = tmp_path / "pt"
    # One document, cut into 64-token chunks that fit one batch: every step sees the same text.
    result = run(out, "stage=pt", f"dataset={DATA / 'c4_demo.jsonl'}", "max_samples=1", "cutoff_len=64",
                 "per_device_train_batch_size=32", "max_steps=4", "learning_rate=2e-3", "lora_rank=8",
                 "lr_scheduler_type=constant", "num_train_epochs=100")
    losses = [r["loss"] for r in logs(out) if "loss" in r]
    assert result.global_step == 4 and losses[-1] < losses[0] - 0.1


def test_dpo_prefers_the_chosen_answers(tmp_path):
    out = tmp_path / "dpo"
    result = run(out, "stage=dpo", f"dataset={DATA / 'dpo_en_demo.json'}", "max_samples=4", "cutoff_len=96",
                 "per_device_train_batch_size=2", "max_steps=8", "learning_rate=5e-3", "lora_rank=8",
                 "lr_scheduler_type=constant", "pref_beta=0.1", "num_train_epochs=100")
    records = [r for r in logs(out) if "loss" in r]
    assert result.global_step == 8
    assert records[-1]["loss"] < records[0]["loss"]
    assert records[-1]["rewards/margins"] > records[0]["rewards/margins"]
    assert (out / "adapter_model.safetensors").is_file()


def shortest_pairs(directory: Path, count: int) -> Path:
    """The `count` shortest real preference records (TRL's RewardTrainer drops pairs over max_length)."""
    rows = json.loads((DATA / "dpo_en_demo.json").read_text(encoding="utf-8"))
    size = lambda r: sum(len(t["value"]) for t in r["conversations"]) + len(r["chosen"]["value"] + r["rejected"]["value"])
    path = directory / "pairs.json"
    path.write_text(json.dumps(sorted(rows, key=size)[:count]), encoding="utf-8")
    return path


def test_reward_model_ranks_chosen_above_rejected(tmp_path):
    out = tmp_path / "rm"
    result = run(out, "stage=rm", f"dataset={shortest_pairs(tmp_path, 4)}", "cutoff_len=256",
                 "per_device_train_batch_size=2", "max_steps=8", "learning_rate=5e-3", "lora_rank=8",
                 "lr_scheduler_type=constant", "num_train_epochs=100")
    records = [r for r in logs(out) if "loss" in r]
    assert result.global_step == 8
    assert records[-1]["loss"] < records[0]["loss"]
    assert records[-1]["accuracy"] >= records[0]["accuracy"]
