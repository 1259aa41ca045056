"""The port of `llmkit serve` and `llmkit toolserver`, claimed before the slow start-up (a model, a database), so an
impossible or taken port is one error line at once instead of uvicorn's traceback or exit 3 after the start-up."""

from __future__ import annotations

import errno
import socket
import sys
from typing import TYPE_CHECKING, Literal

from llmkit.errors import LLMKitError

if TYPE_CHECKING:
    from starlette.types import ASGIApp

STARTUP_FAILURE = 3  # uvicorn's exit status when the app itself fails to start, as `uvicorn.run` exits
UvicornLogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]  # uvicorn's --log-level choices


class ListenError(LLMKitError):
    """A --host / --port a server cannot listen on: a port out of range or in use, an address not of this machine."""


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), listening once uvicorn starts; `ListenError` saying what to change."""
    if not 0 <= port <= 65535:
        raise ListenError(f"--port {port}: give a TCP port from 0 to 65535")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart need not wait out TIME_WAIT
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ListenError(f"port {port} on {host} is in use (by another server?): stop it or give another "
                              "--port") from None
        raise ListenError(f"cannot listen on {host}:{port}: {error.strerror} (check --host and --port)") from None
    return sock


def run_server(app: ASGIApp, sock: socket.socket, log_level: UvicornLogLevel = "warning") -> None:
    """Serve `app` with uvicorn on the bound `sock` until Ctrl-C, uvicorn logging at `log_level` (its access log
    at info and below); exit 3, as `uvicorn.run` does, if the app fails to start."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it stopped on
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)
