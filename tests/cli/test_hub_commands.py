import click
import pytest
import typer
from click.testing import CliRunner

from llmkit.cli import hub
from llmkit.cli.console import exit_with_error
from llmkit.errors import LLMKitError
from llmkit.hub import resolve

runner = CliRunner()


def make_app() -> typer.Typer:
    """Just the hub verbs, registered as llmkit.cli.main does (its chat/generate modules are not ours)."""
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("download")(hub.download)
    app.add_typer(hub.models_app, name="models")
    app.command("estimate")(hub.estimate)
    return app


def invoke(*args: str, input: str | None = None):
    """Run the verbs the way `llmkit.cli.main:main` does: a user error becomes one red line and exit 2."""
    app = make_app()

    def run() -> None:
        try:
            app(list(args), prog_name="llmkit")
        except LLMKitError as error:
            exit_with_error(error)

    return runner.invoke(click.Command("llmkit", callback=run), [], input=input)


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """Wide enough that rich prints paths and table cells on one line."""
    monkeypatch.setenv("COLUMNS", "400")


def red_line(result) -> str:
    """The one line a user error prints (asserting it is one line, with exit code 2)."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


@pytest.mark.parametrize("args", [("models",), ("models", "list")])
def test_models_table_lists_default(args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "default" in result.output and "LlamaForCausalLM" in result.output


def test_models_show_says_where_a_model_lives_and_what_it_is(hf_cache):
    snapshot = hf_cache.add(
        "acme/base", {"config.json": b'{"architectures": ["GPT2LMHeadModel"]}', "tokenizer_config.json": b"{}"}
    )
    result = invoke("models", "show", "default")
    assert result.exit_code == 0, result.output
    for expected in ("location", str(resolve("default")), "LlamaForCausalLM", "135M", "MB"):
        assert expected in result.output
    assert "chat template │ yes" in result.output
    result = invoke("models", "show", "acme/base")
    assert str(snapshot) in result.output and "GPT2LMHeadModel" in result.output
    assert "no (pass --chat-template FILE to chat)" in result.output
    assert "llmkit download acme/absent" in red_line(invoke("models", "show", "acme/absent"))


def test_models_rm_asks_first_and_removes_a_download(hf_cache):
    hf_cache.add("acme/base", {"config.json": b"{}"})
    repo = hf_cache.path / "models--acme--base"
    result = invoke("models", "rm", "acme/base", input="n\n")
    assert result.exit_code == 0 and "nothing removed" in result.output and repo.is_dir()
    result = invoke("models", "rm", "acme/base", input="y\n")
    assert result.exit_code == 0, result.output
    assert f"removed: {repo}" in result.output and not repo.exists()
    assert "acme/base" not in invoke("models").output


def test_models_rm_refuses_the_embedded_default():
    assert "default is an embedded model" in red_line(invoke("models", "rm", "default", "--yes"))
    assert resolve("default").is_dir()


def test_download_file_names_quant_tags_and_repo_types_from_the_cache(hf_cache):
    """Offline (as the tests run), each form of the command resolves against what is cached."""
    snapshot = hf_cache.add("acme/base", {"config.json": b"{}", "tokenizer.json": b"{}"})
    ggufs = hf_cache.add("acme/base-gguf", {"base-Q4_K_M.gguf": b"q4", "base-Q8_0.gguf": b"q8"})
    data = hf_cache.add("acme/questions", {"train.jsonl": b"{}"}, repo_type="dataset")
    for args, path in (
        (("acme/base", "config.json"), snapshot / "config.json"),
        (("acme/base", "--include", "*.json", "--exclude", "tokenizer*", "--token", "hf_x"), snapshot),
        (("acme/base-gguf:Q8_0",), ggufs / "base-Q8_0.gguf"),
        (("acme/questions", "--repo-type", "dataset"), data),
    ):
        result = invoke("download", *args)
        assert result.exit_code == 0, result.output
        assert f"→ {path}" in result.output


def test_download_refuses_what_it_cannot_do_in_one_red_line(hf_cache):
    assert "HF_HUB_OFFLINE" in red_line(invoke("download", "acme/absent"))
    assert "--include, --token: only for Hugging Face repositories" in red_line(
        invoke("download", "default", "--include", "*.json", "--token", "hf_x")
    )
    result = invoke("download", "acme/base", "--repo-type", "kernel")
    assert result.exit_code == 2 and "kernel" in result.output


def test_estimate_7b_fp16():
    result = invoke("estimate", "7b", "--dtype", "fp16")
    assert result.exit_code == 0, result.output
    assert "14.0 GB" in result.output
    assert "LLaMA" in result.output


def test_bad_dtype_is_one_red_line_and_exit_2():
    assert "bf16" in red_line(invoke("estimate", "7b", "--dtype", "fp8"))


def test_download_known_name_prints_its_path():
    result = invoke("download", "default")
    assert result.exit_code == 0, result.output
    assert "smollm2-135m-instruct" in result.output
