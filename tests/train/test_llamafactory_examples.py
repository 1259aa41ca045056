"""LLaMA-Factory's own example configs run unchanged: only the model, the data folder, the output folder (and the
reward model, an earlier run's output) and a step limit are given, as key=value overrides, as a user would."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmkit.train.config import load_config
from llmkit.train.run import train

EXAMPLES = Path(__file__).parents[2] / "examples" / "train" / "llamafactory"
DEMO_DATA = Path(__file__).parent / "data" / "llamafactory_demo"  # LLaMA-Factory's registry, the shortest records


def run_example(name: str, out: Path, *extra: str):
    """One optimizer step of LLaMA-Factory's example `name` on the default model and the bundled demo data."""
    overrides = ["model_name_or_path=default", f"dataset_dir={DEMO_DATA}", f"output_dir={out}", "max_steps=1", *extra]
    config = load_config(EXAMPLES / name, overrides)
    return config, train(config)


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory) -> Path:
    """The reward example's output: the rm stage's own check, and the reward model the ppo example names."""
    out = tmp_path_factory.mktemp("lf") / "reward"
    config, result = run_example("qwen3_lora_reward.yaml", out)
    assert config.stage == "rm" and result.global_step == 1
    return out


@pytest.mark.parametrize(
    ("name", "stage"),
    [("qwen3_lora_sft.yaml", "sft"), ("qwen3_lora_pretrain.yaml", "pt"), ("qwen3_lora_dpo.yaml", "dpo"),
     ("qwen3_lora_kto.yaml", "kto")],
)
def test_stock_example_runs_unchanged(tmp_path, name, stage):
    config, result = run_example(name, tmp_path / stage)
    assert config.stage == stage and config.bf16 and config.gradient_accumulation_steps == 8
    assert "preprocessing_num_workers has no effect: llmkit tokenizes examples when the run starts, with no worker " \
           "pool or cache" in config.notes
    assert result.global_step == 1 and not result.interrupted
    assert (tmp_path / stage / "adapter_model.safetensors").is_file()
    if config.template is not None:  # the output's tokenizer carries the template it was trained with
        assert "<|im_start|>" in (tmp_path / stage / "chat_template.jinja").read_text()


def test_reward_example_trains_a_score_head(reward_model):
    assert (reward_model / "adapter_model.safetensors").is_file()


def test_ppo_example_runs_on_the_reward_model(tmp_path, reward_model):
    config, result = run_example("llama3_lora_ppo.yaml", tmp_path / "ppo", f"reward_model={reward_model}")
    assert config.stage == "ppo" and config.template == "llama3"
    assert result.global_step == 1 and (tmp_path / "ppo" / "adapter_model.safetensors").is_file()
