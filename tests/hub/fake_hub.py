"""A local stand-in for the Hugging Face Hub serving the few routes `snapshot_download` calls."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """Serve `repos` ({"org/name": {filename: bytes}}, "datasets/org/name" for a dataset) on localhost; `requests`
    logs (method, path) and `tokens` the Authorization header of each request."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.requests: list[tuple[str, str]] = []
        self.tokens: list[str | None] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @classmethod
    def from_folder(cls, repo_id: str, folder: Path) -> "FakeHub":
        return cls({repo_id: {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}})


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self._route(send_body=True)

        def do_HEAD(self) -> None:
            self._route(send_body=False)

        def _send(self, status: int, body: bytes, headers: dict[str, str], send_body: bool) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def _route(self, send_body: bool) -> None:
            path = urlsplit(self.path).path
            hub.requests.append((self.command, path))
            hub.tokens.append(self.headers.get("Authorization"))
            parts = path.strip("/").split("/")
            if parts[0] == "api" and parts[1] in ("models", "datasets", "spaces"):
                # /api/{type}s/{org}/{name}/revision/{rev} and /api/{type}s/{org}/{name}/tree/{commit}
                prefix = "" if parts[1] == "models" else f"{parts[1]}/"
                files = hub.repos.get(prefix + "/".join(parts[2:4]))
                if files is None:
                    not_found = {"X-Error-Code": "RepoNotFound", "Content-Type": "application/json"}
                    return self._send(404, b'{"error": "Repository not found"}', not_found, send_body)
                if parts[4:5] == ["tree"]:
                    body = [
                        {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                        for name, data in files.items()
                    ]
                else:
                    body = {"id": "/".join(parts[2:4]), "sha": COMMIT, "siblings": [{"rfilename": n} for n in files]}
                return self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"}, send_body)
            prefix = parts[0] + "/" if parts[0] in ("datasets", "spaces") else ""
            parts = parts[1:] if prefix else parts
            if len(parts) >= 5 and parts[2] == "resolve":
                # /[{type}s/]{org}/{name}/resolve/{revision}/{filename}
                data = hub.repos.get(prefix + "/".join(parts[:2]), {}).get("/".join(parts[4:]))
                if data is None:
                    return self._send(404, b"", {"X-Error-Code": "EntryNotFound"}, send_body)
                headers = {
                    "X-Repo-Commit": COMMIT,
                    "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                    "Content-Type": "application/octet-stream",
                }
                return self._send(200, data, headers, send_body)
            self._send(404, b"", {}, send_body)

    return Handler
