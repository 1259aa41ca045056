from pathlib import Path

from llmkit.hub import home


def test_home_follows_llmkit_home(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path))
    assert home() == tmp_path


def test_home_defaults_to_user_cache(monkeypatch):
    monkeypatch.delenv("LLMKIT_HOME")
    assert home() == Path.home() / ".cache" / "llmkit"
