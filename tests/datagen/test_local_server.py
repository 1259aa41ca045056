"""The local llmkit server `data generate` uses when a spec names no endpoint: reused if running, else started."""

from __future__ import annotations

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmkit.datagen import local_server as module
from llmkit.datagen.local_server import ServerStartError, is_healthy, local_server


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class Health(BaseHTTPRequestHandler):
    """Answers /health as `llmkit serve` does."""

    def do_GET(self) -> None:
        body = json.dumps({"status": "ok", "requests_in_flight": 0}).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def running_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_server_already_running_at_the_default_address_is_used(monkeypatch, running_server):
    monkeypatch.setattr(module, "DEFAULT_URL", running_server)
    monkeypatch.setattr(module, "SERVE_COMMAND", [sys.executable, "-c", "raise SystemExit('must not start')"])
    notes: list[str] = []
    with local_server(notes.append) as url:
        assert url == f"{running_server}/v1"
    assert notes == [f"using the llmkit server at {running_server}"]


def test_a_server_that_fails_to_start_is_one_error_with_its_last_words(monkeypatch):
    monkeypatch.setattr(module, "DEFAULT_URL", closed_port_url())
    fail = "import sys; print('loading…'); print('error: no model called nope', file=sys.stderr); sys.exit(2)"
    monkeypatch.setattr(module, "SERVE_COMMAND", [sys.executable, "-c", fail])
    with pytest.raises(ServerStartError, match="llmkit serve exited with code 2: error: no model called nope"):
        with local_server():
            pass


def test_health_is_false_where_nothing_listens():
    assert not is_healthy(closed_port_url())
