"""Run the installed `llmkit` console script the way a user does: a fresh process, real model, pipe or terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

LLMKIT = Path(sys.executable).parent / "llmkit"
# A cold cache converts the default model's GGUF first (~30 s on an idle machine); the box is shared.
TIMEOUT_S = 300


def llmkit_env() -> dict[str, str]:
    """The test environment (tests/conftest.py's LLMKIT_HOME and offline hub), minus terminal overrides.

    Without COLUMNS, rich sees a pipe as 80 columns wide: what a user piping into a file gets.
    """
    env = dict(os.environ)
    for name in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="session")
def llmkit() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`llmkit(*args, stdin="")` runs the console script; stdout and stderr must be valid UTF-8."""

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LLMKIT), *args],
            input=stdin,
            capture_output=True,
            encoding="utf-8",
            errors="strict",
            env=llmkit_env(),
            timeout=TIMEOUT_S,
        )

    return run


@pytest.fixture(scope="session")
def llmkit_tty():
    """`llmkit_tty(*args)` starts the console script on a pseudo-terminal (a pexpect child), as in a terminal."""
    pexpect = pytest.importorskip("pexpect", reason="install the test extra: pip install -e '.[test]'")

    def spawn(*args: str):
        return pexpect.spawn(
            str(LLMKIT), list(args), env=llmkit_env(), encoding="utf-8", dimensions=(24, 200), timeout=TIMEOUT_S
        )

    return spawn
