"""The OpenAI-compatible server: `create_app(llm, model_id=...)` gives a FastAPI app to run with uvicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmkit.serve.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    """Load the app (and torch with it) only when `create_app` is used: the tool server shares only errors."""
    if name == "create_app":
        from llmkit.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'llmkit.serve' has no attribute {name!r}")
