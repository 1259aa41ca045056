"""Fixtures for pipeline tests: real HTTP servers on loopback ports."""

from __future__ import annotations

import pytest
from fake_openai import LoopbackServer
from fastapi import FastAPI


@pytest.fixture
def loopback():
    """`loopback(app)` serves an app over real HTTP for the test; every server stops after it."""
    servers: list[LoopbackServer] = []

    def start(app: FastAPI) -> LoopbackServer:
        servers.append(LoopbackServer(app))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
