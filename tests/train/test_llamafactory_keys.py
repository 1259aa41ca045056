"""Every LLaMA-Factory config key is honoured, accepted with a note that it has no effect, or refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmkit.cli.main import app
from llmkit.train.config import ConfigError, TrainConfig, config_reference, load_config
from llmkit.train.key_catalogue import NO_EFFECT, UNSUPPORTED, transformers_arguments
from llmkit.train.run import check_training_arguments

KEYS_FILE = Path(__file__).parent / "data" / "llamafactory_keys.txt"
LLAMAFACTORY_KEYS = [line.strip() for line in KEYS_FILE.read_text().splitlines() if line and not line.startswith("#")]


def test_every_llamafactory_key_is_known_and_listed():
    listed = {row.key for row in config_reference()}
    known = {*TrainConfig.model_fields, *NO_EFFECT, *UNSUPPORTED, *transformers_arguments()}
    assert [key for key in LLAMAFACTORY_KEYS if key not in known] == []
    assert [key for key in LLAMAFACTORY_KEYS if key not in listed] == []
    assert not set(TrainConfig.model_fields) & (set(NO_EFFECT) | set(UNSUPPORTED))  # each key has one meaning


def test_stock_sft_example_keys(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text(
        "model_name_or_path: Qwen/Qwen3-4B-Instruct-2507\ntrust_remote_code: true\nstage: sft\ndo_train: true\n"
        "dataset: identity,alpaca_en_demo\npreprocessing_num_workers: 16\ndataloader_num_workers: 4\n"
        "overwrite_cache: true\nreport_to: none\nddp_timeout: 180000000\nsave_only_model: false\nplot_loss: true\n"
    )
    config = load_config(path, ["model_name_or_path=default"])
    assert config.training_arguments == {
        "dataloader_num_workers": 4, "report_to": "none", "ddp_timeout": 180000000, "save_only_model": False
    }
    assert [note.split(" has no effect")[0] for note in config.notes] == [
        "trust_remote_code", "do_train", "preprocessing_num_workers", "overwrite_cache", "ddp_timeout"
    ]
    assert config.plot_loss and config.model_name_or_path == "default"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ddp_timout=10", "unknown key 'ddp_timout' (did you mean 'ddp_timeout'?"),
        ("use_galore=true", "use_galore: True is not supported: GaLore is not implemented"),
        ("quantization_method=gptq", "quantization_method: 'gptq' is not supported"),
        ("remove_unused_columns=true", "remove_unused_columns: llmkit sets it itself"),
        ("adapter_name_or_path=a,b", "adapter_name_or_path: give one adapter"),
    ],
)
def test_refused_keys_are_named(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
        load_config(None, ["dataset=identity", override])


def test_unsupported_feature_left_off_is_accepted():
    config = load_config(None, ["dataset=identity", "use_galore=false", "streaming=false", "galore_rank=16"])
    assert config.notes == ["galore_rank has no effect: it tunes GaLore (use_galore), which llmkit does not implement"]


@pytest.mark.parametrize(
    ("override", "message"),
    [("optim=adamw_foo", "training arguments: adamw_foo is not a valid OptimizerNames"),
     ("report_to=mlflow", "report_to: mlflow is not installed here \\(pip install mlflow\\)")],
)
def test_training_arguments_fail_before_the_model_loads(override, message):
    with pytest.raises(ConfigError, match=message):
        check_training_arguments(load_config(None, ["dataset=identity", override]))


def test_passed_through_arguments_reach_the_trainer():
    from llmkit.train.run import _training_arguments

    config = load_config(None, ["dataset=identity", "optim=sgd", "adam_beta2=0.95", "ddp_timeout=60"])
    arguments = _training_arguments(config, has_eval=False)
    assert (arguments["optim"], arguments["adam_beta2"], arguments["ddp_timeout"]) == ("sgd", 0.95, 60)


def test_help_config_lists_llamafactory_keys():
    result = CliRunner().invoke(app, ["train", "--help-config"], env={"COLUMNS": "240"})
    assert result.exit_code == 0
    for key in ("lora_rank", "ddp_timeout", "preprocessing_num_workers", "use_galore"):
        assert f"│ {key} " in result.output
    assert "refused unless False: GaLore is not implemented" in result.output


def test_default_system_fills_records_without_one():
    from llmkit.train.data_pipeline import load_records

    data = Path(__file__).parents[2] / "examples" / "train" / "data"
    config = load_config(None, ["dataset=identity", f"dataset_dir={data}", "max_samples=5", "default_system=Be brief."])
    records = load_records(config).train
    assert len(records) == 5 and {record.system for record in records} == {"Be brief."}
