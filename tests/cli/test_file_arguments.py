"""Files users name on the command line that cannot be used: a YAML file that is not UTF-8, an output path that
is a directory. Each is one `error:` line and exit 2, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from llmkit.cli.main import main
from llmkit.jsonl import write_jsonl

NOT_UTF8 = b"\xff\xfe name: \xa0x\n"


def error_line(monkeypatch, capsys, *args: str | Path) -> str:
    """The one line `llmkit ARGS` printed on stderr before exiting with 2 (run in this process)."""
    monkeypatch.setattr(sys, "argv", ["llmkit", *map(str, args)])
    with pytest.raises(SystemExit) as exit:
        main()
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exit.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def records(tmp_path: Path) -> Path:
    """Records every command below can read."""
    write_jsonl(tmp_path / "records.jsonl", [{"prompt": "hi", "unsafe": False, "q": "where?", "a": "here"}])
    return tmp_path / "records.jsonl"


@pytest.mark.parametrize(("command", "kind"), [
    (["run", "{file}", "--input", "{records}"], "pipeline"),
    (["train", "{file}"], "config"),
    (["data", "generate", "{file}"], "spec"),
])
def test_a_yaml_file_that_is_not_utf8_is_one_error_line(monkeypatch, capsys, tmp_path, records, command, kind):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(NOT_UTF8)
    line = error_line(monkeypatch, capsys, *(arg.format(file=path, records=records) for arg in command))
    assert line == f"error: {kind} {path} must be UTF-8 text (byte 0 is not): save it as UTF-8"


@pytest.mark.parametrize("command", [
    ["run", "{dir}/pipeline.yaml", "--input", "{records}", "--output", "{out}"],
    ["run", "{dir}/pipeline.yaml", "--input", "{records}", "--trace", "{out}"],
    ["data", "generate", "{dir}/spec.yaml", "--output", "{out}"],
    ["data", "convert", "{records}", "-o", "{out}", "--map", "instruction=q", "--map", "output=a"],
    ["data", "merge", "{records}", "-o", "{out}"],
    ["data", "dedupe", "{records}", "-o", "{out}"],
    ["safety", "eval", "--data", "{records}", "--safety", "{dir}/policy.yaml", "--out", "{out}"],
])
def test_an_output_file_that_is_a_directory_is_one_error_line(monkeypatch, capsys, tmp_path, records, command):
    (tmp_path / "pipeline.yaml").write_text("model: {base_url: 'http://127.0.0.1:9/v1'}\ntasks: [{name: t}]\n")
    (tmp_path / "spec.yaml").write_text("endpoint: {base_url: 'http://127.0.0.1:9/v1'}\ncount: 1\nprompt: {template: hi}\n")
    (tmp_path / "policy.yaml").write_text("checkers:\n  - name: keywords\n")
    out = tmp_path / "out"
    out.mkdir()
    line = error_line(monkeypatch, capsys, *(arg.format(dir=tmp_path, records=records, out=out) for arg in command))
    assert line == f"error: {out} is a directory: give a file path"
    assert list(out.iterdir()) == []
