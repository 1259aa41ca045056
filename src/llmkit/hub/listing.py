"""List the models llmkit knows: the embedded ones, converted GGUF caches, and hub downloads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmkit.errors import LLMKitError
from llmkit.hub.architecture import architecture, config_parameters, read_config, safetensors_parameters
from llmkit.hub.gguf import cache_dir_for, is_fresh, read_manifest
from llmkit.hub.paths import converted_dir, hub_cache_dir
from llmkit.hub.registry import ALIASES, KNOWN_MODELS


@dataclass(frozen=True)
class ModelInfo:
    """One row of `llmkit models`: where a model comes from and what is on disk."""

    name: str
    source: str
    path: Path | None
    cached: bool
    size_bytes: int | None
    architecture: str | None
    num_parameters: int | None


def list_models() -> list[ModelInfo]:
    """Known names first, then other converted GGUF files, then hub downloads; reads no weights."""
    rows = _known_rows()
    seen = {row.path for row in rows if row.path is not None}
    rows += [row for row in _converted_rows() if row.path not in seen]
    return rows + _hub_rows()


def describe(name: str, source: str, directory: Path | None, cached: bool, size: int | None = None) -> ModelInfo:
    """A ModelInfo for a model directory, reading its config and safetensors headers when present."""
    arch = params = None
    if directory is not None and (directory / "config.json").is_file():
        try:
            config = read_config(directory)
            arch = architecture(config)
            params = safetensors_parameters(directory) or config_parameters(config)
        except (KeyError, ValueError, OSError):
            pass  # an unusual config still gets listed, just without these columns
        if size is None:
            size = _folder_size(directory)
    return ModelInfo(name, source, directory, cached, size, arch, params)


def _known_rows() -> list[ModelInfo]:
    rows = []
    for alias, target in ALIASES.items():
        row = _known_row(KNOWN_MODELS[target])
        rows.append(describe(alias, f"alias of {target}", row.path, row.cached, row.size_bytes))
    return rows + [_known_row(known) for known in KNOWN_MODELS.values()]


def _known_row(known) -> ModelInfo:
    source = f"pypi:{known.package}"
    try:
        gguf = known.locate(False)
    except LLMKitError:
        return ModelInfo(known.name, f"{source} (not installed)", None, False, None, None, None)
    if gguf is None:
        return ModelInfo(known.name, source, None, False, None, None, None)
    directory = cache_dir_for(gguf, known.name)
    if is_fresh(directory, gguf):
        return describe(known.name, source, directory, True)
    return ModelInfo(known.name, source, None, False, gguf.stat().st_size, None, None)


def _converted_rows() -> list[ModelInfo]:
    rows = []
    for directory in sorted(converted_dir().glob("[!.]*")):
        manifest = read_manifest(directory)
        if manifest is not None:
            rows.append(describe(directory.name, f"gguf:{manifest.get('source')}", directory, True))
    return rows


def _hub_rows() -> list[ModelInfo]:
    rows = []
    for repo in sorted(hub_cache_dir().glob("models--*")):
        snapshot = _latest_snapshot(repo)
        repo_id = repo.name.removeprefix("models--").replace("--", "/")
        rows.append(describe(repo_id, "huggingface", snapshot, snapshot is not None))
    return rows


def _latest_snapshot(repo: Path) -> Path | None:
    ref = repo / "refs" / "main"
    if ref.is_file():
        snapshot = repo / "snapshots" / ref.read_text().strip()
        if snapshot.is_dir():
            return snapshot
    snapshots = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
    return snapshots[-1] if snapshots else None


def _folder_size(directory: Path) -> int:
    # Hub snapshots hold symlinks into blobs/: follow them to count the real bytes.
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
