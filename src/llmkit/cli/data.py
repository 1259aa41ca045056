"""`llmkit data`: look at training data the way `llmkit train` will see it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from llmkit.cli.console import console, err_console

app = typer.Typer(help="Inspect training data.", no_args_is_help=True)


@app.command("preview")
def preview(
    config: Path = typer.Argument(..., help="The YAML training config whose datasets to show."),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value settings that override the file."),
    count: int = typer.Option(3, "--count", "-n", min=1, help="How many examples to print."),
) -> None:
    """Print the first examples rendered with the chat template; the «dimmed» parts carry no loss."""
    from llmkit.hub import resolve
    from llmkit.models.loading import adapter_base, load_tokenizer
    from llmkit.train.config import load_config
    from llmkit.train.data_pipeline import encode_records
    from llmkit.train.datasets import load_datasets
    from llmkit.train.encoding import MASK_CLOSE, MASK_OPEN, preview as render

    settings = load_config(config, overrides or [])
    model = adapter_base(settings.model_name_or_path) or settings.model_name_or_path
    tokenizer = load_tokenizer(resolve(model), settings.template)
    loaded = load_datasets(settings.dataset, settings.dataset_dir, settings.stage, count, seed=None)
    examples = encode_records(loaded.records[:count], tokenizer, settings)
    for i, example in enumerate(examples, start=1):
        supervised = sum(label != -100 for label in example.labels)
        console.rule(f"example {i} · {len(example.input_ids)} tokens · {supervised} trained")
        text = escape(render(example, tokenizer))
        console.print(text.replace(MASK_OPEN, "[dim]").replace(MASK_CLOSE, "[/dim]"), highlight=False)
    for skipped in loaded.skipped:
        err_console.print(f"[yellow]skipped[/] {escape(str(skipped))}")
