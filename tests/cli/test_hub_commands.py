import click
import typer
from click.testing import CliRunner

from llmkit.cli import hub
from llmkit.cli.console import exit_with_error
from llmkit.errors import LLMKitError

runner = CliRunner()


def make_app() -> typer.Typer:
    """Just the hub verbs, registered as llmkit.cli.main does (its chat/generate modules are not ours)."""
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("download")(hub.download)
    app.command("models")(hub.models)
    app.command("estimate")(hub.estimate)
    return app


def invoke(*args: str):
    """Run the verbs the way `llmkit.cli.main:main` does: a user error becomes one red line and exit 2."""
    app = make_app()

    def run() -> None:
        try:
            app(list(args), prog_name="llmkit")
        except LLMKitError as error:
            exit_with_error(error)

    return runner.invoke(click.Command("llmkit", callback=run), [])


def test_models_table_lists_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    result = invoke("models")
    assert result.exit_code == 0, result.output
    assert "default" in result.output and "LlamaForCausalLM" in result.output


def test_estimate_7b_fp16():
    result = invoke("estimate", "7b", "--dtype", "fp16")
    assert result.exit_code == 0, result.output
    assert "14.0 GB" in result.output
    assert "LLaMA" in result.output


def test_bad_dtype_is_one_red_line_and_exit_2():
    result = invoke("estimate", "7b", "--dtype", "fp8")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "bf16" in lines[0]


def test_download_known_name_prints_its_path():
    result = invoke("download", "default")
    assert result.exit_code == 0, result.output
    assert "smollm2-135m-instruct" in result.output
