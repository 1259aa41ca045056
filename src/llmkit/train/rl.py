"""The RL stages on TRL's GRPOTrainer: `ppo` (LLaMA-Factory's RLHF stage, against an `llmkit train` rm output) and
`grpo` (rewards from Python functions or reward models).

TRL 1.x has no PPO trainer. GRPO keeps what PPO optimises, the clipped surrogate objective with a KL term to the
starting model, and replaces the value head with a baseline: the mean reward of `num_generations` completions of
the same prompt. LLaMA-Factory's PPO keys map onto GRPO where they mean the same (ppo_epochs → num_iterations,
ppo_buffer_size → rounds of updates per sampling, max_new_tokens / temperature / top_p / top_k → sampling) and the
rest are refused by name. Advantages are scaled over the batch, as PPO whitens them.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from llmkit.models.loading import adapter_base, load_tokenizer
from llmkit.train.config import ConfigError, TrainConfig
from llmkit.train.encoding import fit_prompt
from llmkit.train.model_setup import score_model

logger = logging.getLogger("llmkit.train")


def rl_trainer(
    config: TrainConfig, model: Any, tokenizer: PreTrainedTokenizerBase, train: Dataset, evaluation: Dataset | None,
    arguments: dict[str, Any], callbacks: list[TrainerCallback],
):
    """GRPO on `model` (a PEFT model: with beta > 0 a frozen copy of its adapter is the reference) over the prompts
    of `train`, scored by the stage's rewards."""
    from trl import GRPOConfig, GRPOTrainer

    dtype = torch.bfloat16 if config.bf16 else torch.float32
    specs = [config.reward_model] if config.stage == "ppo" else config.reward_funcs
    rewards = [_reward(spec, config, dtype) for spec in specs]
    args = GRPOConfig(**arguments, **_sampling_arguments(config))
    return GRPOTrainer(
        model=model,
        reward_funcs=[function for function, _ in rewards],
        reward_processing_classes=[reward_tokenizer for _, reward_tokenizer in rewards],
        args=args,
        train_dataset=_fit_prompts(train, tokenizer, config),
        eval_dataset=_fit_prompts(evaluation, tokenizer, config) if evaluation is not None else None,
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def _sampling_arguments(config: TrainConfig) -> dict[str, Any]:
    """GRPOConfig's sampling and loss settings; stage ppo maps LLaMA-Factory's PPO keys onto them."""
    settings = {
        "num_generations": config.num_generations,
        "max_completion_length": config.max_completion_length or config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k,
        "repetition_penalty": config.repetition_penalty,
        "beta": config.beta,
        "reward_weights": config.reward_weights,
    }
    if config.stage == "ppo":
        settings |= {
            "num_iterations": config.ppo_epochs,
            "steps_per_generation": config.gradient_accumulation_steps * config.ppo_buffer_size,
            "scale_rewards": "batch",  # PPO whitens its advantages over the batch
        }
    return settings


def _fit_prompts(rows: Dataset, tokenizer: PreTrainedTokenizerBase, config: TrainConfig) -> Dataset:
    """The prompts cut to `cutoff_len` tokens (oldest rounds first); those whose last round alone is longer are left
    out, with a warning."""
    fitted = []
    for row in rows:
        prompt = fit_prompt(row["prompt"], tokenizer, config.cutoff_len)
        if prompt is not None:
            fitted.append({**row, "prompt": prompt})
    if not fitted:
        raise ConfigError(f"cutoff_len: every prompt is longer than {config.cutoff_len} tokens; raise cutoff_len")
    if len(fitted) < len(rows):
        logger.warning(
            "stage %s: %d of %d prompts are longer than cutoff_len=%d tokens and were left out",
            config.stage, len(rows) - len(fitted), len(rows), config.cutoff_len,
        )
    return Dataset.from_list(fitted)


def _reward(spec: str, config: TrainConfig, dtype: torch.dtype) -> tuple[Callable | PreTrainedModel, Any]:
    """A reward and the tokenizer it reads with (None for a function): stage ppo's reward_model, or one item of
    grpo's reward_funcs (a reward-model directory, or a function by path)."""
    if config.stage == "ppo":
        return load_reward_model(spec, dtype, config.reward_model_type, config.reward_model_adapters, "reward_model")
    if Path(spec).expanduser().is_dir():
        kind = "lora" if adapter_base(spec) is not None else "full"
        return load_reward_model(spec, dtype, kind, None, "reward_funcs")
    return load_reward_function(spec), None


def load_reward_model(
    path: str, dtype: torch.dtype, kind: str, adapters: str | None = None, key: str = "reward_model"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A trained reward model, frozen, and the tokenizer (with the chat template) it was trained with: an rm run's
    LoRA adapter merged into its base's score model (`kind` lora), or a whole model plus optional `adapters` (full)."""
    from peft import PeftModel

    base = adapter_base(path)
    if kind == "lora" and base is None:
        problem = "is not a LoRA adapter directory" if Path(path).is_dir() else "does not exist"
        raise ConfigError(
            f"{key}: {path} {problem}; give the output_dir of an `llmkit train` rm run (a whole model: "
            "reward_model_type: full)"
        )
    if kind == "full" and base is not None:
        raise ConfigError(f"{key}: {path} is a LoRA adapter on {base}; set reward_model_type: lora")
    model, tokenizer = score_model(base or path, dtype)
    if base is not None and (Path(path) / "tokenizer_config.json").is_file():
        tokenizer = load_tokenizer(path)  # saved by the rm run, with the template it trained on
    for adapter in ([path] if base is not None else []) + ([adapters] if adapters is not None else []):
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval().requires_grad_(False), tokenizer


def load_reward_function(spec: str) -> Callable:
    """`path/to/file.py:name` or `package.module:name` → that function; a `ConfigError` naming `spec` if it is not
    there. TRL calls it as f(prompts, completions, **columns) -> list[float]; `reference` is the dataset's answer."""
    location, _, name = spec.rpartition(":")
    if not location or not name:
        raise ConfigError(
            f"reward_funcs: {spec!r} is neither path/file.py:function, package.module:function nor a directory"
        )
    if location.endswith(".py"):
        path = Path(location).expanduser()
        if not path.is_file():
            raise ConfigError(f"reward_funcs: {spec!r}: there is no file {path}")
        module_spec = importlib.util.spec_from_file_location(f"llmkit_reward_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(location)
        except ModuleNotFoundError as error:
            if error.name is None or not f"{location}.".startswith(f"{error.name}."):
                raise  # the module exists; something it imports does not
            raise ConfigError(f"reward_funcs: {spec!r}: there is no module {location!r} to import") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(f"reward_funcs: {spec!r}: {location} has no function {name!r}")
    return function
