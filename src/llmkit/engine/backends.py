"""The engine backends and weight quantisations `LLM.build` and the CLI accept, named in one light module (no torch)
the CLI can read at start."""

from __future__ import annotations

from typing import Literal

Backend = Literal["torch", "llamacpp"]
Quantization = Literal["int8", "int4"]
