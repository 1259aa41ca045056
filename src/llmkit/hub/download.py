"""Fetch model repositories from the Hugging Face Hub (or a mirror) and from ModelScope."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from llmkit.errors import LLMKitError, ModelNotFoundError, OfflineError
from llmkit.hub.paths import hub_cache_dir

_OFFLINE_HELP = (
    "set HF_ENDPOINT to a reachable mirror (e.g. HF_ENDPOINT=https://hf-mirror.com), unset HF_HUB_OFFLINE, "
    "or pass a local directory or .gguf file instead"
)


def download_hf(
    repo_id: str,
    *,
    revision: str | None = None,
    endpoint: str | None = None,
    local_dir: Path | None = None,
) -> Path:
    """Download (or find in the cache) a Hub repository; interrupted downloads resume where they stopped."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # huggingface_hub reads HF_ENDPOINT once at import; read it here so a later change is honoured.
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    try:
        path = snapshot_download(
            repo_id,
            revision=revision,
            endpoint=endpoint,
            cache_dir=hub_cache_dir(),
            local_dir=local_dir,
        )
    except RevisionNotFoundError as error:
        raise ModelNotFoundError(f"{repo_id} has no revision {revision!r}") from error
    except GatedRepoError as error:
        raise ModelNotFoundError(
            f"{repo_id} is gated: accept its licence on the Hub and log in (`hf auth login`)"
        ) from error
    except RepositoryNotFoundError as error:
        raise ModelNotFoundError(
            f"no model {repo_id!r} on {endpoint or 'the Hugging Face Hub'} (check the id, or log in for a private repo)"
        ) from error
    except LocalEntryNotFoundError as error:  # offline mode, no network, or a mirror that is down
        raise OfflineError(f"cannot download {repo_id}: the hub is not reachable and it is not cached; {_OFFLINE_HELP}") from error
    except OSError as error:  # connection failures that surface as plain network errors
        raise OfflineError(f"cannot download {repo_id} ({error}); {_OFFLINE_HELP}") from error
    return Path(path)


def download_modelscope(model_id: str, *, revision: str | None = None, local_dir: Path | None = None) -> Path:
    """Download a ModelScope repository with the optional `modelscope` package."""
    if importlib.util.find_spec("modelscope") is None:
        raise LLMKitError(f"modelscope:{model_id} needs the ModelScope client: pip install modelscope")
    from modelscope import snapshot_download

    kwargs = {"revision": revision} if revision else {}
    if local_dir is not None:
        kwargs["local_dir"] = str(local_dir)
    else:
        kwargs["cache_dir"] = str(hub_cache_dir() / "modelscope")
    try:
        return Path(snapshot_download(model_id, **kwargs))
    except Exception as error:  # modelscope raises generic exceptions for both missing repos and network
        raise ModelNotFoundError(f"could not download modelscope:{model_id}: {error}") from error
