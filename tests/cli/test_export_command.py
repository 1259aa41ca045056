"""`llmkit export`: the command's output, and user errors as one red line with exit code 2."""

from __future__ import annotations

import json

import click
import pytest
import typer
from click.testing import CliRunner

from llmkit.cli import export
from llmkit.cli.console import exit_with_error
from llmkit.errors import LLMKitError

runner = CliRunner()


def invoke(*args: str):
    """Run `llmkit export ARGS` the way `llmkit.cli.main:main` does: a user error becomes one red line and exit 2."""
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command()(export.export)

    def run() -> None:
        try:
            app(list(args), prog_name="llmkit export")
        except LLMKitError as error:
            exit_with_error(error)

    return runner.invoke(click.Command("llmkit", callback=run), [])


def error_line(result) -> str:
    """The only line a failed command printed; fails the test when there are more."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_export_is_a_registered_verb():
    from llmkit.cli.main import app

    assert "export" in [command.name for command in app.registered_commands]


@pytest.mark.slow
def test_export_bf16_with_gguf_over_an_old_folder(lora_adapters, tmp_path):
    out = tmp_path / "merged"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier export")
    adapter = str(lora_adapters["beta"])
    result = invoke("--adapter", adapter, "--out", str(out), "--dtype", "bf16", "--gguf", "q8_0", "--overwrite")
    assert result.exit_code == 0, result.output
    assert "exported" in result.output and "bfloat16" in result.output
    for name in ("model.safetensors", "model.gguf", "README.md", "tokenizer.json"):
        assert name in result.output
    assert "MB" in result.output and "total" in result.output
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert (out / "model.gguf").read_bytes()[:4] == b"GGUF"


def test_missing_adapter_directory(tmp_path):
    line = error_line(invoke("--adapter", str(tmp_path / "nope"), "--out", str(tmp_path / "out")))
    assert "does not exist" in line


def test_non_empty_out_folder(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    line = error_line(invoke("--model", "default", "--out", str(tmp_path / "out")))
    assert "not empty" in line and "--overwrite" in line
    assert (tmp_path / "out" / "keep.txt").exists()


def test_gguf_of_an_unsupported_architecture(tmp_path):
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    line = error_line(invoke("--model", str(tmp_path / "gpt2"), "--out", str(tmp_path / "o"), "--gguf", "f16"))
    assert "LlamaForCausalLM" in line and "GPT2LMHeadModel" in line


def test_nothing_to_export(tmp_path):
    line = error_line(invoke("--out", str(tmp_path / "out")))
    assert "--model" in line and "--adapter" in line
