"""llmkit: download, chat with, fine-tune, export and serve open LLMs."""

from llmkit.api import LLM
from llmkit.engine.params import SamplingParams

__all__ = ["LLM", "SamplingParams"]
__version__ = "0.1.0"
