"""`llmkit serve` as a user runs it: a fresh process that prints its URL and logs one line per request."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

LLMKIT = Path(sys.executable).parent / "llmkit"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_llmkit_serve_prints_url_and_logs_requests(cli_server, lora_adapters):
    url, log_path = cli_server(
        "serve", "--max-seq-len", "256", "--max-batch-size", "2", "--dtype", "float32", "--served-model-name", "smol",
        "--adapter", f"alpha={lora_adapters['alpha']}", env={"LLMKIT_API_KEY": "cli-key"},
    )
    headers = {"Authorization": "Bearer cli-key"}  # from LLMKIT_API_KEY
    assert httpx.get(f"{url}/v1/models").status_code == 401
    body = {"model": "smol", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "temperature": 0}
    answer = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60).json()
    adapted = httpx.post(f"{url}/v1/chat/completions", json={**body, "model": "alpha"}, headers=headers, timeout=60)
    assert adapted.json()["model"] == "alpha"
    time.sleep(0.2)  # the request log line follows the response
    log = log_path.read_text()
    assert f"{url}/v1" in log and "models: smol, alpha" in log
    assert f"{answer['id']} model=smol tokens_in={answer['usage']['prompt_tokens']} tokens_out=3" in log


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--backend", "vllm"], "the vLLM backend needs vLLM"),
        (["--adapter", "=nowhere"], "write NAME=PATH"),
        (["--adapter", "x=/nonexistent/adapter"], "not a LoRA adapter directory"),
    ],
)
def test_bad_serve_options_fail_with_one_line(arguments, message):
    result = subprocess.run(
        [str(LLMKIT), "serve", "--port", str(free_port()), "--dtype", "float32", *arguments],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
