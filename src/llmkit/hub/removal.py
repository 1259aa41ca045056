"""Remove a model from the caches: a Hugging Face cache repository or a converted GGUF folder, never anything else."""

from __future__ import annotations

import shutil
from pathlib import Path

from huggingface_hub import scan_cache_dir

from llmkit.errors import InvalidRequestError
from llmkit.hub.gguf import read_manifest
from llmkit.hub.listing import CONVERTED, EMBEDDED, HUGGINGFACE, ModelInfo
from llmkit.hub.paths import converted_dir, hub_cache_dir


def check_removable(info: ModelInfo) -> None:
    """Raise InvalidRequestError, saying why, unless `info` is a download or a conversion llmkit may delete."""
    if info.kind == EMBEDDED:
        raise InvalidRequestError(
            f"{info.name} is an embedded model shipped inside a Python package, not a download: it cannot be removed "
            "(commands fall back to it); `llmkit models rm` removes Hub downloads and converted GGUF files"
        )
    if info.kind not in (HUGGINGFACE, CONVERTED):
        raise InvalidRequestError(
            f"{info.name} is not in llmkit's caches ({info.source}): delete it yourself if you mean to"
        )


def remove_model(info: ModelInfo) -> list[Path]:
    """Delete a Hub download (every cached revision, and the conversions made from it) or a converted folder.

    Returns the folders removed.
    """
    check_removable(info)
    if info.kind == CONVERTED:
        shutil.rmtree(info.path)
        return [info.path]
    cache = scan_cache_dir(hub_cache_dir())
    repo = next(r for r in cache.repos if r.repo_type == "model" and r.repo_id == info.name)
    # A GGUF from this repository was converted for transformers: that copy goes with it.
    conversions = [
        folder for folder in sorted(converted_dir().glob("[!.]*"))
        if Path((read_manifest(folder) or {}).get("source", "/")).is_relative_to(repo.repo_path.resolve())
    ]
    cache.delete_revisions(*(revision.commit_hash for revision in repo.revisions)).execute()
    for folder in conversions:
        shutil.rmtree(folder)
    return [repo.repo_path, *conversions]
