"""The preference stages on TRL: `dpo` (DPOTrainer, the frozen base as reference; `pref_loss` orpo and simpo on
TRL's reference-free ORPO and CPO trainers), `kto` (KTOTrainer, on answers tagged desirable or not) and `rm`
(RewardTrainer, a scalar head on the base). Records go to TRL in its conversational format, so TRL renders them
with the model's chat template exactly as it documents.
"""

from __future__ import annotations

import warnings
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase, TrainerCallback

from llmkit.train.config import TrainConfig
from llmkit.train.datasets import Feedback, Preference, Prompt


def conversational(records: list[Preference | Feedback | Prompt]) -> Dataset:
    """TRL's conversational rows: `prompt` messages, then `chosen` / `rejected` replies (dpo, rm), a `completion` and
    its `label` (kto), or nothing more but the dataset's `reference` answer (ppo, grpo)."""
    return Dataset.from_list([_row(record) for record in records])


def _row(record: Preference | Feedback | Prompt) -> dict[str, Any]:
    prompt = ([{"role": "system", "content": record.system}] if record.system else []) + list(record.prompt)
    if isinstance(record, Preference):
        return {"prompt": prompt, "chosen": _reply(record.chosen), "rejected": _reply(record.rejected)}
    if isinstance(record, Feedback):
        return {"prompt": prompt, "completion": _reply(record.answer), "label": record.desirable}
    return {"prompt": prompt, "reference": record.reference}


def _reply(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def preference_trainer(
    config: TrainConfig, model: Any, tokenizer: PreTrainedTokenizerBase, train: Dataset, evaluation: Dataset | None,
    arguments: dict[str, Any], callbacks: list[TrainerCallback],
):
    """The TRL trainer of stage dpo (any `pref_loss`), kto or rm on `model`. With a PEFT model, dpo and kto take the
    model with its adapter off as the reference, so no second copy is loaded; orpo and simpo need none."""
    if config.stage == "rm":
        trainer_class, args = _reward(config, arguments)
    elif config.stage == "kto":
        trainer_class, args = _kto(config, arguments)
    elif config.pref_loss in ("orpo", "simpo"):
        trainer_class, args = _reference_free(config, arguments)
    else:
        trainer_class, args = _dpo(config, arguments)
    return trainer_class(
        model=model, args=args, train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer,
        callbacks=callbacks,
    )


def _dpo(config: TrainConfig, arguments: dict[str, Any]) -> tuple[type, Any]:
    """DPO with LLaMA-Factory's extra terms as TRL's weighted losses."""
    from trl import DPOConfig, DPOTrainer

    losses, weights = _dpo_losses(config)
    return DPOTrainer, DPOConfig(
        **arguments, beta=config.pref_beta, loss_type=losses, loss_weights=weights,
        label_smoothing=config.dpo_label_smoothing, max_length=config.cutoff_len,
    )


def _dpo_losses(config: TrainConfig) -> tuple[list[str], list[float]]:
    """LLaMA-Factory's DPO loss as TRL loss terms and weights: the preference loss (robust DPO when labels are
    smoothed), BCO mixed in as (loss + w * bco) / (1 + w), and `pref_ftx` times the SFT loss on the chosen answers."""
    bco = config.pref_bco_weight
    losses = ["robust" if config.dpo_label_smoothing > 0 else config.pref_loss]
    weights = [1 / (1 + bco)]
    if bco > 0:
        losses.append("bco_pair")
        weights.append(bco / (1 + bco))
    if config.pref_ftx > 0:
        losses.append("sft")
        weights.append(config.pref_ftx)
    return losses, weights


def _reference_free(config: TrainConfig, arguments: dict[str, Any]) -> tuple[type, Any]:
    """ORPO (an odds-ratio term beside the SFT loss) or SimPO (length-normalised margin, `pref_ftx` as CPO's SFT
    weight), from TRL's experimental trainers: LLaMA-Factory runs both without a reference model too."""
    from trl.import_utils import TRLExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TRLExperimentalWarning)  # importing trl.experimental warns once
        from trl.experimental.cpo import CPOConfig, CPOTrainer
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    common = dict(arguments, beta=config.pref_beta, max_length=config.cutoff_len, remove_unused_columns=False)
    if config.pref_loss == "orpo":
        return ORPOTrainer, ORPOConfig(**common)
    return CPOTrainer, CPOConfig(**common, loss_type="simpo", simpo_gamma=config.simpo_gamma, cpo_alpha=config.pref_ftx)


def _kto(config: TrainConfig, arguments: dict[str, Any]) -> tuple[type, Any]:
    """KTO on answers tagged desirable or not, each kind's losses weighted as LLaMA-Factory's keys say."""
    from trl import KTOConfig, KTOTrainer

    batch, steps = config.kto_batches()
    arguments = {**arguments, "per_device_train_batch_size": batch, "gradient_accumulation_steps": steps}
    return KTOTrainer, KTOConfig(
        **arguments, beta=config.pref_beta, desirable_weight=config.kto_chosen_weight,
        undesirable_weight=config.kto_rejected_weight, max_length=config.cutoff_len,
    )


def _reward(config: TrainConfig, arguments: dict[str, Any]) -> tuple[type, Any]:
    """Reward modelling: the chosen reply must score above the rejected one (Bradley-Terry loss)."""
    from trl import RewardConfig, RewardTrainer

    return RewardTrainer, RewardConfig(**arguments, max_length=config.cutoff_len)
