"""Turn a GGUF file into a cached safetensors + tokenizer directory, once.

Loading a GGUF through transformers dequantises every tensor (~20 s for the default model); reloading
the saved safetensors takes ~0.2 s. The cache is keyed by the GGUF's resolved path and rebuilt when
the file's size or modification time no longer match the manifest written beside the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from llmkit.errors import ConversionError
from llmkit.hub.paths import converted_dir

MANIFEST_NAME = "llmkit-manifest.json"

# Called with (step description, steps done, total steps) so a CLI can draw a progress bar.
ProgressCallback = Callable[[str, int, int], None]

_STEPS = ("loading tokenizer", "dequantising weights", "saving safetensors", "done")


def cache_dir_for(gguf_path: Path, name: str | None = None) -> Path:
    """The conversion folder for a GGUF file: `converted/<name>-<short hash of its resolved path>`.

    The hash alone identifies the file, so an existing folder is reused whatever name it was made under
    (`default` and a path to the same GGUF share one conversion).
    """
    resolved = gguf_path.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:10]
    existing = sorted(converted_dir().glob(f"[!.]*-{digest}"))
    if existing:
        return existing[0]
    stem = (name or resolved.stem).lower().replace(" ", "-")
    return converted_dir() / f"{stem}-{digest}"


def source_manifest(gguf_path: Path) -> dict:
    """What identifies a GGUF file's contents cheaply: its path, size and modification time."""
    stat = gguf_path.stat()
    return {"source": str(gguf_path.resolve()), "size": stat.st_size, "mtime": stat.st_mtime}


def read_manifest(directory: Path) -> dict | None:
    """The manifest of a converted folder, or None when it has none (or an unreadable one)."""
    try:
        return json.loads((directory / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None


def is_fresh(directory: Path, gguf_path: Path) -> bool:
    """True when `directory` holds a complete conversion of `gguf_path` as it is now."""
    manifest = read_manifest(directory)
    if manifest is None or not (directory / "config.json").is_file():
        return False
    current = source_manifest(gguf_path)
    return all(manifest.get(key) == value for key, value in current.items())


def convert_gguf(gguf_path: Path, name: str | None = None, progress: ProgressCallback | None = None) -> Path:
    """Return a safetensors directory for `gguf_path`, converting it first unless a fresh cache exists."""
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise ConversionError(f"GGUF file not found: {gguf_path}")
    target = cache_dir_for(gguf_path, name)
    if is_fresh(target, gguf_path):
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename it in whole, so an interrupted run never leaves half a cache.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _write_conversion(gguf_path, staging, progress)
        replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_conversion(gguf_path: Path, out: Path, progress: ProgressCallback | None) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    def report(step: int) -> None:
        if progress is not None:
            progress(_STEPS[step], step, len(_STEPS) - 1)

    filename = gguf_path.name
    # transformers prefers a tokenizer.json / config.json lying beside the GGUF (as in an export folder) over
    # the GGUF's own metadata, and then loses its chat template: read the file from a folder of its own.
    with tempfile.TemporaryDirectory(prefix="llmkit-gguf-") as alone:
        (Path(alone) / filename).symlink_to(gguf_path.resolve())
        try:
            report(0)
            tokenizer = AutoTokenizer.from_pretrained(alone, gguf_file=filename)
            report(1)
            model = AutoModelForCausalLM.from_pretrained(
                alone,
                gguf_file=filename,
                dtype=torch.float32,
                # Always unpack to dense tensors: a model kept in GGUF blocks could not be saved as safetensors.
                quantization_config=GgufConfig(dequantize=True),
            )
        except Exception as error:  # transformers raises many kinds for unsupported or corrupt files
            raise ConversionError(f"could not load GGUF file {gguf_path}: {error}") from error

    report(2)
    _forget_gguf_origin(model)
    model.save_pretrained(out)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    manifest = {**source_manifest(gguf_path), "llmkit_version": version("llmkit")}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    report(3)


def _forget_gguf_origin(model) -> None:
    """Make a dequantised GGUF model saveable: it holds plain tensors, but still carries its GGUF quantizer.

    `save_pretrained` refuses any model whose `hf_quantizer` is not serialisable; once dequantised
    nothing of GGUF is left in the weights, so dropping the quantizer and its config entry is exact.
    """
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def replace_dir(staging: Path, target: Path) -> None:
    if target.exists():
        stale = target.with_name(f".{target.name}-stale-{os.getpid()}")
        os.replace(target, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.replace(staging, target)
