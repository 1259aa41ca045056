"""Fetch repositories from the Hugging Face Hub (or a mirror) into its standard cache, and from ModelScope."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from llmkit.errors import LLMKitError, ModelNotFoundError, OfflineError
from llmkit.hub.paths import hub_cache_dir
from llmkit.hub.selection import select_files

RepoType = Literal["model", "dataset", "space"]

_OFFLINE_HELP = (
    "set HF_ENDPOINT to a reachable mirror (e.g. HF_ENDPOINT=https://hf-mirror.com), unset HF_HUB_OFFLINE, "
    "or pass a local directory or .gguf file instead"
)


def download_hf(
    repo_id: str,
    *,
    quant: str | None = None,
    filenames: Sequence[str] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    repo_type: RepoType = "model",
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    local_dir: Path | None = None,
) -> Path:
    """Download (or find in the Hugging Face cache) the files of a Hub repository that `select_files` picks.

    Interrupted downloads resume where they stopped; when the hub cannot be reached, the cached snapshot is used.
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # huggingface_hub reads HF_ENDPOINT once at import; read it here so a later change is honoured.
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    where = endpoint or "the Hugging Face Hub"
    try:
        files = _repo_files(HfApi(endpoint=endpoint, token=token), repo_id, revision, repo_type)
        selection = select_files(
            repo_id, files, filenames=filenames, include=include, exclude=exclude, quant=quant
        )
        path = snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            endpoint=endpoint,
            token=token,
            cache_dir=hub_cache_dir(),
            local_dir=local_dir,
            allow_patterns=selection.allow,
            ignore_patterns=selection.ignore,
            # The listing just failed for want of a network: look in the cache rather than retry for minutes.
            local_files_only=files is None,
        )
    except RevisionNotFoundError as error:
        raise ModelNotFoundError(f"{repo_id} has no revision {revision!r}") from error
    except GatedRepoError as error:
        raise ModelNotFoundError(
            f"{repo_id} is gated: accept its licence on the Hub and log in (`hf auth login`) or pass --token"
        ) from error
    except RepositoryNotFoundError as error:
        raise ModelNotFoundError(
            f"no {repo_type} {repo_id!r} on {where} (check the id and --repo-type, or pass --token for a private repo)"
        ) from error
    except HfHubHTTPError as error:  # any other answer that is not the files: no access (401, 403), hub trouble
        raise ModelNotFoundError(
            f"{where} answered {error.response.status_code} for {repo_id}: check the id, and pass --token if it is "
            "private"
        ) from error
    except LocalEntryNotFoundError as error:  # offline mode, no network, or a mirror that is down
        raise OfflineError(
            f"cannot download {repo_id}: the hub is not reachable and it is not in the cache {hub_cache_dir()}; "
            f"{_OFFLINE_HELP}"
        ) from error
    except OSError as error:  # connection failures that surface as plain network errors
        raise OfflineError(f"cannot download {repo_id} ({error}); {_OFFLINE_HELP}") from error
    return Path(path)


def _repo_files(api, repo_id: str, revision: str | None, repo_type: str) -> list[str] | None:
    """The repository's file names, or None when the hub cannot be reached (offline mode, no network, hub down)."""
    import httpx2  # huggingface_hub's HTTP client: its transport errors mean "no network", as they do to the hub
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        # repo_info, as snapshot_download asks it: one request, where list_repo_files retries a refused connection
        # for ~25 s.
        info = api.repo_info(repo_id, revision=revision, repo_type=repo_type)
        return [sibling.rfilename for sibling in info.siblings or []]
    except (OfflineModeIsEnabled, httpx2.TransportError):
        return None
    except HfHubHTTPError as error:
        if error.response.status_code < 500:
            raise  # the hub answered: no such repository or revision, or no access
        return None


def download_modelscope(model_id: str, *, revision: str | None = None, local_dir: Path | None = None) -> Path:
    """Download a ModelScope repository with the optional `modelscope` package."""
    if importlib.util.find_spec("modelscope") is None:
        raise LLMKitError(f"modelscope:{model_id} needs the ModelScope client: pip install modelscope")
    from modelscope import snapshot_download

    # Without --local-dir, ModelScope's own cache ($MODELSCOPE_CACHE), which its users already have filled.
    kwargs = {"revision": revision} if revision else {}
    if local_dir is not None:
        kwargs["local_dir"] = str(local_dir)
    try:
        return Path(snapshot_download(model_id, **kwargs))
    except Exception as error:  # modelscope raises generic exceptions for both missing repos and network
        raise ModelNotFoundError(f"could not download modelscope:{model_id}: {error}") from error
