"""Open a knowledge base's store by name and location: a folder holds one SQLite file per knowledge base, a
PostgreSQL URL one schema per knowledge base (psycopg is imported only then: it is an optional dependency)."""

from __future__ import annotations

from pathlib import Path

from llmkit.rag.sqlite_store import SQLiteStore
from llmkit.rag.store import POSTGRES_SCHEMES, Store, check_kb_name, default_store_dir


def open_store(kb: str, location: str | Path | None = None, *, create: bool = False) -> Store:
    """The store of knowledge base `kb` in `location` (a folder, or a PostgreSQL URL); `create` makes a new one."""
    check_kb_name(kb)
    location = str(location) if location else str(default_store_dir())
    if location.startswith(POSTGRES_SCHEMES):
        from llmkit.rag.postgres_store import PostgresStore  # needs psycopg, the `postgres` extra

        return PostgresStore(location, kb, create=create)
    return SQLiteStore(Path(location).expanduser() / f"{kb}.sqlite", create=create)
