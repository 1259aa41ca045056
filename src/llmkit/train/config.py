"""One training run's settings: a pydantic model whose fields are LLaMA-Factory's names, from YAML + overrides.

`load_config("cfg.yaml", ["learning_rate=1e-4"])` reads the file, applies `key=value` overrides
(values parsed as YAML scalars) and validates everything; a wrong key or value is a `ConfigError`
naming the key and what it accepts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import UnionType
from typing import ClassVar, Literal, Union, get_args, get_origin

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from llmkit.errors import LLMKitError
from llmkit.validation import describe
from llmkit.yaml_files import ConfigSection, read_yaml_mapping


class ConfigError(LLMKitError):
    """A training config that cannot run: unknown key, wrong type or value, unreadable file."""


class TrainConfig(ConfigSection):
    """Everything one `llmkit train` run needs; LLaMA-Factory users will recognise the names."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    keys_listed_by: ClassVar[str] = "`llmkit train --help-config`"

    # ---- what to train ----
    stage: Literal["sft", "pt", "rm", "dpo"] = Field("sft", description="sft, pt (continued pre-training), rm or dpo.")
    model_name_or_path: str = Field("default", description="Base model: a name, local path, .gguf file or hub id.")
    finetuning_type: Literal["lora", "freeze", "full"] = Field("lora", description="lora, freeze or full.")
    quantization_bit: Literal[4, 8] | None = Field(None, description="QLoRA: load the base in 4 or 8 bits (GPU only).")
    lora_rank: int = Field(8, ge=1, description="LoRA rank r.")
    lora_alpha: int | None = Field(None, ge=1, description="LoRA alpha (default: 2 x lora_rank).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA branch.")
    lora_target: str = Field("all", description="'all' linear layers, or comma-separated module names.")
    freeze_trainable_layers: int = Field(2, ge=1, description="freeze: train the last N decoder layers.")

    # ---- data ----
    dataset: list[str] = Field(
        default_factory=list, description="Dataset names (from dataset_dir/datasets.yaml) or paths; several are mixed."
    )
    dataset_dir: str = Field("data", description="Folder with datasets.yaml and the files it names.")
    template: str | None = Field(None, description="Jinja chat template file (default: the tokenizer's).")
    cutoff_len: int = Field(1024, ge=8, description="Longest example in tokens; longer ones are truncated.")
    packing: bool = Field(False, description="Pack short examples into cutoff_len rows (no cross-attention).")
    val_size: float = Field(0.0, ge=0, lt=1, description="Fraction of examples held out for evaluation.")
    max_samples: int | None = Field(None, ge=1, description="Use at most this many examples per dataset.")

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

    # ---- preference stages ----
    pref_beta: float = Field(0.1, gt=0, description="DPO beta.")
    pref_loss: Literal["sigmoid", "hinge", "ipo"] = Field("sigmoid", description="DPO loss: sigmoid, hinge or ipo.")

    # ---- output ----
    output_dir: str = Field("out", description="Where checkpoints, the adapter/model and metrics go.")
    overwrite_output_dir: bool = Field(False, description="Train into a non-empty output_dir from scratch.")
    logging_steps: int = Field(10, ge=1, description="Log every N updates.")
    save_steps: int = Field(500, ge=1, description="Checkpoint every N updates.")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every N updates (default: save_steps).")
    save_total_limit: int | None = Field(3, ge=1, description="Keep at most this many checkpoints.")
    resume_from_checkpoint: str | bool | None = Field(
        None, description="A checkpoint directory, or true for the latest one in output_dir."
    )

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
        return self

    @property
    def alpha(self) -> int:
        return self.lora_alpha or 2 * self.lora_rank


def config_reference() -> list[tuple[str, str, str, str]]:
    """Every training config key as (key, type, default, description), in the order of `TrainConfig`: what
    `llmkit train --help-config` shows."""
    return [
        (key, _type_name(field.annotation), "required" if field.is_required() else repr(field.get_default(call_default_factory=True)),
         field.description or "")
        for key, field in TrainConfig.model_fields.items()
    ]


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
    if isinstance(values.get("dataset"), str):
        values["dataset"] = [name.strip() for name in values["dataset"].split(",") if name.strip()]
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as error:
        raise ConfigError(f"invalid training config: {describe(error.errors())}") from None
