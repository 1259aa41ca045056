"""The local `llmkit serve` that `llmkit data generate` talks to when its spec names no endpoint.

A server already answering at `llmkit serve`'s default address (http://127.0.0.1:8000) is used as it
is; otherwise `llmkit serve` (default model) starts on a free port for this run and stops after it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

import httpx

from llmkit.errors import LLMKitError

DEFAULT_URL = "http://127.0.0.1:8000"
# A cold cache converts the default model's GGUF before serving (~30 s on an idle machine, more on a busy one).
START_TIMEOUT_S = 600.0
# This interpreter's llmkit, run as the console script does, whether or not its bin/ folder is on PATH.
SERVE_COMMAND = [sys.executable, "-c", "from llmkit.cli.main import main; main()", "serve"]


class ServerStartError(LLMKitError):
    """The local `llmkit serve` did not come up."""

    status_code = 503


@contextmanager
def local_server(on_status: Callable[[str], None] = lambda message: None) -> Iterator[str]:
    """The base URL (`…/v1`) of a local llmkit server that runs for as long as the block."""
    if is_healthy(DEFAULT_URL):
        on_status(f"using the llmkit server at {DEFAULT_URL}")
        yield f"{DEFAULT_URL}/v1"
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    on_status(f"no server at {DEFAULT_URL}: starting llmkit serve (default model) at {url}")
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        process = subprocess.Popen(
            [*SERVE_COMMAND, "--port", str(port)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        try:
            _wait_until_healthy(url, process, log)
            yield f"{url}/v1"
        finally:
            _stop(process)


def is_healthy(url: str) -> bool:
    """True when an llmkit server answers `GET /health` at `url` (its root, without /v1)."""
    try:
        response = httpx.get(f"{url}/health", timeout=2.0)
        return response.status_code == 200 and response.json().get("status") == "ok"
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def _wait_until_healthy(url: str, process: subprocess.Popen, log: IO[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not is_healthy(url):
        if process.poll() is not None:
            raise ServerStartError(f"llmkit serve exited with code {process.returncode}: {_last_line(log)}")
        if time.monotonic() > deadline:
            raise ServerStartError(
                f"llmkit serve did not answer at {url} within {START_TIMEOUT_S:.0f} s: {_last_line(log)}"
            )
        time.sleep(0.25)


def _last_line(log: IO[str]) -> str:
    """The server's last words (its error, usually), or a pointer to where to look when it said nothing."""
    log.seek(0)
    lines = [line.strip() for line in log.read().splitlines() if line.strip()]
    return lines[-1] if lines else "no output (try `llmkit serve` yourself)"


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
