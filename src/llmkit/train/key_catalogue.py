"""The config keys a LLaMA-Factory YAML may hold that have no `TrainConfig` field, and what llmkit does with each.

Three kinds, so that nothing a user writes is silently dropped:
- transformers' `Seq2SeqTrainingArguments` fields (`ddp_timeout`, `optim`, `report_to`, …) go to the Trainer as
  they are (`TrainConfig.training_arguments`); a few that llmkit's batching needs are fixed (`FIXED_ARGUMENTS`);
- `NO_EFFECT`: keys that mean nothing here (LLaMA-Factory's preprocessing workers, its inference and export
  engines, multimodal settings): accepted, with a one-line note;
- `UNSUPPORTED`: features llmkit does not have (GaLore, Unsloth, OFT, …): accepted at LLaMA-Factory's default
  value, refused by name otherwise.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any, NamedTuple


class Unsupported(NamedTuple):
    """A feature llmkit lacks: the value that means "off" (LLaMA-Factory's default) and why it is refused."""

    default: Any
    reason: str


_ENCODED_ON_THE_FLY = "llmkit tokenizes examples when the run starts, with no worker pool or cache"
_INFERENCE = "it sets LLaMA-Factory's chat/export engines; llmkit serve, chat and export take their own flags"
_MULTIMODAL = "llmkit trains text models"
_HUB = "llmkit reads models and datasets from the local Hugging Face cache (fill it with llmkit download or hf download)"
_GENERATION = "generation settings apply to stages ppo and grpo, and to LLaMA-Factory's predict (llmkit eval here)"

NO_EFFECT: dict[str, str] = {
    # model arguments
    "trust_remote_code": "llmkit loads architectures transformers implements, never code from a model repo",
    "use_fast_tokenizer": "the fast tokenizer is always used",
    "low_cpu_mem_usage": "weights are always loaded without a throw-away random initialisation",
    "cache_dir": _HUB,
    "hf_hub_token": _HUB,
    "ms_hub_token": _HUB,
    "om_hub_token": _HUB,
    "model_revision": _HUB,
    "flash_attn": "llmkit picks the attention kernel itself: per-example attention over packed rows",
    "use_reentrant_gc": "gradient checkpointing is non-reentrant",
    "disable_gradient_checkpointing": "gradient checkpointing is off unless gradient_checkpointing: true",
    "print_param_status": "the trainable parameter count is printed at the start of every run",
    "use_kv_cache": _INFERENCE,
    "infer_backend": _INFERENCE,
    "infer_dtype": _INFERENCE,
    "offload_folder": _INFERENCE,
    "model_max_length": "cutoff_len bounds the examples",
    "compute_dtype": "set by LLaMA-Factory itself, not by users; bf16 chooses the precision here",
    "device_map": "the Trainer (or accelerate) places the model",
    "block_diag_attn": "packed rows always use per-example (block-diagonal) attention here",
    **dict.fromkeys(
        ("export_dir", "export_size", "export_device", "export_quantization_bit", "export_quantization_dataset",
         "export_quantization_nsamples", "export_quantization_maxlen", "export_legacy_format",
         "export_hub_model_id"),
        "exporting is its own command here: llmkit export OUTPUT_DIR",
    ),
    **dict.fromkeys(
        ("vllm_maxlen", "vllm_gpu_util", "vllm_enforce_eager", "vllm_max_lora_rank", "vllm_config", "sglang_maxlen",
         "sglang_mem_fraction", "sglang_tp_size", "sglang_config", "sglang_lora_backend"),
        _INFERENCE,
    ),
    **dict.fromkeys(
        ("image_max_pixels", "image_min_pixels", "image_do_pan_and_scan", "crop_to_patches", "video_max_pixels",
         "video_min_pixels", "video_fps", "video_maxlen", "use_audio_in_video", "audio_sampling_rate", "media_dir",
         "freeze_vision_tower", "freeze_multi_modal_projector"),
        _MULTIMODAL,
    ),
    # data arguments
    "overwrite_cache": _ENCODED_ON_THE_FLY,
    "preprocessing_batch_size": _ENCODED_ON_THE_FLY,
    "preprocessing_num_workers": _ENCODED_ON_THE_FLY,
    "data_shared_file_system": _ENCODED_ON_THE_FLY,
    "ignore_pad_token_for_loss": "batches carry no padding, and the loss covers supervised tokens only",
    "eval_num_beams": _GENERATION,
    "neat_packing": "packing never lets one example attend to another here, so packing: true is already neat",
    # finetuning arguments
    "include_effective_tokens_per_second": "every log line already has tokens_per_second of real (unpadded) tokens",
    # transformers' Seq2SeqTrainingArguments fields that only LLaMA-Factory's scripts read
    "do_train": "llmkit train always trains",
    "do_eval": "evaluation runs when val_size or eval_dataset gives an eval set",
    "generation_max_length": _GENERATION,
    "generation_num_beams": _GENERATION,
    "generation_config": _GENERATION,
    "sortish_sampler": "batches are formed from shuffled examples laid end to end, so there is nothing to sort",
    # LLaMA-Factory's own training-argument extras
    "ray_num_workers": "llmkit scales out with torchrun / accelerate, not Ray",
    "ray_init_kwargs": "llmkit scales out with torchrun / accelerate, not Ray",
    "master_addr": "torchrun's --master-addr sets it",
    "master_port": "torchrun's --master-port sets it",
    # RLHF and generating arguments: stage ppo runs TRL's GRPO (llmkit.train.rl)
    **dict.fromkeys(
        ("ppo_score_norm", "ppo_whiten_rewards"),
        "stage ppo's advantages (reward minus its group's mean, over the batch's spread) come out the same whether "
        "or not the scores are normalised or whitened first",
    ),
    "max_length": "max_new_tokens bounds the sampled completions (LLaMA-Factory also drops max_length then)",
    "length_penalty": "it shapes beam search, and ppo / grpo sample their completions",
}

_MISSING = "llmkit does not implement it"
UNSUPPORTED: dict[str, Unsupported] = {
    "adapter_folder": Unsupported(None, "give the adapter directory as adapter_name_or_path"),
    "resize_vocab": Unsupported(False, _MISSING),
    "split_special_tokens": Unsupported(False, _MISSING),
    "add_tokens": Unsupported(None, "new tokens are not added to the vocabulary here"),
    "add_special_tokens": Unsupported(None, "new tokens are not added to the vocabulary here"),
    "new_special_tokens_config": Unsupported(None, "new tokens are not added to the vocabulary here"),
    "init_special_tokens": Unsupported("noise_init", "new tokens are not added to the vocabulary here"),
    "rope_scaling": Unsupported(None, "the model's own RoPE settings are used"),
    "shift_attn": Unsupported(False, "LongLoRA's shift-short attention is not implemented"),
    "mixture_of_depths": Unsupported(None, _MISSING),
    "use_unsloth": Unsupported(False, "Unsloth is not used; llmkit's padding-free batches do the same job on CPU"),
    "use_unsloth_gc": Unsupported(False, "Unsloth is not used"),
    "enable_liger_kernel": Unsupported(False, "Liger's kernels need Triton; the loss here is already chunked"),
    "moe_aux_loss_coef": Unsupported(None, _MISSING),
    "upcast_layernorm": Unsupported(False, _MISSING),
    "upcast_lmhead_output": Unsupported(False, "the loss is always computed in float32"),
    "train_from_scratch": Unsupported(False, "llmkit fine-tunes pretrained weights"),
    "use_v1_kernels": Unsupported(False, _MISSING),
    "quantization_method": Unsupported("bnb", "QLoRA here is bitsandbytes only"),
    "quantization_type": Unsupported("nf4", "QLoRA here uses NF4"),
    "double_quantization": Unsupported(True, "QLoRA here always uses double quantization"),
    "quantization_device_map": Unsupported(None, _MISSING),
    **dict.fromkeys(
        ("use_kt", "kt_cpu_activation", "kt_weight_path", "kt_non_expert_weight_path", "kt_expert_checkpoint_path",
         "kt_use_lora_experts", "kt_lora_expert_num", "kt_lora_expert_intermediate_size"),
        Unsupported(None, "KTransformers is not used"),
    ),
    "streaming": Unsupported(False, "datasets are read whole; use max_samples to bound them"),
    "buffer_size": Unsupported(16384, "it belongs to streaming, which llmkit does not do"),
    "tokenized_path": Unsupported(None, "examples are tokenized when the run starts; nothing is saved to reuse"),
    "eval_on_each_dataset": Unsupported(False, _MISSING),
    "tool_format": Unsupported(None, "the template's own tool format is used (template: NAME)"),
    "preserve_thinking": Unsupported(False, _MISSING),
    "enable_thinking": Unsupported(True, "pick the template instead: qwen3 (thinking) or qwen3_nothink"),
    "freeze_trainable_modules": Unsupported("all", "freeze trains whole decoder layers (freeze_trainable_layers)"),
    "freeze_extra_modules": Unsupported(None, _MISSING),
    "freeze_language_model": Unsupported(False, _MISSING),
    "create_new_adapter": Unsupported(False, _MISSING),
    "loraplus_lr_ratio": Unsupported(None, "LoRA+ is not implemented"),
    "pissa_init": Unsupported(False, "PiSSA is not implemented"),
    "use_galore": Unsupported(False, "GaLore is not implemented"),
    "use_apollo": Unsupported(False, "APOLLO is not implemented"),
    "use_badam": Unsupported(False, "BAdam is not implemented"),
    "use_swanlab": Unsupported(False, "SwanLab is not integrated; report_to: tensorboard, wandb or mlflow"),
    "pure_bf16": Unsupported(False, "bf16: true trains in bfloat16 autocast with float32 master weights"),
    "use_llama_pro": Unsupported(False, "LLaMA Pro block expansion is not implemented"),
    "use_adam_mini": Unsupported(False, "Adam-mini is not implemented; optim takes transformers' optimizers"),
    "use_muon": Unsupported(False, "Muon is not implemented; optim takes transformers' optimizers"),
    "use_mca": Unsupported(False, "Megatron-Core is not used; scale out with deepspeed or fsdp"),
    "use_megatron_bridge": Unsupported(False, "Megatron is not used; scale out with deepspeed or fsdp"),
    "megatron_bridge_args": Unsupported(None, "Megatron is not used; scale out with deepspeed or fsdp"),
    "use_hyper_parallel": Unsupported(False, "scale out with deepspeed or fsdp"),
    "hyper_parallel_args": Unsupported(None, "scale out with deepspeed or fsdp"),
    "hyper_parallel_cp_size": Unsupported(1, "context parallelism is not implemented"),
    "use_dft_loss": Unsupported(False, "the DFT loss is not implemented"),
    "use_asft_loss": Unsupported(False, "the ASFT loss is not implemented"),
    "asft_alpha": Unsupported(0.1, "the ASFT loss is not implemented"),
    "use_eaft_loss": Unsupported(False, "the EAFT loss is not implemented"),
    "eaft_alpha": Unsupported(1.0, "the EAFT loss is not implemented"),
    "compute_accuracy": Unsupported(False, "eval reports the loss; measure accuracy with llmkit eval"),
    "disable_shuffling": Unsupported(False, _MISSING),
    "early_stopping_steps": Unsupported(None, _MISSING),
    "ld_alpha": Unsupported(None, "LD-DPO is not implemented"),
    "enable_torch_profiler": Unsupported(False, "profile with py-spy or torch.profiler around llmkit train"),
    "fp8": Unsupported(False, "FP8 training is not implemented"),
    "predict_with_generate": Unsupported(False, "predict is not part of training here; use llmkit eval"),
    "do_predict": Unsupported(False, "predict is not part of training here; use llmkit eval"),
    "ppo_target": Unsupported(6.0, "stage ppo runs TRL's GRPO, whose KL coefficient is fixed: set beta"),
    **dict.fromkeys(
        ("ref_model", "ref_model_adapters", "ref_model_quantization_bit"),
        Unsupported(None, "the reference is the starting model (with LoRA: the base with the adapter off)"),
    ),
    "reward_model_quantization_bit": Unsupported(None, "the reward model loads in the training precision"),
    "do_sample": Unsupported(True, "ppo and grpo compare sampled completions; greedy ones would all be the same"),
    "num_beams": Unsupported(1, "ppo and grpo sample their completions"),
    "skip_special_tokens": Unsupported(True, "completions reach the rewards decoded without special tokens"),
}

# The settings of a feature whose switch is in UNSUPPORTED: with the feature off, they have no effect.
_FEATURE_SETTINGS = {
    "LoRA+ (loraplus_lr_ratio)": ("loraplus_lr_embedding",),
    "PiSSA (pissa_init)": ("pissa_iter", "pissa_convert"),
    "OFT (finetuning_type: oft)": ("module_dropout", "oft_rank", "oft_block_size", "oft_target"),
    "GaLore (use_galore)": ("galore_target", "galore_rank", "galore_update_interval", "galore_scale",
                            "galore_proj_type", "galore_layerwise"),
    "APOLLO (use_apollo)": ("apollo_target", "apollo_rank", "apollo_update_interval", "apollo_scale", "apollo_proj",
                            "apollo_proj_type", "apollo_scale_type", "apollo_layerwise", "apollo_scale_front"),
    "BAdam (use_badam)": ("badam_mode", "badam_start_block", "badam_switch_mode", "badam_switch_interval",
                          "badam_update_ratio", "badam_mask_mode", "badam_verbose"),
    "SwanLab (use_swanlab)": ("swanlab_project", "swanlab_workspace", "swanlab_run_name", "swanlab_mode",
                              "swanlab_api_key", "swanlab_logdir", "swanlab_lark_webhook_url", "swanlab_lark_secret"),
    "the torch profiler (enable_torch_profiler)": (
        "profiler_output_dir", "profiler_wait_steps", "profiler_warmup_steps", "profiler_active_steps",
        "profiler_repeat", "profiler_record_shapes", "profiler_profile_memory", "profiler_with_stack",
        "profile_modules"),
    "FP8 training (fp8)": ("fp8_backend", "fp8_enable_fsdp_float8_all_gather"),
}
NO_EFFECT |= {
    key: f"it tunes {feature}, which llmkit does not implement"
    for feature, keys in _FEATURE_SETTINGS.items() for key in keys
}

# Fields of `TrainingArguments` that llmkit's padding-free batches and progress reporting depend on.
FIXED_ARGUMENTS = frozenset(
    {"output_dir", "remove_unused_columns", "label_names", "prediction_loss_only", "include_num_input_tokens_seen",
     "disable_tqdm", "use_cpu", "local_rank"}
)


@cache
def transformers_arguments() -> dict[str, dataclasses.Field]:
    """transformers' `Seq2SeqTrainingArguments` fields by name (LLaMA-Factory's training arguments extend them)."""
    from transformers import Seq2SeqTrainingArguments

    return {field.name: field for field in dataclasses.fields(Seq2SeqTrainingArguments) if field.init}
