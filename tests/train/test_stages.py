"""Every stage but sft on the real demo data (pt also logs to TensorBoard): each runs and its own measure moves the
right way: pt's loss, dpo / orpo / simpo / kto's reward margin, rm's accuracy, ppo and grpo's mean reward."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from llmkit.train.config import ConfigError, load_config
from llmkit.train.encoding import fit_prompt
from llmkit.train.preference import _dpo_losses
from llmkit.train.rl import load_reward_function, load_reward_model
from llmkit.train.run import TrainResult, train

DATA = Path(os.environ["LLMKIT_SHARED_DATA"]) / "llama-factory"
ROOT = Path(__file__).resolve().parents[2]


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
                 "lr_scheduler_type=constant", "num_train_epochs=100", "report_to=tensorboard")
    losses = [r["loss"] for r in logs(out) if "loss" in r]
    assert result.global_step == 4 and losses[-1] < losses[0] - 0.1
    assert list(out.glob("runs/*/events.out.tfevents.*"))  # report_to reached transformers' TensorBoard callback


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


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory) -> tuple[Path, TrainResult]:
    """One rm run on the 4 shortest real pairs: tested as stage rm, then the reward model of the ppo test."""
    directory = tmp_path_factory.mktemp("rm")
    result = run(directory / "rm", "stage=rm", f"dataset={shortest_pairs(directory, 4)}", "cutoff_len=256",
                 "per_device_train_batch_size=2", "max_steps=8", "learning_rate=5e-3", "lora_rank=8",
                 "lr_scheduler_type=constant", "num_train_epochs=100")
    return directory / "rm", result


def test_reward_model_ranks_chosen_above_rejected(reward_model):
    out, result = reward_model
    records = [r for r in logs(out) if "loss" in r]
    assert result.global_step == 8
    assert records[-1]["loss"] < records[0]["loss"]
    assert records[-1]["accuracy"] >= records[0]["accuracy"]


def test_orpo_and_simpo_widen_the_margin_without_a_reference(tmp_path):
    pairs = shortest_pairs(tmp_path, 2)
    for loss, extra in (("orpo", []), ("simpo", ["pref_ftx=0.5"])):  # simpo: pref_ftx is CPO's SFT weight
        out = tmp_path / loss
        run(out, "stage=dpo", f"pref_loss={loss}", *extra, f"dataset={pairs}", "cutoff_len=96",
            "per_device_train_batch_size=2", "max_steps=2", "learning_rate=5e-3", "lora_rank=8",
            "lr_scheduler_type=constant", "num_train_epochs=100")
        first, last = [r for r in logs(out) if "loss" in r]
        assert last["loss"] < first["loss"] and last["rewards/margins"] > first["rewards/margins"], loss
        assert last["nll_loss"] < first["nll_loss"], loss  # both train the chosen answers too


def shortest_feedback(directory: Path) -> Path:
    """The shortest desirable and the shortest undesirable answer of the KTO demo data."""
    rows = json.loads((ROOT / "examples/train/data/kto_en_demo.json").read_text(encoding="utf-8"))
    size = lambda r: sum(len(m["content"]) for m in r["messages"])
    picked = [min((r for r in rows if r["label"] is tag), key=size) for tag in (True, False)]
    path = directory / "feedback.json"
    path.write_text(json.dumps(picked), encoding="utf-8")
    return path


def test_kto_separates_desirable_from_undesirable_answers(tmp_path):
    out = tmp_path / "kto"
    # A path's rows carry TRL's `label` column, the KTO tag when the registry names none.
    result = run(out, "stage=kto", f"dataset={shortest_feedback(tmp_path)}", "cutoff_len=96",
                 "per_device_train_batch_size=2", "max_steps=2", "learning_rate=1e-2", "lora_rank=8",
                 "lr_scheduler_type=constant", "num_train_epochs=100")
    first, last = [r for r in logs(out) if "loss" in r]
    assert result.global_step == 2 and last["loss"] < first["loss"]
    assert first["rewards/margins"] == 0 < last["rewards/margins"]  # the start is the reference: no margin yet


SHORTER = """
def shorter(completions, **kwargs):
    return [-len(completion[0]["content"]) / 50 for completion in completions]
