"""`llmkit serve` and `llmkit toolserver` on a port they cannot have: one error line and exit 2 before any start-up
(no model loads, no database opens, nothing else is printed) instead of uvicorn's traceback or its exit 3."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import pytest

from llmkit.cli.main import main

COMMANDS = [["serve"], ["toolserver", "--db", "sqlite:///{dir}/places.db"]]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another server listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def error_line(monkeypatch, capsys, command: list[str], *args: str) -> str:
    """The one line `llmkit COMMAND ARGS` printed before exiting with 2 (run in this process)."""
    monkeypatch.setattr(sys, "argv", ["llmkit", *command, *args])
    with pytest.raises(SystemExit) as exit:
        main()
    captured = capsys.readouterr()
    assert exit.value.code == 2 and captured.out == "", captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("port", ["99999", "-1", "70000", "65536"])
def test_a_port_out_of_range_is_one_error_line(monkeypatch, capsys, tmp_path, command, port):
    command = [arg.format(dir=tmp_path) for arg in command]
    line = error_line(monkeypatch, capsys, command, "--port", port)
    assert line == f"error: --port {port}: give a TCP port from 0 to 65535"
    assert not (tmp_path / "places.db").exists()  # refused before the database opened


@pytest.mark.parametrize("command", COMMANDS)
def test_a_port_in_use_is_one_error_line(monkeypatch, capsys, tmp_path, taken_port, command):
    command = [arg.format(dir=tmp_path) for arg in command]
    line = error_line(monkeypatch, capsys, command, "--host", "127.0.0.1", "--port", str(taken_port))
    assert line.startswith(f"error: port {taken_port} on 127.0.0.1 is in use (") and "--port" in line
    assert not (tmp_path / "places.db").exists()


def test_an_address_not_of_this_machine_is_one_error_line(monkeypatch, capsys):
    line = error_line(monkeypatch, capsys, ["serve"], "--host", "192.0.2.1", "--port", "8000")  # TEST-NET-1
    assert line.startswith("error: cannot listen on 192.0.2.1:8000: ")
