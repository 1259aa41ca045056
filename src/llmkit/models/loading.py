"""Load a model and its tokenizer from any name `llmkit.hub.resolve` accepts, ready for inference."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch

from llmkit.errors import ChatTemplateError, InvalidRequestError, ModelNotFoundError
from llmkit.hub import ProgressCallback, resolve

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


class LoadedModel(NamedTuple):
    """A model in eval mode and its tokenizer; unpacks as `model, tokenizer = load(...)`."""

    model: Any
    tokenizer: Any

    @property
    def path(self) -> Path:
        """The local directory the weights were loaded from."""
        return Path(self.model.name_or_path)


def pick_device(device: str = "auto") -> torch.device:
    """`auto` means CUDA when available, else CPU; anything else is passed to torch as it is."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise InvalidRequestError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from error


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` means bfloat16 where the hardware computes in it natively, else float16 on GPUs, float32 on CPUs.

    On CPUs with AVX512-BF16 / AMX, bf16 weights halve the memory read per token: decoding is ~1.6x faster.
    """
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else torch.float32
    if dtype.lower() not in _DTYPES:
        raise InvalidRequestError(f"unknown dtype {dtype!r}: use auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype.lower()]


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 arithmetic instructions (read from /proc/cpuinfo; False where it is absent)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def load(
    name: str,
    dtype: str = "auto",
    device: str = "auto",
    adapter: str | Path | None = None,
    chat_template: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> LoadedModel:
    """Resolve `name`, load model (+ optional LoRA adapter) and tokenizer on `device` in `dtype`, eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = resolve(name, progress=progress)
    target_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, target_device)

    tokenizer = AutoTokenizer.from_pretrained(directory)
    if chat_template is not None:
        tokenizer.chat_template = _read_template(Path(chat_template))
    if tokenizer.pad_token is None:
        # Reuse EOS for padding: adding a new token would change the vocabulary and the embedding size.
        tokenizer.pad_token = tokenizer.eos_token

    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch_dtype).to(target_device)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if adapter is not None:
        model = _attach_adapter(model, Path(adapter))
    model.eval()
    return LoadedModel(model, tokenizer)


def _read_template(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as error:
        raise ChatTemplateError(f"cannot read chat template {path}: {error.strerror}") from error


def _attach_adapter(model, adapter: Path):
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise ModelNotFoundError(f"{adapter} is not a LoRA adapter directory (no adapter_config.json)")
    return PeftModel.from_pretrained(model, str(adapter))
