"""`--help` of every command: each option's default and every bracketed note in its help text are shown (rich
would read `[default: …]` as markup and drop it), so users see what they get without trying."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from llmkit.cli.main import app

WIDE = {"TERMINAL_WIDTH": "400"}  # one option per line, so a default is never wrapped away from its option


def commands(command=typer.main.get_command(app), path=()):
    """Every leaf command with its path (`("data", "validate")`)."""
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from commands(sub, (*path, name))
    else:
        yield path, command


COMMANDS = dict(commands())


def rendered_help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def option_line(help_text: str, flag: str) -> str:
    """The text from `flag` (or its list of aliases, `--a,--b`) to the next option."""
    after = re.split(rf"{re.escape(flag)}[ ,]", help_text, maxsplit=1)[1]
    return re.split(r" │ --?[a-z]", after, maxsplit=1)[0]


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_default_and_bracketed_note_shows(path) -> None:
    shown = rendered_help(path)
    for option in COMMANDS[path].params:
        if option.param_type_name != "option" or option.hidden:
            continue
        line = option_line(shown, option.opts[0])
        for note in re.findall(r"\[[^\]]*\]", option.help or ""):
            assert " ".join(note.split()) in line, f"{option.opts[0]}: {note} lost from --help"
        has_default = option.default not in (None, False, (), []) and not callable(option.default)
        if has_default and option.show_default is not False:
            assert "[default:" in line, f"{option.opts[0]} (default {option.default!r}) shows no default"


def test_train_help_config_lists_every_key_the_error_message_points_to() -> None:
    from llmkit.train.config import TrainConfig

    result = CliRunner().invoke(app, ["train", "--help-config"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    missing = [key for key in TrainConfig.model_fields if key not in result.output]
    assert not missing, f"--help-config leaves out {missing}"
    assert "sft | pt | rm | dpo" in result.output


def test_train_help_names_every_stage() -> None:
    shown = rendered_help(("train",))
    assert all(stage in shown for stage in ("sft", "pt", "rm", "dpo", "--help-config"))
