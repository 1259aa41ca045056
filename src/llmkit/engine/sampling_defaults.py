"""Sampling defaults and the values users give, turned into engine parameters in one place for every entry point.

As vLLM's `--generation-config auto`: a model's defaults are the values its own `generation_config.json` sets for
the keys below; keys it leaves out take `NEUTRAL` (vLLM's and OpenAI's: no temperature scaling, no truncation).
`--generation-config vllm` ignores the file, and a folder path reads another model's file. A value the user gives
always wins, and a temperature of 0 (or under 1e-5) means greedy decoding, which ignores top_p, top_k and min_p.
The CLI, the Python API, the server and pipelines (through the server) all call `resolve_sampling`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmkit.engine.params import GREEDY_BELOW
from llmkit.errors import InvalidRequestError

NEUTRAL: dict[str, float] = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
GENERATION_CONFIG = "generation_config.json"


def generation_defaults(
    model_dir: Path | None, source: str = "auto", recommended: Mapping[str, float] | None = None
) -> dict[str, float]:
    """The sampling defaults of the model in `model_dir`: `NEUTRAL`, then `recommended` (what an embedded model's card
    advises, where its GGUF carries no generation config), then what the generation config of `source` sets —
    `auto`: the model's own, `vllm`: none, or a folder holding a generation_config.json."""
    check_generation_config(source)
    defaults = {**NEUTRAL, **(recommended or {})}
    if source == "vllm":
        return dict(NEUTRAL)
    folder = model_dir if source == "auto" else Path(source)
    path = folder / GENERATION_CONFIG if folder is not None else None
    if path is not None and path.is_file():
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InvalidRequestError(f"{path} is not readable JSON: {error}") from None
        defaults.update({key: config[key] for key in NEUTRAL if isinstance(config.get(key), int | float)})
    return defaults


def check_generation_config(source: str) -> None:
    """Refuse a `--generation-config` that is neither auto, vllm nor a folder holding a generation_config.json."""
    if source not in ("auto", "vllm") and not (Path(source) / GENERATION_CONFIG).is_file():
        raise InvalidRequestError(
            f"--generation-config {source}: give auto (the model's own), vllm (neutral defaults) or a folder that "
            f"holds a {GENERATION_CONFIG}"
        )


def resolve_sampling(given: Mapping[str, Any], defaults: Mapping[str, float] = NEUTRAL) -> dict[str, Any]:
    """`SamplingParams` keywords from what the user gave (None: not given) over the model's `defaults`.

    A temperature of 0 (or under 1e-5) decodes greedily; beam search is greedy unless a temperature is given (which
    `SamplingParams` then refuses by name, as it refuses any other bad value)."""
    values = {key: value for key, value in given.items() if value is not None}
    beams = values.get("num_beams", 1) > 1
    temperature = values.pop("temperature", 0.0 if beams else defaults["temperature"])
    for key in NEUTRAL.keys() - {"temperature"}:
        values.setdefault(key, defaults[key])
    if 0 <= temperature < GREEDY_BELOW:
        return values
    return {**values, "do_sample": True, "temperature": temperature}
