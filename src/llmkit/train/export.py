"""Export a model for use outside llmkit: merge a LoRA adapter into its base and write one standalone folder.

The folder holds safetensors weights, the tokenizer (chat template included), the generation config, a
model card and, on request, one GGUF file for llama.cpp. It is built beside its destination and renamed
into place, so a failure never leaves half a model behind.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmkit.errors import LLMKitError, ModelNotFoundError
from llmkit.hub import ProgressCallback, resolve
from llmkit.hub.architecture import read_config
from llmkit.hub.gguf import replace_dir
from llmkit.models import load, pick_dtype
from llmkit.models.loading import adapter_base
from llmkit.train.gguf_export import GGUF_TYPES, check_gguf_support, write_gguf
from llmkit.train.model_card import read_training_record, render_model_card

GGUF_NAME = "model.gguf"
CARD_NAME = "README.md"
_STEPS = ("loading and merging", "saving safetensors", "writing GGUF", "done")


class ExportError(LLMKitError):
    """An export that cannot run: an occupied output folder, no base model, an adapter for another base."""


@dataclass(frozen=True)
class ExportResult:
    """What `export_model` wrote: the folder, its files with their sizes in bytes, and how it was made."""

    out: Path
    base_model: str
    adapter: Path | None
    dtype: str
    files: dict[str, int]

    @property
    def gguf(self) -> Path | None:
        """The GGUF file, when one was written."""
        return self.out / GGUF_NAME if GGUF_NAME in self.files else None

    @property
    def total_bytes(self) -> int:
        """Bytes written, all files together."""
        return sum(self.files.values())


def export_model(
    model: str | None,
    out: str | Path,
    *,
    adapter: str | Path | None = None,
    dtype: str = "auto",
    gguf: str | None = None,
    card: dict | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> ExportResult:
    """Write base `model` (+ merged LoRA `adapter`) into the new folder `out` as `dtype` safetensors (+ GGUF).

    `model` may be None when the adapter's config names its base. `dtype` "auto" keeps the base's stored
    dtype; `gguf` is None, "f32", "f16" or "q8_0"; `card` adds front-matter fields (license, language …).
    """
    out, adapter = Path(out), Path(adapter) if adapter is not None else None
    base = base_model_name(model, adapter)
    base_dir = resolve(base)
    check_destination(out, overwrite, [base_dir, *([adapter] if adapter else [])])
    if gguf is not None:
        if gguf not in GGUF_TYPES:
            raise ExportError(f"unknown GGUF type {gguf!r}: use one of {', '.join(GGUF_TYPES)}")
        check_gguf_support(read_config(base_dir))
    target_dtype = export_dtype(dtype, base_dir)

    def report(step: int) -> None:
        if progress is not None:
            progress(_STEPS[step], step, len(_STEPS) - 1)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        report(0)
        model, tokenizer = merged_model(base, adapter)
        report(1)
        model.to(target_dtype).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if gguf is not None:
            report(2)
            write_gguf(staging, staging / GGUF_NAME, gguf, name=out.name)
        dtype_name = str(target_dtype).removeprefix("torch.")
        files = write_card(staging, title=out.name, base=base, adapter=adapter, dtype=dtype_name, front_matter=card)
        replace_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report(3)
    return ExportResult(out=out, base_model=base, adapter=adapter, dtype=dtype_name, files=files)


def base_model_name(model: str | None, adapter: Path | None) -> str:
    """The base to load: `model` when given, else the one the adapter was trained on (its adapter_config.json)."""
    if adapter is not None:
        if not adapter.is_dir():
            raise ModelNotFoundError(f"adapter directory {adapter} does not exist")
        if not (adapter / "adapter_config.json").is_file():
            raise ModelNotFoundError(f"{adapter} is not a LoRA adapter directory (no adapter_config.json)")
    if model is not None:
        return model
    if adapter is None:
        raise ExportError("nothing to export: name a base model (--model), an adapter (--adapter), or both")
    base = adapter_base(adapter)
    if base is None:
        raise ExportError(f"{adapter} holds a whole model, not only an adapter: pass it as --model instead")
    return base


def check_destination(out: Path, overwrite: bool, sources: list[Path]) -> None:
    """Refuse an output that is a file, a source of this export, or a non-empty folder (unless `overwrite`)."""
    if out.is_file():
        raise ExportError(f"{out} is a file: --out needs a folder")
    if any(out.resolve() == source.resolve() for source in sources):
        raise ExportError(f"{out} is what is being exported: write into a new folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} is not empty: choose a new folder, or pass --overwrite to replace it")


def export_dtype(dtype: str, base_dir: Path) -> torch.dtype:
    """The dtype to save in: `dtype` itself, or for "auto" the base's stored dtype (float32 when unrecorded)."""
    if dtype != "auto":
        return pick_dtype(dtype, torch.device("cpu"))
    config = read_config(base_dir)
    stored = config.get("dtype") or config.get("torch_dtype") or "float32"
    return pick_dtype(stored if stored != "auto" else "float32", torch.device("cpu"))


def merged_model(base: str, adapter: Path | None) -> tuple[Any, Any]:
    """The base with the adapter folded into its weights, and the tokenizer to ship with it (the adapter's own when
    its training run saved one: the chat template and stop tokens it learnt, through `load`).

    Loaded and merged in float32 whatever the export dtype, so the sum W + BA is rounded once, at saving.
    """
    try:
        model, tokenizer = load(base, dtype="float32", device="cpu", adapter=adapter)
    except (RuntimeError, ValueError) as error:
        if adapter is None:
            raise
        detail = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), str(error))
        raise ExportError(
            f"adapter {adapter} does not fit base model {base} ({detail}): pass the base it was trained on with --model"
        ) from error
    if adapter is None:
        return model, tokenizer
    return model.merge_and_unload(), tokenizer


def write_card(
    folder: Path, *, title: str, base: str, adapter: Path | None, dtype: str, front_matter: dict | None
) -> dict[str, int]:
    """Write README.md describing the files already in `folder` (and the adapter's training run); return all sizes."""
    files = {path.name: path.stat().st_size for path in sorted(folder.iterdir())}
    training = read_training_record(adapter) if adapter is not None else None
    text = render_model_card(
        title=title, base_model=base, adapter=adapter, dtype=dtype, files=files, training=training,
        front_matter=front_matter,
    )
    (folder / CARD_NAME).write_text(text)
    return {**files, CARD_NAME: (folder / CARD_NAME).stat().st_size}
