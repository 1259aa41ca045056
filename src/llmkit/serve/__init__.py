"""The OpenAI-compatible server: `create_app(llm, model_id=...)` gives a FastAPI app to run with uvicorn."""

from llmkit.serve.app import create_app

__all__ = ["create_app"]
