"""The model a run trains: the base loaded by llmkit, then LoRA adapters, frozen layers or all weights trainable."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from llmkit.hub import resolve
from llmkit.models import load
from llmkit.models.chat_template import template_change_note
from llmkit.models.loading import load_tokenizer
from llmkit.models.named_templates import stop_word_note
from llmkit.train.config import ConfigError, TrainConfig


def prepare_model(config: TrainConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the base model and make exactly the parameters `finetuning_type` names trainable."""
    if config.quantization_bit is not None and not torch.cuda.is_available():
        raise ConfigError(
            f"quantization_bit: {config.quantization_bit}-bit QLoRA needs a CUDA GPU and bitsandbytes; "
            "on a CPU remove quantization_bit (plain LoRA)"
        )
    if config.stage == "rm":
        model, tokenizer = _reward_model(config)
    else:
        model, tokenizer = load(
            config.model_name_or_path,
            dtype="bfloat16" if config.bf16 else "float32",
            device="cpu",  # the Trainer (or accelerate) places it
            chat_template=config.template,
            quantization_bit=config.quantization_bit,
        )
    model.config.use_cache = False
    if config.quantization_bit is not None:
        from peft import prepare_model_for_kbit_training

        # QLoRA's recipe: norms and head in fp32 for stable gradients, input grads for checkpointing.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    if config.finetuning_type == "lora":
        model = _add_lora(model, config)
    elif config.finetuning_type == "freeze":
        _train_last_layers(model, config.freeze_trainable_layers)
    else:
        model.requires_grad_(True)
    if config.gradient_checkpointing:
        model.enable_input_require_grads()  # LoRA / frozen embeddings: checkpointed blocks still need a grad path
    return model, tokenizer


def template_notes(config: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """For the run's report: that `template:` replaces the base tokenizer's own chat template (the output carries it),
    and which of its stop words this tokenizer cannot stop on."""
    if config.template is None:
        return []
    own = load_tokenizer(resolve(config.model_name_or_path)).chat_template
    notes = (template_change_note(own, config.template), stop_word_note(tokenizer, config.template))
    return [note for note in notes if note]


def _reward_model(config: TrainConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base with a one-output score head (newly initialised), as TRL's RewardTrainer expects."""
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    return score_model(config.model_name_or_path, dtype, chat_template=config.template)


def score_model(
    name: str, dtype: torch.dtype, chat_template: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """`name` with a one-output score head (its own, or a new one) and its tokenizer, agreeing on the pad token."""
    from transformers import AutoModelForSequenceClassification

    directory = resolve(name)
    tokenizer = load_tokenizer(directory, chat_template)
    model = AutoModelForSequenceClassification.from_pretrained(directory, num_labels=1, dtype=dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _add_lora(model: PreTrainedModel, config: TrainConfig) -> PreTrainedModel:
    """New LoRA adapters as the config shapes them, or `adapter_name_or_path`'s adapter to train on."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if config.adapter_name_or_path is not None:
        try:
            return PeftModel.from_pretrained(model, resolve(config.adapter_name_or_path), is_trainable=True)
        except (OSError, ValueError) as error:
            raise ConfigError(f"adapter_name_or_path: cannot load a LoRA adapter from it: {error}") from None
    targets = "all-linear" if config.lora_target == "all" else [n.strip() for n in config.lora_target.split(",")]
    lora = LoraConfig(
        r=config.lora_rank, lora_alpha=config.alpha, lora_dropout=config.lora_dropout, target_modules=targets,
        use_rslora=config.use_rslora, use_dora=config.use_dora,
        modules_to_save=[name.strip() for name in config.additional_target.split(",")] if config.additional_target else None,
        task_type="SEQ_CLS" if config.stage == "rm" else "CAUSAL_LM",  # SEQ_CLS also trains the score head
    )
    try:
        peft_model = get_peft_model(model, lora)
    except ValueError as error:  # PEFT: target modules not found in the model
        raise ConfigError(f"lora_target: {error}") from None
    # Recorded in adapter_config.json: `llmkit chat --model OUT` loads this base, by the name the user gave.
    peft_model.peft_config["default"].base_model_name_or_path = config.model_name_or_path
    return peft_model


def _train_last_layers(model: PreTrainedModel, count: int) -> None:
    """Freeze everything but the last `count` decoder layers (LLaMA-Factory's `freeze` tuning)."""
    layers = model.get_decoder().layers
    if count > len(layers):
        raise ConfigError(f"freeze_trainable_layers: the model has {len(layers)} layers, not {count}")
    model.requires_grad_(False)
    for layer in layers[-count:]:
        layer.requires_grad_(True)
