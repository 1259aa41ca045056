"""Build an `LLM` for a CLI command, with conversion progress on stderr and library chatter silenced."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmkit.cli.console import err_console
from llmkit.cli.hub import conversion_progress

if TYPE_CHECKING:
    from llmkit.api import LLM


def build_llm(options: dict[str, Any], max_batch_size: int = 8) -> LLM:
    """Load the model named by the `MODEL_OPTIONS` values and start its engine (`max_batch_size` rows)."""
    from llmkit.api import LLM

    quiet_transformers()
    with err_console.status(f"loading {options['model']}…"), conversion_progress() as progress:
        return LLM.build(
            options["model"],
            max_seq_len=options["max_seq_len"],
            max_batch_size=max_batch_size,
            dtype=options["dtype"],
            device=options["device"],
            adapter=options.get("adapter"),
            chat_template=options["chat_template"],
            progress=progress,
            backend=options["backend"],
            quantize=options.get("quantize"),
            compile=options.get("compile", False),
            generation_config=options.get("generation_config", "auto"),
        )


def quiet_transformers() -> None:
    """Silence transformers' weight-loading bars and warnings (the CLI shows its own progress), but not downloads.

    transformers' switch for its bars also turns off huggingface_hub's, and a model download then runs for minutes
    without a sign: those are turned back on, unless they were off already (`HF_HUB_DISABLE_PROGRESS_BARS=1`).
    """
    # Imported here: it loads torch, which commands that need no model (data split, --help) do without.
    import huggingface_hub.utils
    import transformers

    download_bars = not huggingface_hub.utils.are_progress_bars_disabled()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    if download_bars:
        huggingface_hub.utils.enable_progress_bars()
