"""The CLI starts without torch: `llmkit --help` or `llmkit data split` must not wait seconds for a model stack."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "llmkit.api", "llmkit.engine.engine")

# Import the CLI and build every command the way `llmkit` does on each run (typer reads all signatures then),
# then list the heavy modules that came along.
PROBE = f"""
import sys
import typer
import llmkit.cli.main
typer.main.get_command(llmkit.cli.main.app)
print(",".join(name for name in {HEAVY!r} if name in sys.modules))
"""


def test_cli_starts_without_torch_or_transformers() -> None:
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120)
    assert probe.stdout.strip() == "", f"importing llmkit.cli.main loaded: {probe.stdout.strip()}"

