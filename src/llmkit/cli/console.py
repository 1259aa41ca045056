"""Shared terminal output for the CLI: one rich console, and user errors as one red line."""

from __future__ import annotations

import sys

from rich.console import Console

from llmkit.errors import LLMKitError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

USER_ERROR_EXIT_CODE = 2


def exit_with_error(error: LLMKitError) -> None:
    """Print a user error as one red line and exit with code 2 (no traceback)."""
    err_console.print(f"[bold red]error:[/] {error}", markup=True, soft_wrap=True)
    sys.exit(USER_ERROR_EXIT_CODE)
