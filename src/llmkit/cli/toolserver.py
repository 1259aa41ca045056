"""`llmkit toolserver`: the gazetteer tool server (places and map symbols over REST) on SQLite or PostgreSQL."""

from __future__ import annotations

from typing import Optional

import typer

from llmkit.cli.console import err_console
from llmkit.cli.listen import bind, run_server


def toolserver(
    db: str = typer.Option(
        "sqlite:///gazetteer.db", "--db", help="SQLAlchemy URL: sqlite:///path.db or postgresql://user@host/name."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0 exposes the server)."),
    port: int = typer.Option(8100, "--port", help="TCP port."),
    api_key: Optional[str] = typer.Option(
        None, "--api-key", envvar="LLMKIT_TOOLSERVER_API_KEY",
        help="Require 'Authorization: Bearer KEY' (not /health) and allow writes; without it the server is read-only.",
    ),
) -> None:
    """Serve a gazetteer of named places and map symbols over REST; a new database starts with capitals and symbols."""
    from llmkit.toolserver.gazetteer import Gazetteer

    sock = bind(host, port)  # a taken port fails before the database opens
    gazetteer = Gazetteer(db)  # before the web stack is imported: a bad --db fails at once

    from llmkit.toolserver.app import create_app

    app = create_app(gazetteer, api_key=api_key)
    health = gazetteer.health()
    err_console.print(f"gazetteer at [bold]http://{host}:{port}[/]{' (API key required)' if api_key else ''}")
    err_console.print(f"[dim]{gazetteer.url} · {health.places} places · {health.symbols} map symbols[/]")
    if api_key is None:
        err_console.print("[yellow]read-only: start with --api-key to allow writes[/]")
    run_server(app, sock)
