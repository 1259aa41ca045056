"""The preference stages on TRL: `dpo` (DPOTrainer, the frozen base as reference) and `rm` (RewardTrainer,
a scalar head on the base). Records go to TRL in its conversational format, so TRL renders them with
the model's chat template exactly as it documents.
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase, TrainerCallback

from llmkit.train.config import TrainConfig
from llmkit.train.datasets import Preference


def conversational(records: list[Preference]) -> Dataset:
    """TRL's conversational preference rows: `prompt` messages, `chosen` / `rejected` assistant replies."""
    rows = []
    for record in records:
        system = [{"role": "system", "content": record.system}] if record.system else []
        rows.append({
            "prompt": system + list(record.prompt),
            "chosen": [{"role": "assistant", "content": record.chosen}],
            "rejected": [{"role": "assistant", "content": record.rejected}],
        })
    return Dataset.from_list(rows)


def dpo_trainer(
    config: TrainConfig, model: Any, tokenizer: PreTrainedTokenizerBase, train: Dataset, evaluation: Dataset | None,
    arguments: dict[str, Any], callbacks: list[TrainerCallback],
):
    """DPO on `model` (a PEFT model: with its adapter off it is the reference, so no second copy is loaded)."""
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(**arguments, beta=config.pref_beta, loss_type=[config.pref_loss], max_length=config.cutoff_len)
    return DPOTrainer(
        model=model, args=args, train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer,
        callbacks=callbacks,
    )


def reward_trainer(
    config: TrainConfig, model: Any, tokenizer: PreTrainedTokenizerBase, train: Dataset, evaluation: Dataset | None,
    arguments: dict[str, Any], callbacks: list[TrainerCallback],
):
    """Reward modelling: the chosen reply must score above the rejected one (Bradley-Terry loss)."""
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(**arguments, max_length=config.cutoff_len)
    return RewardTrainer(
        model=model, args=args, train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer,
        callbacks=callbacks,
    )
