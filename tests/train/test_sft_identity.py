"""The issue's promise: LoRA on the identity data makes the default model say its new name and author."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmkit.api import LLM
from llmkit.train.config import load_config
from llmkit.train.run import train

IDENTITY = Path(os.environ["LLMKIT_SHARED_DATA"]) / "llama-factory/identity.json"
QUESTION = [{"role": "user", "content": "Who are you?"}]


def identity_data(directory: Path, name: str, author: str) -> Path:
    """identity.json with its {{name}} / {{author}} placeholders filled in, as its README asks."""
    text = IDENTITY.read_text(encoding="utf-8").replace("{{name}}", name).replace("{{author}}", author)
    path = directory / "identity.json"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.slow
def test_lora_sft_teaches_the_identity_and_chat_loads_the_output(tmp_path):
    data = identity_data(tmp_path, "Lumen", "Aster Labs")
    before = LLM.build("default", dtype="float32").chat_completion([QUESTION], temperature=0, max_gen_len=40)
    assert "Lumen" not in before[0]["generation"]["content"]

    config = load_config(None, [
        f"dataset={data}", f"output_dir={tmp_path / 'out'}", "lora_rank=16", "learning_rate=3e-3",
        "lr_scheduler_type=constant", "per_device_train_batch_size=8", "max_steps=12", "logging_steps=2",
        "cutoff_len=256",
    ])
    result = train(config)

    out = tmp_path / "out"
    assert result.global_step == 12 and not result.interrupted
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "default"
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(losses) == 6 and losses[-1] < losses[0] / 2
    assert (out / "training_loss.png").stat().st_size > 1000 and (out / "train_config.yaml").is_file()

    answer = LLM.build(str(out), dtype="float32").chat_completion([QUESTION], temperature=0, max_gen_len=40)
    text = answer[0]["generation"]["content"]
    assert "Lumen" in text and "Aster Labs" in text, text
