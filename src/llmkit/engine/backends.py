"""The engine backends `LLM.build` and the CLI accept, named in one light module (no torch) the CLI can read at start."""

from __future__ import annotations

from typing import Literal

Backend = Literal["torch", "llamacpp"]
