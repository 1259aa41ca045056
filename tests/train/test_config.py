"""Training configs: YAML plus key=value overrides, validated with errors that name the key."""

from __future__ import annotations

import pytest

from llmkit.train.config import ConfigError, load_config


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("stage: sft\ndataset: identity,alpaca_en_demo\nlearning_rate: 1.0e-4\nlora_rank: 8\n")
    config = load_config(path, ["learning_rate=2e-4", "num_train_epochs=2", "lora_target=q_proj,v_proj"])
    assert config.dataset == ["identity", "alpaca_en_demo"]
    assert config.learning_rate == 2e-4 and config.num_train_epochs == 2
    assert config.lora_target == "q_proj,v_proj" and config.alpha == 16


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset=x", "stage=orpo"], "stage: Input should be 'sft', 'pt', 'rm', 'dpo', 'kto', 'ppo' or 'grpo'"),
        (["dataset=x", "learning_rate=-1"], "learning_rate: Input should be greater than 0"),
        (["dataset=x", "lora_rnak=8"], "unknown key 'lora_rnak' (did you mean 'lora_rank'"),
        (["dataset=x", "finetuning_type=full", "quantization_bit=4"], "QLoRA trains LoRA adapters"),
        ([], "dataset: name at least one dataset"),
        (["learning_rate"], "write key=value"),
    ],
)
def test_bad_configs_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(None, overrides)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: [sft\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- stage\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(listing)

