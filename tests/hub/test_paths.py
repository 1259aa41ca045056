import os
import subprocess
import sys
from pathlib import Path

from llmkit.hub import home


def test_home_follows_llmkit_home(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path))
    assert home() == tmp_path


def test_home_defaults_to_user_cache(monkeypatch):
    monkeypatch.delenv("LLMKIT_HOME")
    assert home() == Path.home() / ".cache" / "llmkit"


def test_hub_downloads_share_the_hugging_face_cache(tmp_path):
    """HF_HOME places the cache for transformers, `hf download` and llmkit alike (read when huggingface_hub loads)."""
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    printed = subprocess.run(
        [sys.executable, "-c", "from llmkit.hub.paths import hub_cache_dir; print(hub_cache_dir())"],
        env={**env, "HF_HOME": str(tmp_path)}, capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert Path(printed) == tmp_path / "hub"
