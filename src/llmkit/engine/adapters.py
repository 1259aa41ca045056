"""What a LoRA adapter may be called: requests name it as their `model`, so its name must read as a model id.

Checked once, here, by every backend's `load_adapter` (our engine's and vLLM's), so the server's
`POST /v1/load_adapter` and `llmkit serve --adapter NAME=PATH` refuse the same names: `rag:{kb}` names belong
to knowledge bases, and a name must never read as a path on the server.
"""

from __future__ import annotations

import re

from llmkit.errors import InvalidRequestError

_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_ADAPTER_NAME = re.compile(rf"{_SEGMENT}(/{_SEGMENT})?")


def check_adapter_name(name: str) -> str:
    """`name` if it is a model id like `alpha`, `my-lora_v2.1` or `org/name`; else an `InvalidRequestError`."""
    if not _ADAPTER_NAME.fullmatch(name):
        raise InvalidRequestError(
            f"bad adapter name {name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit, "
            "optionally as org/name (no ':', spaces or path segments like '..')",
            param="lora_name",
        )
    return name
