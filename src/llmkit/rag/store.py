"""What a knowledge base's store is: the records both stores keep and the interface they share (`rag/stores.py`
opens one by name).

A store keeps documents (path, title, content hash, date), their chunks (text, page, heading, vector) and
the knowledge base's settings (embedding model, dimension, chunk sizes). Two stores implement it:
`SQLiteStore` (one file per knowledge base, FTS5 + a usearch HNSW index beside it) and `PostgresStore`
(one schema per knowledge base, pgvector + a GIN full-text index) with the same tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from llmkit.errors import LLMKitError
from llmkit.hub.paths import home
from llmkit.rag.chunking import Chunk
from llmkit.rag.documents import Document

_KB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class KnowledgeBaseError(LLMKitError):
    """A knowledge base that cannot be opened as asked: a bad name, a missing one, or a store that refuses."""


class KnowledgeBaseNotFound(KnowledgeBaseError):
    """No knowledge base of that name in the store."""

    status_code = 404


@dataclass(frozen=True)
class Filters:
    """Metadata conditions a chunk's document must meet: a path matching any glob, a date in a range."""

    sources: tuple[str, ...] = ()  # globs: `*.pdf`, `handbook/**`, or absolute paths
    after: str | None = None  # ISO date, inclusive
    before: str | None = None  # ISO date, inclusive

    def __bool__(self) -> bool:
        return bool(self.sources or self.after or self.before)


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as search returns it: its text and where it comes from."""

    id: int
    text: str
    path: str
    title: str
    ordinal: int
    page: int | None
    heading: str | None
    modified: str


class Store(Protocol):
    """The storage a `KnowledgeBase` runs on. Scores are higher-is-better; vectors are unit float32."""

    location: str

    def settings(self) -> dict[str, str]:
        """The knowledge base's recorded settings (empty for a new one)."""
        ...

    def save_settings(self, values: dict[str, str]) -> None:
        """Record settings (embedding model, dimension, chunk sizes) when the knowledge base is created."""
        ...

    def document_hashes(self) -> dict[str, str]:
        """Every indexed document's path and content hash."""
        ...

    def replace_document(self, document: Document, chunks: list[Chunk], vectors: np.ndarray) -> None:
        """Store a document and its chunks in one transaction, replacing any earlier version of it."""
        ...

    def delete_documents(self, paths: list[str]) -> None:
        """Remove documents and their chunks."""
        ...

    def flush(self) -> None:
        """Make every change durable, vector index included (called after each indexing batch)."""
        ...

    def count_chunks(self) -> int:
        """How many chunks the knowledge base holds."""
        ...

    def vector_search(self, query: np.ndarray, k: int, filters: Filters) -> list[tuple[int, float]]:
        """The `k` chunk ids nearest to `query` by cosine similarity, with their similarity, best first."""
        ...

    def keyword_search(self, terms: list[str], k: int, filters: Filters) -> list[tuple[int, float]]:
        """The `k` best chunk ids for any of `terms` by full-text rank, with their score, best first."""
        ...

    def chunks(self, ids: list[int]) -> dict[int, StoredChunk]:
        """The chunks of these ids that still exist."""
        ...

    def vectors(self, ids: list[int]) -> np.ndarray:
        """The stored vectors of these ids, in order, as a [len(ids), dimension] array."""
        ...

    def close(self) -> None:
        """Release the connection (and the in-memory vector index)."""
        ...

    def destroy(self) -> None:
        """Delete the knowledge base and everything in it."""
        ...


def is_kb_name(name: str) -> bool:
    """Whether `name` can name a file and a database schema: letters, digits, '-' and '_', up to 63 characters."""
    return bool(_KB_NAME.fullmatch(name))


def check_kb_name(name: str) -> str:
    """`name` if it can name a knowledge base (see `is_kb_name`)."""
    if not is_kb_name(name):
        raise KnowledgeBaseError(
            f"bad knowledge base name {name!r}: use letters, digits, '-' and '_' "
            "(up to 63, starting with a letter or digit)"
        )
    return name


def not_found(kb: str, available: list[str], store_option: str = "") -> KnowledgeBaseNotFound:
    """The error for a missing knowledge base: it names the ones the store has, never where the store lives (a
    server shows it to its clients). `store_option` completes the `llmkit rag index` command that builds it."""
    names = ", ".join(sorted(available)) or "none yet"
    return KnowledgeBaseNotFound(
        f"no knowledge base {kb!r} (knowledge bases: {names}): build it with "
        f"`llmkit rag index FILES --kb {kb}{store_option}`"
    )


def default_store_dir() -> Path:
    """Where knowledge bases live unless `--store` says otherwise: `$LLMKIT_HOME/rag`."""
    return home() / "rag"


def filter_sql(filters: Filters, regex_operator: str, placeholder: str) -> tuple[str, list[str]]:
    """A SQL condition on the documents table `d` for `filters`, with its parameters ("1 = 1" when there are
    none); the dialect gives its regular-expression operator and parameter placeholder."""
    clauses, parameters = [], []
    if filters.sources:
        clauses.append("(" + " OR ".join(f"d.path {regex_operator} {placeholder}" for _ in filters.sources) + ")")
        parameters += [glob_regex(pattern) for pattern in filters.sources]
    if filters.after:
        clauses.append(f"d.modified >= {placeholder}")
        parameters.append(filters.after)
    if filters.before:
        clauses.append(f"d.modified <= {placeholder}")
        parameters.append(filters.before)
    return (" AND ".join(clauses) or "1 = 1"), parameters


def glob_regex(pattern: str) -> str:
    """A regular expression (Python and PostgreSQL alike) for a path glob: `*` within a folder, `**` across
    folders; a relative pattern matches from any folder down (`*.pdf`, `handbook/**`)."""
    body = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            body.append(".*")
            i += 2
            continue
        body.append({"*": "[^/]*", "?": "[^/]"}.get(char) or re.escape(char))
        i += 1
    anchor = "^" if pattern.startswith("/") else "(^|/)"
    return anchor + "".join(body) + "$"
