"""List the models llmkit knows: the embedded ones, converted GGUF caches, and the Hugging Face cache's models."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import scan_cache_dir
from huggingface_hub.errors import CacheNotFound

from llmkit.errors import LLMKitError, ModelNotFoundError
from llmkit.hub.architecture import architecture, config_parameters, read_config, safetensors_parameters
from llmkit.hub.gguf import cache_dir_for, is_fresh, read_manifest
from llmkit.hub.paths import converted_dir, hub_cache_dir
from llmkit.hub.registry import ALIASES, HUB_REFERENCE, KNOWN_MODELS
from llmkit.hub.selection import split_quant

# Where a model comes from, which decides what `llmkit models rm` may do with it.
EMBEDDED, CONVERTED, HUGGINGFACE, LOCAL = "embedded", "converted", "huggingface", "local"


@dataclass(frozen=True)
class ModelInfo:
    """One row of `llmkit models`: where a model comes from and what is on disk."""

    name: str
    kind: str
    source: str
    path: Path | None
    cached: bool
    size_bytes: int | None
    architecture: str | None
    num_parameters: int | None
    chat_template: bool | None = None


def list_models() -> list[ModelInfo]:
    """Known names first, then other converted GGUF files, then Hugging Face cache models; reads no weights."""
    rows = _known_rows()
    seen = {row.path for row in rows if row.path is not None}
    rows += [row for row in _converted_rows() if row.path not in seen]
    return rows + _hub_rows()


def find_model(name: str) -> ModelInfo:
    """The `llmkit models` row named `name` (a Hub id with or without its `:QUANT` tag), or a local model path."""
    wanted = split_quant(name)[0] if HUB_REFERENCE.match(name) else name
    for row in list_models():
        if row.name == wanted:
            return row
    path = Path(name).expanduser()
    if path.is_dir():
        return describe(name, LOCAL, "local folder", path, True)
    if path.is_file():
        return ModelInfo(name, LOCAL, "local file", path, True, path.stat().st_size, None, None)
    raise ModelNotFoundError(
        f"no model {name!r} on this machine: `llmkit models` lists them; `llmkit download {name}` fetches a Hub model"
    )


def describe(
    name: str, kind: str, source: str, directory: Path | None, cached: bool, size: int | None = None
) -> ModelInfo:
    """A ModelInfo for a model directory, reading its config and safetensors headers when present."""
    arch = params = template = None
    if directory is not None and directory.is_dir():
        template = has_chat_template(directory)
        if size is None:
            size = _folder_size(directory)
    if directory is not None and (directory / "config.json").is_file():
        try:
            config = read_config(directory)
            arch = architecture(config)
            params = safetensors_parameters(directory) or config_parameters(config)
        except (KeyError, ValueError, OSError):
            pass  # an unusual config still gets listed, just without these columns
    return ModelInfo(name, kind, source, directory, cached, size, arch, params, template)


def has_chat_template(directory: Path) -> bool | None:
    """Whether the tokenizer files in `directory` carry a chat template (in tokenizer_config.json or beside it);
    None without tokenizer files to tell (a GGUF keeps its template inside)."""
    if (directory / "chat_template.jinja").is_file() or (directory / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((directory / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError):
        return None


def _known_rows() -> list[ModelInfo]:
    rows = []
    for alias, target in ALIASES.items():
        row = _known_row(KNOWN_MODELS[target])
        rows.append(describe(alias, EMBEDDED, f"alias of {target}", row.path, row.cached, row.size_bytes))
    return rows + [_known_row(known) for known in KNOWN_MODELS.values()]


def _known_row(known) -> ModelInfo:
    source = f"pypi:{known.package}"
    try:
        gguf = known.locate(False)
    except LLMKitError:
        return ModelInfo(known.name, EMBEDDED, f"{source} (not installed)", None, False, None, None, None)
    if gguf is None:
        return ModelInfo(known.name, EMBEDDED, source, None, False, None, None, None)
    directory = cache_dir_for(gguf, known.name)
    if is_fresh(directory, gguf):
        return describe(known.name, EMBEDDED, source, directory, True)
    return ModelInfo(known.name, EMBEDDED, source, None, False, gguf.stat().st_size, None, None)


def _converted_rows() -> list[ModelInfo]:
    rows = []
    for directory in sorted(converted_dir().glob("[!.]*")):
        manifest = read_manifest(directory)
        if manifest is not None:
            rows.append(describe(directory.name, CONVERTED, f"gguf:{manifest.get('source')}", directory, True))
    return rows


def _hub_rows() -> list[ModelInfo]:
    """Model repositories in the Hugging Face cache, wherever they were downloaded from (transformers, `hf`)."""
    try:
        cache = scan_cache_dir(hub_cache_dir())
    except CacheNotFound:
        return []
    rows = []
    for repo in sorted(cache.repos, key=lambda repo: repo.repo_id):
        if repo.repo_type != "model":
            continue
        # The snapshot `main` points at, else the newest one (a download pinned to a revision).
        revision = repo.refs.get("main") or max(repo.revisions, key=lambda rev: rev.last_modified, default=None)
        snapshot = revision.snapshot_path if revision is not None else None
        cached = snapshot is not None
        rows.append(describe(repo.repo_id, HUGGINGFACE, "huggingface", snapshot, cached, repo.size_on_disk))
    return rows


def _folder_size(directory: Path) -> int:
    # Hub snapshots hold symlinks into blobs/: follow them to count the real bytes.
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
