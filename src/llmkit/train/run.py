"""The `llmkit train` recipe: config -> data -> model -> transformers Trainer -> an output directory every
llmkit command loads (`llmkit chat --model OUT`).

`output_dir` holds train_config.yaml (written first), metrics.jsonl (a line per log, as it happens),
checkpoint-N/ folders (resumable: optimizer, scheduler, RNG and data position), the final adapter or
model with its tokenizer, and training_loss.png (and the other curves, as LLaMA-Factory draws them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from llmkit.train.batching import collate
from llmkit.train.callbacks import MetricsLog, StepReport, StopOnInterrupt
from llmkit.train.config import ConfigError, TrainConfig
from llmkit.train.data_pipeline import build_training_data, load_records
from llmkit.train.datasets import Skipped
from llmkit.train import packed_attention
from llmkit.train.loss import supervised_loss, unwrapped
from llmkit.train.model_setup import prepare_model, template_notes
from llmkit.train.plots import plot_metrics
from llmkit.train.preference import conversational, preference_trainer
from llmkit.train.rl import rl_trainer


@dataclass
class TrainResult:
    """Where the run wrote its model and what it measured."""

    output_dir: Path
    global_step: int
    interrupted: bool
    train_loss: float | None
    eval_loss: float | None = None
    skipped: list = field(default_factory=list)


class SupervisedTrainer(Trainer):
    """transformers' Trainer with padding-free batches, per-example attention and the loss computed on supervised
    tokens only."""

    loss_is_scaled_for_ga = True  # `supervised_loss` divides by the whole accumulation step's token count

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        unwrapped(self.model).set_attn_implementation(packed_attention.NAME)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = supervised_loss(model, inputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # the Trainer divides by the process count again
        return (loss, None) if return_outputs else loss


def train(config: TrainConfig, report: StepReport | None = None) -> TrainResult:
    """Run `config` to the end (or to a Ctrl-C, which saves a checkpoint first); resumable from its checkpoints."""
    output_dir = Path(config.output_dir)
    resume = _checkpoint_to_resume(config, output_dir)
    check_training_arguments(config)
    set_seed(config.seed)
    model, tokenizer = prepare_model(config)
    for note in template_notes(config, tokenizer) if report is not None else ():
        report({"note": note})
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "train_config.yaml").write_text(yaml.safe_dump(config.model_dump(), sort_keys=False, allow_unicode=True))
    metrics_path = output_dir / "metrics.jsonl"
    if resume is None:
        metrics_path.unlink(missing_ok=True)
    stopper = StopOnInterrupt()
    trainer, skipped, has_eval = _trainer(config, model, tokenizer, [MetricsLog(metrics_path, report), stopper])
    trainer.remove_callback(PrinterCallback)  # progress goes through `report`, not print()
    outcome = trainer.train(resume_from_checkpoint=resume)
    eval_loss = trainer.evaluate()["eval_loss"] if has_eval and not stopper.interrupted else None
    if not stopper.interrupted:
        trainer.save_model(str(output_dir))
        tokenizer.save_pretrained(str(output_dir))
        if getattr(model, "generation_config", None) is not None:  # beside an adapter too: the tokens ending answers
            model.generation_config.save_pretrained(str(output_dir))
    if config.plot_loss:
        plot_metrics(metrics_path, output_dir)
    return TrainResult(
        output_dir=output_dir,
        global_step=trainer.state.global_step,
        interrupted=stopper.interrupted,
        train_loss=outcome.training_loss,
        eval_loss=eval_loss,
        skipped=skipped,
    )


def _trainer(
    config: TrainConfig, model, tokenizer, callbacks: list[TrainerCallback]
) -> tuple[Trainer, list[Skipped], bool]:
    """The stage's trainer over its data, the records skipped while loading, and whether there is an eval set."""
    if config.stage in ("sft", "pt"):
        data = build_training_data(config, tokenizer)
        args = TrainingArguments(**_training_arguments(config, has_eval=bool(data.eval)), **SUPERVISED_ARGUMENTS)
        trainer = SupervisedTrainer(
            model=model, args=args, train_dataset=data.train, eval_dataset=data.eval or None, data_collator=collate,
            processing_class=tokenizer, callbacks=callbacks,
        )
        return trainer, data.skipped, bool(data.eval)
    loaded = load_records(config)
    train_records, eval_records = loaded.train, loaded.eval
    build = rl_trainer if config.stage in ("ppo", "grpo") else preference_trainer
    evaluation = conversational(eval_records) if eval_records else None
    arguments = _training_arguments(config, has_eval=bool(eval_records))
    trainer = build(config, model, tokenizer, conversational(train_records), evaluation, arguments, callbacks)
    return trainer, loaded.skipped, bool(eval_records)


def _checkpoint_to_resume(config: TrainConfig, output_dir: Path) -> str | None:
    """The checkpoint `resume_from_checkpoint` asks for; refuse to silently train over an earlier run."""
    wanted = config.resume_from_checkpoint
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if wanted is True:
        if last is None:
            raise ConfigError(f"resume_from_checkpoint: no checkpoint-N folder in {output_dir} to resume from")
        return last
    if isinstance(wanted, str):
        if not Path(wanted).is_dir():
            raise ConfigError(f"resume_from_checkpoint: {wanted} is not a checkpoint directory")
        return wanted
    if last is not None and not config.overwrite_output_dir:
        raise ConfigError(
            f"output_dir {output_dir} already holds checkpoints: resume with resume_from_checkpoint=true, "
            "or start over with overwrite_output_dir=true"
        )
    return None


# What the padding-free supervised batches need from the Trainer (TRL's trainers bring their own).
SUPERVISED_ARGUMENTS = dict(
    prediction_loss_only=True, label_names=["labels"], remove_unused_columns=False, include_num_input_tokens_seen="all"
)


def check_training_arguments(config: TrainConfig) -> None:
    """Fail before the model loads on what transformers would refuse later: a bad optimizer, strategy or
    scheduler name, or a `report_to` integration that is not installed."""
    from transformers.integrations import get_available_reporting_integrations

    try:
        args = TrainingArguments(**_training_arguments(config, has_eval=False))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"training arguments: {error}") from None
    available = get_available_reporting_integrations()
    for name in args.report_to:
        if name not in available:
            raise ConfigError(f"report_to: {name} is not installed here (pip install {name}), or use report_to: none")


def _training_arguments(config: TrainConfig, *, has_eval: bool) -> dict:
    """transformers' `TrainingArguments` for this run (TRL's configs extend them); LLaMA-Factory's names map 1:1,
    and the TrainingArguments fields the config passes through win over llmkit's choices."""
    eval_steps = config.eval_steps or config.save_steps
    return dict(
        output_dir=config.output_dir,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        # transformers 5 has one argument for both: an int counts updates, a float in [0, 1) is a ratio of them.
        warmup_steps=config.warmup_steps or float(config.warmup_ratio),
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        seed=config.seed,
        data_seed=config.seed,
        bf16=config.bf16,
        activation_checkpointing=config.gradient_checkpointing,  # transformers 5.x name for LLaMA-Factory's key
        deepspeed=config.deepspeed,
        fsdp=config.fsdp is not None,
        fsdp_config=config.fsdp,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=eval_steps if has_eval else None,
        disable_tqdm=True,
        report_to="none",
        ddp_find_unused_parameters=False,  # every trainable weight takes part in each forward
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=torch.cuda.is_available(),
    ) | config.training_arguments
