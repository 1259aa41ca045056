"""Which files of a Hub repository to fetch, as `hf download` and llama.cpp's `-hf` choose them.

`hf download` habits: file names, `--include` / `--exclude` globs. A GGUF repository holds one file per
quantisation (Q2_K … Q8_0, F16, often gigabytes each): only the one asked for is fetched (`org/repo:Q4_K_M`),
and without a tag the one llama.cpp and ollama default to, never all of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from llmkit.errors import ModelNotFoundError

DEFAULT_QUANT = "Q4_K_M"  # what `llama-cli -hf org/repo` and `ollama run hf.co/org/repo` pick without a tag
_WEIGHTS = (".safetensors", ".bin")
# A quantisation name as GGUF files carry it: Q4_K_M, IQ2_XXS, Q8_0, TQ1_0, F16, BF16, FP16, F32, MXFP4, standing
# between `-`, `.`, `_` or `/` (`model.Q4_K_M.gguf`, `Q4_K_M/model-00001-of-00002.gguf`).
_QUANT = re.compile(r"(?<![A-Za-z0-9])((?:I|T)?Q\d+(?:_[A-Za-z0-9]+)*|B?F16|F32|FP16|FP32|MXFP4)(?=[-./]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class FileSelection:
    """`allow_patterns` / `ignore_patterns` for `snapshot_download` (None: no filter)."""

    allow: list[str] | None
    ignore: list[str] | None


def split_quant(reference: str) -> tuple[str, str | None]:
    """`org/repo:Q4_K_M` → (`org/repo`, `Q4_K_M`); a reference without a tag → (reference, None)."""
    repo_id, _, tag = reference.partition(":")
    return repo_id, tag or None


def gguf_quant(path: str) -> str | None:
    """The quantisation a GGUF weights file carries in its name (upper case), or None (not GGUF weights)."""
    name = path.rsplit("/", 1)[-1]
    if not name.lower().endswith(".gguf") or name.lower().startswith("mmproj"):
        return None  # mmproj files are vision projectors that ride along a model, not a quantisation of it
    found = _QUANT.findall(path[: -len(".gguf")])  # the path too: some repositories keep one folder per quant
    return found[-1].upper() if found else None


def quant_files(files: Sequence[str], quant: str) -> list[str]:
    """The GGUF files of one quantisation (several when it is split into parts), matched case-insensitively."""
    return sorted(f for f in files if gguf_quant(f) == quant.upper())


def default_quant(repo_id: str, files: Sequence[str]) -> str | None:
    """The quantisation to take from a repository of GGUF files when none is named; None when it has none.

    One quantisation is taken as it is; among several, DEFAULT_QUANT; otherwise the user must choose.
    """
    quants = sorted({q for q in map(gguf_quant, files) if q})
    if len(quants) <= 1:
        return quants[0] if quants else None
    if DEFAULT_QUANT in quants:
        return DEFAULT_QUANT
    raise ModelNotFoundError(
        f"{repo_id} holds several GGUF quantisations ({', '.join(quants)}): name one, as {repo_id}:{quants[0]} "
        f"or --include '*{quants[0]}*'"
    )


def select_files(
    repo_id: str,
    files: Sequence[str] | None,
    *,
    filenames: Sequence[str] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    quant: str | None = None,
) -> FileSelection:
    """The patterns that fetch what the user asked for from `repo_id`, whose file list is `files` (None offline).

    File names (a trailing `/` names a folder) and `--include` globs add up; `--exclude` globs remove; a `quant`
    adds its GGUF files. With none of them, a GGUF repository gives one quantisation, and a repository with
    safetensors leaves its GGUF copies out (name one to get it).
    """
    allow = [f"{name.rstrip('/')}/**" if name.endswith("/") else name for name in filenames] + list(include)
    ignore = list(exclude)
    if files is not None:
        missing = [name for name in filenames if not name.endswith("/") and name not in files]
        if missing:
            raise ModelNotFoundError(f"{repo_id} has no file {', '.join(missing)}: check the name (case matters)")
    if quant is not None:
        allow += _quant_files_or_glob(repo_id, files, quant)
    elif not allow and files is not None:
        ggufs = [f for f in files if gguf_quant(f)]
        if ggufs and any(f.endswith(_WEIGHTS) for f in files):
            ignore.append("*.gguf")
        elif ggufs and not ignore:
            allow = quant_files(files, default_quant(repo_id, files))
    return FileSelection(allow or None, ignore or None)


def _quant_files_or_glob(repo_id: str, files: Sequence[str] | None, quant: str) -> list[str]:
    if files is None:  # offline: the cache holds what was fetched; the caller picks the exact file from it
        return ["*" + "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in quant) + "*.gguf"]
    chosen = quant_files(files, quant)
    if not chosen:
        quants = sorted({q for q in map(gguf_quant, files) if q})
        available = f"it has {', '.join(quants)}" if quants else "it has no GGUF files"
        raise ModelNotFoundError(f"{repo_id} has no {quant} GGUF file: {available}")
    return chosen
