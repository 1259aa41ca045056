"""The shipped examples/train files: every config is valid, its data loads cleanly, and each one trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import TrainingArguments

from llmkit.train.config import ConfigError, load_config
from llmkit.train.datasets import load_datasets
from llmkit.train.run import _training_arguments, train

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples/train"
CONFIGS = sorted(EXAMPLES.glob("*.yaml"))
# Each example with the records its datasets hold (the data files' header in datasets.yaml says why).
RECORDS = {
    "dpo_lora": 100, "pt_lora": 100, "rm_lora": 100, "sft_freeze": 291, "sft_full": 400, "sft_lora": 91, "sft_qlora": 291,
    "kto_lora": 100, "orpo_lora": 100, "simpo_lora": 100, "ppo_lora": 291, "grpo_lora": 91,
}
# One step of each example; ppo and grpo sample groups that fit its batch of 2, and ppo scores with rm_lora's model.
ONE_STEP = ["max_steps=1", "max_samples=4", "per_device_train_batch_size=2", "val_size=0", "cutoff_len=128"]
SAMPLING = {"ppo": ["num_generations=2", "max_new_tokens=8"], "grpo": ["num_generations=2", "max_completion_length=8"]}


@pytest.fixture(autouse=True)
def in_repository_root(monkeypatch):
    """The examples name their files relative to the repository root, where the docs tell users to run them."""
    monkeypatch.chdir(ROOT)


def test_every_stage_and_tuning_type_has_an_example():
    configs = [load_config(path) for path in CONFIGS]
    assert {c.stage for c in configs} == {"sft", "pt", "dpo", "rm", "kto", "ppo", "grpo"}
    assert {c.pref_loss for c in configs if c.stage == "dpo"} == {"sigmoid", "orpo", "simpo"}
    assert {c.finetuning_type for c in configs} == {"lora", "freeze", "full"}
    assert any(c.quantization_bit for c in configs)
    assert sorted(path.stem for path in CONFIGS) == sorted(RECORDS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_example_data_loads_without_skipping(path):
    config = load_config(path)
    loaded = load_datasets(config.dataset, config.dataset_dir, config.stage)
    assert len(loaded.records) == RECORDS[path.stem] and not loaded.skipped


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.stem != "sft_qlora"], ids=lambda p: p.stem)
def test_example_trains_a_step(path, tmp_path, request):
    stage = load_config(path).stage
    overrides = [f"output_dir={tmp_path}", *ONE_STEP, *SAMPLING.get(stage, [])]
    if stage == "ppo":
        overrides.append(f"reward_model={request.getfixturevalue('reward_model')}")
    config = load_config(path, overrides)
    result = train(config)
    assert result.global_step == 1
    saved = {"lora": "adapter_model.safetensors", "freeze": "model.safetensors", "full": "model.safetensors"}
    assert (tmp_path / saved[config.finetuning_type]).is_file()


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory) -> Path:
    """rm_lora.yaml trained one step: the reward model ppo_lora.yaml's step scores with."""
    out = tmp_path_factory.mktemp("rm-lora")
    train(load_config(EXAMPLES / "rm_lora.yaml", [f"output_dir={out}", f"dataset_dir={EXAMPLES / 'data'}", *ONE_STEP]))
    return out


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusal")
def test_qlora_example_is_refused_on_cpu_with_the_way_out(tmp_path):
    config = load_config(EXAMPLES / "sft_qlora.yaml", [f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="needs a CUDA GPU.*remove quantization_bit"):
        train(config)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_deepspeed_configs_set_their_zero_stage_and_leave_sizes_to_the_trainer(stage):
    path = EXAMPLES / f"deepspeed/ds_z{stage}_config.json"
    settings = json.loads(path.read_text())
    assert settings["zero_optimization"]["stage"] == stage
    # "auto" lets transformers fill them from the training config, so one file serves every run.
    assert settings["train_micro_batch_size_per_gpu"] == settings["gradient_accumulation_steps"] == "auto"
    assert load_config(EXAMPLES / "sft_lora.yaml", [f"deepspeed={path.relative_to(ROOT)}"]).deepspeed


def test_fsdp_config_becomes_transformers_fsdp_plugin(tmp_path):
    config = load_config(EXAMPLES / "sft_lora.yaml", ["fsdp=examples/train/fsdp/fsdp_config.json", f"output_dir={tmp_path}"])
    args = TrainingArguments(**_training_arguments(config, has_eval=False))
    assert args.fsdp_plugin_args["fsdp_version"] == 2
    assert args.fsdp_plugin_args["transformer_cls_names_to_wrap"] == "LlamaDecoderLayer"


@pytest.mark.parametrize("key", ["deepspeed", "fsdp"])
def test_a_missing_or_broken_scale_out_file_fails_at_once(key, tmp_path):
    with pytest.raises(ConfigError, match=f"{key}: cannot read"):
        load_config(EXAMPLES / "sft_lora.yaml", [f"{key}={tmp_path / 'missing.json'}"])
    broken = tmp_path / "broken.json"
    broken.write_text("{zero: 3")
    with pytest.raises(ConfigError, match=f"{key}: .*not valid JSON"):
        load_config(EXAMPLES / "sft_lora.yaml", [f"{key}={broken}"])
