"""`llmkit data`: build training sets with an LLM (generate, validate, calibrate, convert, merge, dedupe, split,
stats) and look at them the way `llmkit train` will see them (preview)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from llmkit.cli import data_generate, data_tools, data_validate
from llmkit.cli.console import console, err_console

app = typer.Typer(help="Build and inspect training data.", no_args_is_help=True)


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
    from llmkit.train.encoding import MASK_CLOSE, MASK_OPEN
    from llmkit.train.encoding import preview as render

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


app.command("generate")(data_generate.generate)
app.command("validate")(data_validate.validate)
app.command("calibrate")(data_validate.calibrate)
app.command("convert")(data_tools.convert)
app.command("merge")(data_tools.merge)
app.command("dedupe")(data_tools.dedupe)
app.command("split")(data_tools.split)
app.command("stats")(data_tools.stats)
