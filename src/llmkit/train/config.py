"""One training run's settings: a pydantic model whose fields are LLaMA-Factory's names, from YAML + overrides.

`load_config("cfg.yaml", ["learning_rate=1e-4"])` reads the file, applies `key=value` overrides
(values parsed as YAML scalars) and validates everything; a wrong key or value is a `ConfigError`
naming the key and what it accepts.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import UnionType
from typing import Any, ClassVar, Literal, NamedTuple, Union, get_args, get_origin

import yaml
from pydantic import ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from llmkit.errors import LLMKitError
from llmkit.train.key_catalogue import FIXED_ARGUMENTS, NO_EFFECT, UNSUPPORTED, transformers_arguments
from llmkit.validation import describe
from llmkit.yaml_files import ConfigSection, read_yaml_mapping


class ConfigError(LLMKitError):
    """A training config that cannot run: unknown key, wrong type or value, unreadable file."""


class TrainConfig(ConfigSection):
    """Everything one `llmkit train` run needs; LLaMA-Factory users will recognise the names."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    keys_listed_by: ClassVar[str] = "`llmkit train --help-config`"
    llmkit_only: ClassVar[frozenset[str]] = frozenset(  # keys LLaMA-Factory does not have
        {"training_arguments", "reward_funcs", "reward_weights", "num_generations", "beta", "max_completion_length"}
    )

    # ---- what to train ----
    stage: Literal["sft", "pt", "rm", "dpo", "kto", "ppo", "grpo"] = Field(
        "sft", description="sft, pt (continued pre-training), rm, dpo, kto, ppo (on TRL's GRPO) or grpo."
    )
    model_name_or_path: str = Field("default", description="Base model: a name, local path, .gguf file or hub id.")
    finetuning_type: Literal["lora", "freeze", "full"] = Field("lora", description="lora, freeze or full.")
    quantization_bit: Literal[4, 8] | None = Field(None, description="QLoRA: load the base in 4 or 8 bits (GPU only).")
    lora_rank: int = Field(8, ge=1, description="LoRA rank r.")
    lora_alpha: int | None = Field(None, ge=1, description="LoRA alpha (default: 2 x lora_rank).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA branch.")
    lora_target: str = Field("all", description="'all' linear layers, or comma-separated module names.")
    freeze_trainable_layers: int = Field(2, ge=1, description="freeze: train the last N decoder layers.")
    adapter_name_or_path: str | None = Field(
        None, description="A LoRA adapter (an earlier run's output_dir) to continue training, e.g. dpo after sft."
    )
    additional_target: str | None = Field(
        None, description="Comma-separated modules trained in full beside LoRA (PEFT modules_to_save), e.g. lm_head."
    )
    use_rslora: bool = Field(False, description="Rank-stabilised LoRA scaling (alpha / sqrt(rank)).")
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")

    # ---- data ----
    dataset: list[str] = Field(
        default_factory=list, description="Dataset names (from dataset_dir/datasets.yaml) or paths; several are mixed."
    )
    dataset_dir: str = Field(
        "data", description="Folder with datasets.yaml (or dataset_info.json) and the files it names; ONLINE: "
        "dataset names are Hugging Face dataset ids; REMOTE:org/name: the registry of that cached hub dataset."
    )
    template: str | None = Field(
        None, description="Chat template: a LLaMA-Factory name (qwen, llama3, chatml, … see "
        "llmkit.models.named_templates), a Jinja file, or the Jinja text (default: the tokenizer's own)."
    )
    default_system: str | None = Field(None, description="System prompt for records that have none.")
    train_on_prompt: bool = Field(False, description="Supervise the prompt tokens too, not only the answers.")
    mask_history: bool = Field(False, description="Supervise only the last answer of a multi-turn record.")
    cutoff_len: int = Field(1024, ge=8, description="Longest example in tokens; longer ones are truncated.")
    packing: bool = Field(False, description="Pack short examples into cutoff_len rows (no cross-attention).")
    val_size: float = Field(
        0.0, ge=0, description="Examples held out for evaluation: a fraction below 1, or a count from 1 up."
    )
    max_samples: int | None = Field(None, ge=1, description="Use at most this many examples per dataset.")
    eval_dataset: list[str] = Field(
        default_factory=list, description="Datasets to evaluate on instead of holding out val_size; mixed as dataset."
    )
    mix_strategy: Literal["concat", "interleave_under", "interleave_over", "interleave_once"] = Field(
        "concat",
        description="How several datasets mix: concat (all, shuffled), or interleaved until the first runs out "
        "(interleave_under), until each was used whole (interleave_over), or each record once (interleave_once).",
    )
    interleave_probs: list[float] | None = Field(
        None, description="Chance of drawing from each dataset when interleaving (default: in turn); one per dataset."
    )

    @field_validator("dataset", "eval_dataset", "interleave_probs", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """LLaMA-Factory writes lists as comma-separated strings (`dataset: identity,alpaca_en_demo`, `interleave_probs:
        0.7,0.3`); YAML reads a single number as a number."""
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return [value] if isinstance(value, int | float) else value

    @model_validator(mode="after")
    def _consistent_data(self) -> TrainConfig:
        if self.train_on_prompt and self.mask_history:
            raise ValueError("mask_history: it supervises less than the answers, train_on_prompt more; pick one")
        if self.val_size >= 1 and self.val_size != int(self.val_size):
            raise ValueError(f"val_size: {self.val_size} is neither a fraction below 1 nor a whole number of examples")
        if self.eval_dataset and self.val_size > 0:
            raise ValueError("val_size: eval_dataset already gives the eval set; drop one of the two")
        if self.interleave_probs is not None:
            if self.mix_strategy == "concat":
                raise ValueError("interleave_probs: only for mix_strategy interleave_under, interleave_over or "
                                 "interleave_once")
            for key in ("dataset", "eval_dataset"):
                names = getattr(self, key)
                if names and len(names) != len(self.interleave_probs):
                    raise ValueError(f"interleave_probs: {len(self.interleave_probs)} values for the {len(names)} "
                                     f"datasets of {key}; give one per dataset")
            if min(self.interleave_probs) < 0 or sum(self.interleave_probs) <= 0:
                raise ValueError("interleave_probs: chances must be 0 or more, and not all 0")
        return self

    # ---- optimisation ----
    per_device_train_batch_size: int = Field(4, ge=1, description="Examples per step per device.")
    per_device_eval_batch_size: int = Field(4, ge=1, description="Examples per evaluation step per device.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Steps accumulated per optimizer update.")
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate.")
    lr_scheduler_type: str = Field("cosine", description="transformers scheduler name: cosine, linear, constant…")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Fraction of steps spent warming up.")
    warmup_steps: int = Field(0, ge=0, description="Warm-up updates; when set, it wins over warmup_ratio.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    num_train_epochs: float = Field(3.0, gt=0, description="Epochs (ignored when max_steps is set).")
    max_steps: int = Field(-1, description="Stop after this many optimizer updates (-1: use num_train_epochs).")
    seed: int = Field(42, description="Seed for initialisation and data order.")
    bf16: bool = Field(False, description="Train in bfloat16 mixed precision.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    deepspeed: str | None = Field(None, description="DeepSpeed config file, ZeRO stage 0-3 (GPUs, under torchrun).")
    fsdp: str | None = Field(None, description="FSDP config file, transformers' fsdp_config (GPUs, under torchrun).")

    # ---- preference and RL stages ----
    pref_beta: float = Field(
        0.1, gt=0, description="dpo, kto: beta of the preference loss (higher keeps the model nearer its start)."
    )
    pref_loss: Literal["sigmoid", "hinge", "ipo", "orpo", "simpo"] = Field(
        "sigmoid",
        description="dpo: sigmoid (DPO), hinge or ipo; orpo or simpo train without a reference model (TRL's ORPO "
        "and CPO trainers).",
    )
    pref_ftx: float = Field(
        0.0, ge=0, description="dpo: weight of an SFT loss on the chosen answers (SimPO: TRL's cpo_alpha)."
    )
    pref_bco_weight: float = Field(
        0.0, ge=0, description="dpo: mixes TRL's bco_pair loss in as (loss + w * bco) / (1 + w) (no running baseline)."
    )
    dpo_label_smoothing: float = Field(
        0.0, ge=0, lt=0.5,
        description="dpo with sigmoid: the chance a preference label is flipped, trained with TRL's robust DPO loss.",
    )
    simpo_gamma: float = Field(0.5, description="dpo with pref_loss simpo: SimPO's target reward margin.")
    kto_chosen_weight: float = Field(1.0, gt=0, description="kto: weight of the losses on desirable answers.")
    kto_rejected_weight: float = Field(1.0, gt=0, description="kto: weight of the losses on undesirable answers.")
    reward_model: str | None = Field(
        None, description="ppo: the reward model, the output_dir of an `llmkit train` run with stage rm."
    )
    reward_model_type: Literal["lora", "full"] = Field(
        "lora", description="ppo: reward_model is a LoRA adapter on its base (lora) or a whole model (full)."
    )
    reward_model_adapters: str | None = Field(None, description="ppo: a LoRA adapter put on a full reward_model.")
    ppo_epochs: int = Field(4, ge=1, description="ppo: optimisation passes over each round of samples (num_iterations).")
    ppo_buffer_size: int = Field(
        1, ge=1, description="ppo: optimizer updates (of gradient_accumulation_steps batches) per round of sampling."
    )
    reward_funcs: list[str] = Field(
        default_factory=list,
        description="grpo: rewards, each a function `path/file.py:name` or `package.module:name` with TRL's signature "
        "f(prompts, completions, **kwargs) -> list[float], or a reward-model directory.",
    )
    reward_weights: list[float] | None = Field(None, description="grpo: one weight per reward_funcs item (default 1).")
    num_generations: int = Field(
        8, ge=2, description="ppo, grpo: completions sampled per prompt; each is scored against its group's mean."
    )
    beta: float = Field(0.04, ge=0, description="ppo, grpo: KL coefficient to the starting model (0: no KL term).")
    max_new_tokens: int = Field(1024, ge=1, description="ppo, grpo: longest completion sampled, in tokens.")
    max_completion_length: int | None = Field(
        None, ge=1, description="grpo: TRL's name for max_new_tokens; give one of the two."
    )
    temperature: float = Field(0.95, gt=0, description="ppo, grpo: sampling temperature.")
    top_p: float = Field(0.7, gt=0, le=1, description="ppo, grpo: sample from the smallest set of tokens this likely.")
    top_k: int = Field(50, ge=0, description="ppo, grpo: sample from the k most likely tokens (0: no limit).")
    repetition_penalty: float = Field(1.0, gt=0, description="ppo, grpo: penalty on repeated tokens (1: none).")

    # The stages a key acts in: set away from its default for another stage, it is refused by name.
    stage_keys: ClassVar[dict[str, tuple[str, ...]]] = {
        "pref_beta": ("dpo", "kto"),
        **dict.fromkeys(("pref_loss", "pref_ftx", "pref_bco_weight", "dpo_label_smoothing", "simpo_gamma"), ("dpo",)),
        **dict.fromkeys(("kto_chosen_weight", "kto_rejected_weight"), ("kto",)),
        **dict.fromkeys(
            ("reward_model", "reward_model_type", "reward_model_adapters", "ppo_epochs", "ppo_buffer_size"), ("ppo",)
        ),
        **dict.fromkeys(("reward_funcs", "reward_weights", "max_completion_length"), ("grpo",)),
        **dict.fromkeys(
            ("num_generations", "beta", "max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty"),
            ("ppo", "grpo"),
        ),
    }

    @field_validator("reward_funcs", mode="before")
    @classmethod
    def _one_reward(cls, value: object) -> object:
        """`reward_funcs: rewards.py:exact_match` names a single reward."""
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent_stage(self) -> TrainConfig:
        for key, stages in self.stage_keys.items():
            if self.stage not in stages and getattr(self, key) != TrainConfig.model_fields[key].get_default(
                call_default_factory=True
            ):
                raise ValueError(f"{key}: acts in stage {' and '.join(stages)} only, not in stage {self.stage}")
        if self.stage == "dpo":
            self._check_pref_loss()
        if self.stage == "kto" and self.per_device_train_batch_size == 1:
            self._check_kto_batches()
        if self.stage in ("ppo", "grpo"):
            self._check_sampling()
        return self

    def _check_pref_loss(self) -> None:
        """The dpo keys that only some losses have (LLaMA-Factory's rules, and what TRL's trainers can do)."""
        if self.dpo_label_smoothing > 0 and self.pref_loss != "sigmoid":
            raise ValueError("dpo_label_smoothing: only for pref_loss sigmoid")
        if self.pref_ftx > 0 and self.pref_loss == "orpo":
            raise ValueError("pref_ftx: ORPO's loss holds its SFT term already; TRL's ORPO has no weight for another")
        if self.pref_bco_weight > 0 and self.pref_loss in ("orpo", "simpo"):
            raise ValueError(f"pref_bco_weight: BCO compares with a reference model, which {self.pref_loss} has not")
        if self.simpo_gamma != TrainConfig.model_fields["simpo_gamma"].default and self.pref_loss != "simpo":
            raise ValueError("simpo_gamma: only for pref_loss simpo")

    def kto_batches(self) -> tuple[int, int]:
        """(per_device_train_batch_size, gradient_accumulation_steps) as stage kto runs them: TRL's KTO estimates its
        KL term from the other answers in a batch, so one-example batches become pairs, the same examples per update."""
        if self.per_device_train_batch_size > 1:
            return self.per_device_train_batch_size, self.gradient_accumulation_steps
        return 2, self.gradient_accumulation_steps // 2

    def _check_kto_batches(self) -> None:
        steps = self.gradient_accumulation_steps
        if steps % 2:
            raise ValueError(
                "per_device_train_batch_size: TRL's KTO estimates its KL term from the other answers in a batch, so "
                "it needs 2 or more"
            )
        self._notes.append(
            f"stage kto: TRL's KTO estimates its KL term from the other answers in a batch, so "
            f"per_device_train_batch_size 1 x gradient_accumulation_steps {steps} runs as 2 x {steps // 2} "
            "(the same examples per update)"
        )

    def _check_sampling(self) -> None:
        """ppo and grpo sample whole groups of num_generations completions per prompt, and need something to score
        them; ppo says it runs on TRL's GRPO."""
        if self.stage == "ppo" and self.reward_model is None:
            raise ValueError("reward_model: stage ppo needs one: the output_dir of an `llmkit train` run with stage rm")
        if self.stage == "grpo" and not self.reward_funcs:
            raise ValueError(
                "reward_funcs: stage grpo needs at least one: path/file.py:function, package.module:function or a "
                "reward-model directory"
            )
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(
                f"reward_weights: {len(self.reward_weights)} weights for {len(self.reward_funcs)} reward_funcs; "
                "give one per reward"
            )
        default_length = TrainConfig.model_fields["max_new_tokens"].default
        if self.max_completion_length not in (None, self.max_new_tokens) and self.max_new_tokens != default_length:
            raise ValueError("max_completion_length: TRL's name for max_new_tokens; give one of the two")
        rounds = self.ppo_buffer_size if self.stage == "ppo" else 1
        sampled = self.per_device_train_batch_size * self.gradient_accumulation_steps * rounds
        if sampled % self.num_generations:
            factors = "gradient_accumulation_steps" + (" x ppo_buffer_size" if self.stage == "ppo" else "")
            raise ValueError(
                f"num_generations: the {sampled} completions sampled at a time (per_device_train_batch_size x "
                f"{factors}) must be whole groups of {self.num_generations}"
            )
        if (self.val_size > 0 or self.eval_dataset) and self.per_device_eval_batch_size % self.num_generations:
            raise ValueError(
                f"per_device_eval_batch_size: evaluation samples whole groups too; make it a multiple of "
                f"num_generations ({self.num_generations})"
            )
        if self.stage == "ppo":
            self._notes.append(
                f"stage ppo: TRL 1.x has no PPO trainer; running TRL's GRPO against reward_model {self.reward_model} "
                f"(PPO's clipped objective and KL to the starting model, with the mean reward of "
                f"{self.num_generations} samples per prompt as baseline instead of a value head)"
            )

    # ---- output ----
    output_dir: str = Field("out", description="Where checkpoints, the adapter/model and metrics go.")
    plot_loss: bool = Field(
        True, description="Draw training_loss.png (and training_eval_loss.png, …) from the logs at the end."
    )
    overwrite_output_dir: bool = Field(False, description="Train into a non-empty output_dir from scratch.")
    logging_steps: int = Field(10, ge=1, description="Log every N updates.")
    save_steps: int = Field(500, ge=1, description="Checkpoint every N updates.")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every N updates (default: save_steps).")
    save_total_limit: int | None = Field(3, ge=1, description="Keep at most this many checkpoints.")
    resume_from_checkpoint: str | bool | None = Field(
        None, description="A checkpoint directory, or true for the latest one in output_dir."
    )
    training_arguments: dict[str, Any] = Field(
        default_factory=dict,
        description="transformers TrainingArguments fields (optim, report_to, ddp_timeout, …): given as top-level "
        "keys, they are gathered here and handed to the Trainer as they are.",
    )
    _notes: list[str] = PrivateAttr(default_factory=list)

    @classmethod
    def known_keys(cls) -> Iterable[str]:
        return [*cls.model_fields, *transformers_arguments(), *NO_EFFECT, *UNSUPPORTED]

    @property
    def notes(self) -> list[str]:
        """One line per key that was accepted but has no effect here, to show before the run starts."""
        return self._notes

    @field_validator("training_arguments")
    @classmethod
    def _trainer_accepts(cls, given: dict[str, Any]) -> dict[str, Any]:
        """Every passed-through key is a TrainingArguments field llmkit leaves to the user, with a value it takes."""
        for key in given:
            if key not in transformers_arguments():
                raise ValueError(f"{key!r} is not a transformers TrainingArguments field")
            if key in FIXED_ARGUMENTS:
                raise ValueError(f"{key}: llmkit sets it itself (its padding-free batches depend on it)")
        return given

    @field_validator("deepspeed", "fsdp")
    @classmethod
    def _json_file(cls, path: str | None) -> str | None:
        """The scale-out configs are read by other processes later: a missing or broken file fails now."""
        if path is not None:
            try:
                json.loads(Path(path).read_text(encoding="utf-8"))
            except OSError as error:
                raise ValueError(f"cannot read {path}: {error.strerror}") from None
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not valid JSON: {error}") from None
        return path

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if not self.dataset:
            raise ValueError("dataset: name at least one dataset (a name from datasets.yaml or a file path)")
        if self.quantization_bit is not None and self.finetuning_type != "lora":
            raise ValueError("quantization_bit: QLoRA trains LoRA adapters; set finetuning_type: lora")
        if self.training_arguments.get("eval_strategy", "no") != "no" and not (self.val_size or self.eval_dataset):
            raise ValueError("eval_strategy: there is nothing to evaluate on; set val_size or eval_dataset")
        if self.adapter_name_or_path is not None and self.finetuning_type != "lora":
            raise ValueError("adapter_name_or_path: only a LoRA run continues an adapter; set finetuning_type: lora")
        if self.adapter_name_or_path is not None and "," in self.adapter_name_or_path:
            raise ValueError("adapter_name_or_path: give one adapter (merge earlier ones with llmkit export first)")
        return self

    @property
    def alpha(self) -> int:
        return self.lora_alpha or 2 * self.lora_rank


class KeyDoc(NamedTuple):
    """One row of `llmkit train --help-config`."""

    key: str
    type: str
    default: str
    effect: str
    llamafactory: str  # the key's name in LLaMA-Factory, "" when it has none


def config_reference() -> list[KeyDoc]:
    """Every key a training config may hold: TrainConfig's fields (in order), then transformers' TrainingArguments
    that pass through, then LLaMA-Factory's keys with no effect here and those refused unless "off"."""
    rows = [
        KeyDoc(key, _type_name(field.annotation), _default(field.get_default(call_default_factory=True)),
               field.description or "", "" if key in TrainConfig.llmkit_only else key)
        for key, field in TrainConfig.model_fields.items()
    ]
    for key, field in transformers_arguments().items():
        if key not in TrainConfig.model_fields and key not in NO_EFFECT and key not in UNSUPPORTED:
            default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
            effect = "fixed by llmkit" if key in FIXED_ARGUMENTS else "passed to transformers' TrainingArguments"
            rows.append(KeyDoc(key, _type_name(field.type), _default(default), effect, key))
    rows += [KeyDoc(key, "", "", f"no effect: {reason}", key) for key, reason in NO_EFFECT.items()]
    rows += [KeyDoc(key, "", _default(value.default), f"refused unless {_default(value.default)}: {value.reason}", key)
             for key, value in UNSUPPORTED.items()]
    return rows


def _default(value: Any) -> str:
    return "None" if value is None else repr(value)


def _type_name(annotation: object) -> str:
    """A field's type as users write it: `sft | pt | rm | dpo`, `int | None`, `list[str]`."""
    if get_origin(annotation) is Literal:
        return " | ".join(str(value) for value in get_args(annotation))
    if get_origin(annotation) in (UnionType, Union):
        return " | ".join(_type_name(arg) for arg in get_args(annotation))
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", None) if get_origin(annotation) is None else str(annotation)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (or none) and apply `key=value` overrides; raise `ConfigError` naming the bad key."""
    values: dict = {}
    if path is not None:
        values = read_yaml_mapping(Path(path), "config", ConfigError)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r}: write key=value (e.g. learning_rate=1e-4)")
        values[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    values, notes = _sort_foreign_keys(values)
    try:
        config = TrainConfig.model_validate(values)
    except ValidationError as error:
        raise ConfigError(f"invalid training config: {describe(error.errors())}") from None
    config.notes.extend(notes)
    return config


def _sort_foreign_keys(values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Keys without a TrainConfig field: TrainingArguments fields gathered into `training_arguments`, keys with
    no effect here dropped with a note, features llmkit lacks refused unless set to their "off" value."""
    kept: dict[str, Any] = {"training_arguments": dict(values.pop("training_arguments", None) or {})}
    notes = []
    for key, value in values.items():
        if key in TrainConfig.model_fields:
            kept[key] = value
        elif key in NO_EFFECT:
            notes.append(f"{key} has no effect: {NO_EFFECT[key]}")
        elif key in UNSUPPORTED:
            if value != UNSUPPORTED[key].default:
                raise ConfigError(f"{key}: {value!r} is not supported: {UNSUPPORTED[key].reason}")
        elif key in transformers_arguments():
            kept["training_arguments"][key] = value
            if key.startswith("ddp_") and int(os.environ.get("WORLD_SIZE", "1")) == 1:
                notes.append(f"{key} has no effect on one process: it applies when torchrun starts several")
        else:
            kept[key] = value  # unknown: TrainConfig refuses it, with the key it most likely meant
    return kept, notes