"""


def test_grpo_raises_a_python_reward(tmp_path):
    rewards = tmp_path / "rewards.py"
    rewards.write_text(SHORTER, encoding="utf-8")
    out = tmp_path / "grpo"
    run(out, "stage=grpo", f"reward_funcs={rewards}:shorter", f"dataset={DATA / 'identity.json'}", "max_samples=1",
        "cutoff_len=64", "per_device_train_batch_size=4", "num_generations=4", "max_completion_length=16",
        "temperature=1.0", "top_p=1.0", "top_k=0", "beta=0", "max_steps=3", "learning_rate=1e-2", "lora_rank=8",
        "lr_scheduler_type=constant", "num_train_epochs=100")
    rewards_logged = [r["rewards/shorter/mean"] for r in logs(out) if "loss" in r]
    assert rewards_logged[-1] > rewards_logged[0] + 0.3


def test_ppo_runs_grpo_against_an_rm_output_and_raises_its_score(reward_model, tmp_path):
    rm, _ = reward_model
    out = tmp_path / "ppo"
    # One real prompt of the pairs the reward model learnt, four samples of it per step.
    config = load_config(None, [
        f"output_dir={out}", "logging_steps=1", "save_steps=1000", "stage=ppo", f"reward_model={rm}",
        f"dataset={rm.parent / 'pairs.json'}", "max_samples=1", "cutoff_len=128", "per_device_train_batch_size=4",
        "num_generations=4", "max_new_tokens=16", "temperature=1.0", "top_p=1.0", "top_k=0", "ppo_epochs=1",
        "max_steps=4", "learning_rate=1e-2", "lora_rank=8", "lr_scheduler_type=constant", "num_train_epochs=100",
    ])
    assert any("TRL 1.x has no PPO trainer; running TRL's GRPO against reward_model" in note for note in config.notes)
    assert train(config).global_step == 4
    records = [r for r in logs(out) if "loss" in r]
    assert records[-1]["reward"] > records[0]["reward"] and records[-1]["kl"] > 0


def test_an_rm_output_loads_as_the_reward_and_ranks_as_it_learnt(reward_model, tmp_path):
    rm, _ = reward_model
    model, tokenizer = load_reward_model(str(rm), torch.float32, "lora")
    pair = json.loads((rm.parent / "pairs.json").read_text(encoding="utf-8"))[0]
    prompt = [{"role": "user", "content": pair["conversations"][0]["value"]}]
    texts = [tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": pair[answer]["value"]}],
                                           tokenize=False) for answer in ("chosen", "rejected")]
    with torch.no_grad():  # as TRL's GRPO scores completions
        scores = model(**tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)).logits[:, 0]
    assert scores[0] > scores[1]
    with pytest.raises(ConfigError, match="is a LoRA adapter on default; set reward_model_type: lora"):
        load_reward_model(str(rm), torch.float32, "full")
    with pytest.raises(ConfigError, match="does not exist; give the output_dir of an `llmkit train` rm run"):
        load_reward_model(str(tmp_path / "missing"), torch.float32, "lora")


def test_rl_prompts_keep_their_latest_rounds_within_cutoff_len(smollm):
    system = [{"role": "system", "content": "Be brief."}]
    rounds = [{"role": "user", "content": "word " * 60}, {"role": "assistant", "content": "ok"},
              {"role": "user", "content": "Who are you?"}]
    assert fit_prompt(system + rounds, smollm.tokenizer, 64) == system + rounds[2:]
    assert fit_prompt(system + rounds, smollm.tokenizer, 256) == system + rounds
    assert fit_prompt(rounds[:1], smollm.tokenizer, 32) is None  # one round too long: the record is left out


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["stage=ppo"], "reward_model: stage ppo needs one"),
        (["stage=grpo"], "reward_funcs: stage grpo needs at least one"),
        (["stage=grpo", "reward_funcs=r.py:f", "num_generations=3"], "must be whole groups of 3"),
        (["stage=grpo", "reward_funcs=r.py:f", "max_completion_length=8", "max_new_tokens=16"], "give one of the two"),
        (["stage=dpo", "kto_chosen_weight=2"], "kto_chosen_weight: acts in stage kto only"),
        (["stage=sft", "temperature=0.5"], "temperature: acts in stage ppo and grpo only"),
        (["stage=dpo", "pref_loss=orpo", "pref_ftx=0.1"], "pref_ftx: ORPO's loss holds its SFT term"),
        (["stage=dpo", "pref_loss=ipo", "dpo_label_smoothing=0.1"], "dpo_label_smoothing: only for pref_loss sigmoid"),
        (["stage=kto", "per_device_train_batch_size=1", "gradient_accumulation_steps=3"], "needs 2 or more"),
    ],
)
def test_stage_keys_out_of_place_are_refused_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["dataset=x", *overrides])


@pytest.mark.parametrize(
    ("overrides", "losses", "weights"),
    [
        ([], ["sigmoid"], [1.0]),
        (["pref_loss=hinge", "pref_ftx=0.5"], ["hinge", "sft"], [1.0, 0.5]),
        (["dpo_label_smoothing=0.1", "pref_bco_weight=1"], ["robust", "bco_pair"], [0.5, 0.5]),
    ],
)
def test_llamafactory_dpo_terms_become_trl_loss_weights(overrides, losses, weights):
    """cDPO's label smoothing runs as TRL's robust DPO; BCO is mixed in as (dpo + w * bco) / (1 + w)."""
    config = load_config(None, ["dataset=x", "stage=dpo", *overrides])
    assert _dpo_losses(config) == (losses, weights)


def test_kto_turns_one_example_batches_into_pairs_and_says_so():
    config = load_config(None, ["dataset=x", "stage=kto", "per_device_train_batch_size=1",
                                "gradient_accumulation_steps=8"])
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (1, 8)  # as written
    assert config.kto_batches() == (2, 4)
    assert any("runs as 2 x 4" in note for note in config.notes)


def test_reward_functions_load_by_path_or_module_and_name_what_is_missing(tmp_path):
    rewards = tmp_path / "rewards.py"
    rewards.write_text(SHORTER, encoding="utf-8")
    assert load_reward_function(f"{rewards}:shorter")(prompts=[], completions=[[{"content": "abc"}]]) == [-0.06]
    assert load_reward_function("json:dumps") is json.dumps
    for spec, message in [(f"{tmp_path}/none.py:f", "there is no file"), (f"{rewards}:longer", "has no function"),
                          ("no_such_module_here:f", "there is no module"), ("shorter", "neither")]:
        with pytest.raises(ConfigError, match=f"reward_funcs: .*{message}"):
            load_reward_function(spec)
