"""llmkit: download, chat with, fine-tune, export and serve open LLMs."""

__version__ = "0.1.0"
