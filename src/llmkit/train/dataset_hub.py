"""Registry entries read with the `datasets` library: LLaMA-Factory's `hf_hub_url`, `ms_hub_url` and `script_url`.

A Hugging Face dataset comes from the local Hugging Face cache (what `llmkit download ID --repo-type dataset` or
`hf download` left there), never from the network in the middle of a run; `subset` is the dataset's config name,
`folder` its data_dir and `split` the split read (default train). `ms_hub_url` goes through the optional
`modelscope` client. `om_hub_url` and `cloud_file_name` are refused by name when an entry would use them.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmkit.hub.paths import hub_cache_dir
from llmkit.train.readers import DatasetError, Row, dataset_rows

Source = Literal["hf_hub", "ms_hub", "om_hub", "script", "cloud_file"]  # LLaMA-Factory's `load_from` values


@dataclass(frozen=True)
class HubDataset:
    """A dataset the `datasets` library reads, and which part of it (LLaMA-Factory's subset / split / folder)."""

    source: Source
    location: str  # a repository id; a folder for script; an s3:// or gs:// path for cloud_file
    subset: str | None = None
    split: str = "train"
    folder: str | None = None


def hub_source(spec: Mapping[str, Any], base: Path) -> HubDataset | None:
    """The hub side of a registry entry, chosen as LLaMA-Factory chooses it; None for a `file_name` entry.

    `ms_hub_url` wins when USE_MODELSCOPE_HUB is set or there is no `hf_hub_url` (`om_hub_url` likewise with
    USE_OPENMIND_HUB); a `script_url` folder is relative to the registry's folder `base`.
    """
    hf, ms, om = spec.get("hf_hub_url"), spec.get("ms_hub_url"), spec.get("om_hub_url")
    if ms and (_flag("USE_MODELSCOPE_HUB") or not hf):
        source, location = "ms_hub", ms
    elif om and (_flag("USE_OPENMIND_HUB") or not hf):
        source, location = "om_hub", om
    elif hf:
        source, location = "hf_hub", hf
    elif spec.get("script_url"):
        source, location = "script", str(base / spec["script_url"])
    elif spec.get("cloud_file_name"):
        source, location = "cloud_file", spec["cloud_file_name"]
    else:
        return None
    return HubDataset(source, str(location), spec.get("subset"), spec.get("split") or "train", spec.get("folder"))


def online_source(repo_id: str) -> HubDataset:
    """A dataset named by its repository id (LLaMA-Factory's `dataset_dir: ONLINE`), on the hub its flags pick."""
    source = "ms_hub" if _flag("USE_MODELSCOPE_HUB") else "om_hub" if _flag("USE_OPENMIND_HUB") else "hf_hub"
    return HubDataset(source, repo_id)


def hub_rows(name: str, dataset: HubDataset) -> Iterator[Row]:
    """Every record of the dataset's split; a `DatasetError` naming the entry `name` when it cannot be read."""
    if dataset.source == "om_hub":
        raise DatasetError(
            f"dataset {name!r}: om_hub_url {dataset.location} is on the Modelers (OpenMind) hub, which llmkit does "
            "not read; give the entry an hf_hub_url or a file_name"
        )
    if dataset.source == "cloud_file":
        raise DatasetError(
            f"dataset {name!r}: cloud_file_name {dataset.location} is in S3/GCS storage, which llmkit does not read; "
            "copy the file into dataset_dir and name it with file_name"
        )
    if dataset.source == "ms_hub":
        return dataset_rows(Path(dataset.location), _modelscope(name, dataset))
    if dataset.source == "hf_hub":
        folder = cached_snapshot(name, dataset.location, dataset.folder)
    else:  # script: a local dataset folder
        folder = Path(dataset.location)
        if not folder.is_dir():
            raise DatasetError(f"dataset {name!r}: script_url {folder} is not a folder")
    return dataset_rows(folder, _load_folder(name, folder, dataset))


def cached_snapshot(name: str, repo_id: str, folder: str | None = None) -> Path:
    """The cached snapshot of the Hugging Face dataset `repo_id`; a `DatasetError` saying how to fetch it if absent."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        path = snapshot_download(repo_id, repo_type="dataset", cache_dir=hub_cache_dir(), local_files_only=True)
    except HFValidationError as error:
        raise DatasetError(f"dataset {name!r}: {repo_id!r} is not a Hugging Face repository id ({error})") from None
    except LocalEntryNotFoundError:
        include = f" --include '{folder}/*'" if folder else ""
        raise DatasetError(
            f"dataset {name!r} is the Hugging Face dataset {repo_id}, which is not in the cache {hub_cache_dir()} "
            f"(llmkit does not download datasets during a run): fetch it with "
            f"`llmkit download {repo_id} --repo-type dataset{include}` or `hf download {repo_id} --repo-type dataset"
            f"{include}`"
        ) from None
    return Path(path)


def _load_folder(name: str, folder: Path, dataset: HubDataset) -> Any:
    """One split of a dataset folder (a hub snapshot or a local one), its README's configs naming the subsets."""
    import datasets

    try:
        with _quiet():
            return datasets.load_dataset(str(folder), name=dataset.subset, data_dir=dataset.folder, split=dataset.split)
    # An unknown subset or split, no data files, a loading script, data files that do not parse.
    except (ValueError, FileNotFoundError, RuntimeError, datasets.exceptions.DatasetsError) as error:
        cause = f"{error}: {error.__cause__}" if error.__cause__ else str(error)
        raise DatasetError(f"dataset {name!r} ({dataset.location}): {cause}") from None


def _modelscope(name: str, dataset: HubDataset) -> Any:
    """One split of a ModelScope dataset, through the optional `modelscope` client, as a `datasets.Dataset`."""
    if importlib.util.find_spec("modelscope") is None:
        raise DatasetError(
            f"dataset {name!r} is the ModelScope dataset {dataset.location}: install its client (pip install "
            "modelscope), or give the entry an hf_hub_url and unset USE_MODELSCOPE_HUB"
        )
    from modelscope import MsDataset

    try:
        loaded = MsDataset.load(
            dataset.location, subset_name=dataset.subset, data_dir=dataset.folder, split=dataset.split
        )
    except Exception as error:  # modelscope raises plain exceptions for a missing dataset and a failed download alike
        raise DatasetError(f"dataset {name!r}: ModelScope could not load {dataset.location}: {error}") from error
    return loaded.to_hf_dataset() if isinstance(loaded, MsDataset) else loaded


@contextmanager
def _quiet() -> Iterator[None]:
    """`datasets` without its progress bars, which would print under llmkit's own progress display."""
    import datasets

    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def _flag(variable: str) -> bool:
    """An environment switch as LLaMA-Factory reads it (USE_MODELSCOPE_HUB=1, true or y)."""
    return os.environ.get(variable, "0").lower() in ("1", "true", "y")
