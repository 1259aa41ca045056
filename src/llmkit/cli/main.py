"""The `llmkit` command: each verb maps to one function of one module (see litgpt's __main__)."""

from __future__ import annotations

import typer

from llmkit.cli import chat, data, export, generate, hub, rag, run, safety, serve, toolserver, train
from llmkit.cli import eval as eval_cli
from llmkit.cli.console import exit_with_error
from llmkit.errors import LLMKitError

app = typer.Typer(
    name="llmkit",
    help="Download, chat with, fine-tune, export and serve open LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("download")(hub.download)
app.add_typer(hub.models_app, name="models")
app.command("estimate")(hub.estimate)
app.command("chat")(chat.chat)
app.command("generate")(generate.generate)
app.command("serve")(serve.serve)
app.command("train")(train.train)
app.add_typer(data.app, name="data")
app.add_typer(eval_cli.app, name="eval")
app.command("export")(export.export)
app.command("run")(run.run)
app.command("toolserver")(toolserver.toolserver)
app.add_typer(rag.app, name="rag")
app.add_typer(safety.app, name="safety")


def main() -> None:
    """Console-script entry point: run the CLI, turning user errors into one red line and exit 2."""
    try:
        app()
    except LLMKitError as error:
        exit_with_error(error)
