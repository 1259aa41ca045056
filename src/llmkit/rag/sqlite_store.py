"""A knowledge base in one SQLite file, with an HNSW vector index (usearch) kept beside it.

The file holds everything (documents, chunks with their vectors, an FTS5 index for BM25); the
`.usearch` file beside it is a cache of the vectors for fast nearest-neighbour search. Its recorded
signature (chunk count and id sum) tells whether it matches the database; when it does not (a crash
between the two writes, a copied database) it is rebuilt from the vectors in the database.

Why usearch: at 100k chunks SQLite's sqlite-vec extension scans every vector (61 ms per query on this
machine, over the 50 ms budget) and FAISS's HNSW cannot delete, which re-indexing a changed file needs.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from llmkit.atomic import atomic_path
from llmkit.rag.chunking import Chunk
from llmkit.rag.documents import Document
from llmkit.rag.keywords import keyword_text
from llmkit.rag.store import Filters, KnowledgeBaseError, StoredChunk, filter_sql, is_kb_name, not_found

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    modified TEXT NOT NULL,
    indexed_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so the (count, id sum) signature changes with content
    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    page INTEGER,
    heading TEXT,
    tokens INTEGER NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
-- document_id rides along so keyword search filters by document without touching the (large) chunks rows
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    body, document_id UNINDEXED, tokenize = 'porter unicode61 remove_diacritics 2'
);
"""
_CHUNK_COLUMNS = "c.id, c.text, d.path, d.title, c.ordinal, c.page, c.heading, d.modified"
STALE_SECONDS = 60.0  # twice the interval at which `KnowledgeBase.index` saves the vector index
_HNSW = dict(metric="ip", dtype="f32", connectivity=16, expansion_add=128, expansion_search=64)


class SQLiteStore:
    """The `Store` of one knowledge base file (see the module docstring)."""

    def __init__(self, path: Path, *, create: bool = False):
        if not path.exists() and not create:
            raise not_found(path.stem, knowledge_base_names(path.parent))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.location = str(path)
        self._index_path = path.with_suffix(".usearch")
        self._lock = threading.RLock()  # the server searches from worker threads
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA cache_size = -65536")  # 64 MiB of pages: searches stay off the disk
            self._db.execute("PRAGMA mmap_size = 1073741824")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise KnowledgeBaseError(f"{path} is not a knowledge base file: {error}") from error
        self._db.create_function("regexp", 2, _regexp, deterministic=True)
        self._index = None
        self._index_signature: str | None = None
        self._data_version: int | None = None  # SQLite's counter of other connections' commits
        self._stale_since: float | None = None  # when the loaded index was first seen behind the database

    def settings(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT key, value FROM settings"))

    def save_settings(self, values: dict[str, str]) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO settings VALUES (?, ?)", values.items())

    def document_hashes(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT path, sha256 FROM documents"))

    def replace_document(self, document: Document, chunks: list[Chunk], vectors: np.ndarray) -> None:
        index = self._vector_index()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            old_ids = self._delete(document.path)
            cursor = self._db.execute(
                "INSERT INTO documents (path, title, sha256, modified) VALUES (?, ?, ?, ?)",
                (document.path, document.title, document.sha256, document.modified),
            )
            document_id = cursor.lastrowid
            new_ids = []
            for chunk, vector in zip(chunks, vectors):
                cursor = self._db.execute(
                    "INSERT INTO chunks (document_id, ordinal, text, page, heading, tokens, embedding) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        document_id,
                        chunk.ordinal,
                        chunk.text,
                        chunk.page,
                        chunk.heading,
                        chunk.tokens,
                        np.asarray(vector, dtype=np.float32).tobytes(),
                    ),
                )
                new_ids.append(cursor.lastrowid)
            self._db.executemany(
                "INSERT INTO chunks_fts (rowid, body, document_id) VALUES (?, ?, ?)",
                [(i, keyword_text(f"{c.heading or ''}\n{c.text}"), document_id) for i, c in zip(new_ids, chunks)],
            )
        with self._lock:
            _remove_keys(index, old_ids)
            if new_ids:
                index.add(np.asarray(new_ids, dtype=np.uint64), np.asarray(vectors, dtype=np.float32))
            self._index_signature = _shifted(self._index_signature, old_ids, new_ids)

    def delete_documents(self, paths: list[str]) -> None:
        index = self._vector_index()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            old_ids = [i for path in paths for i in self._delete(path)]
        with self._lock:
            _remove_keys(index, old_ids)
            self._index_signature = _shifted(self._index_signature, old_ids, [])

    def flush(self) -> None:
        """Save the vector index beside the database (atomically) and record which database state it matches."""
        with self._lock:
            if self._index is None:
                return
            with atomic_path(self._index_path) as temporary:
                self._index.save(str(temporary))
            signature = self._signature()
            with self._db:
                self._db.execute("BEGIN")
                self._db.execute("INSERT OR REPLACE INTO settings VALUES ('vector_index', ?)", (signature,))
            self._index_signature = signature

    def count_chunks(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def vector_search(self, query: np.ndarray, k: int, filters: Filters) -> list[tuple[int, float]]:
        query = np.asarray(query, dtype=np.float32)
        if filters:
            # Exact search over the documents that pass: the cost follows the size of the filtered set.
            where, parameters = _where(filters)
            with self._lock:
                rows = self._db.execute(
                    f"SELECT c.id, c.embedding FROM chunks c JOIN documents d ON d.id = c.document_id WHERE {where}",
                    parameters,
                ).fetchall()
            if not rows:
                return []
            ids = np.array([row[0] for row in rows])
            similarity = (
                np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), -1) @ query
            )
            best = np.argsort(-similarity, kind="stable")[:k]
            return [(int(ids[i]), float(similarity[i])) for i in best]
        index = self._vector_index()
        if len(index) == 0:
            return []
        matches = index.search(query, min(k, len(index)))
        return [(int(key), 1.0 - float(distance)) for key, distance in zip(matches.keys, matches.distances)]

    def keyword_search(self, terms: list[str], k: int, filters: Filters) -> list[tuple[int, float]]:
        if not terms:
            return []
        match = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
        where, parameters = _where(filters)
        with self._lock:
            rows = self._db.execute(
                "SELECT f.rowid, -bm25(chunks_fts) FROM chunks_fts f JOIN documents d ON d.id = f.document_id "
                f"WHERE chunks_fts MATCH ? AND {where} ORDER BY bm25(chunks_fts) LIMIT ?",
                [match, *parameters, k],
            ).fetchall()
        return [(int(i), float(score)) for i, score in rows]

    def chunks(self, ids: list[int]) -> dict[int, StoredChunk]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id "
                f"WHERE c.id IN ({','.join('?' * len(ids))})",
                list(ids),
            ).fetchall()
        return {row[0]: StoredChunk(*row) for row in rows}

    def vectors(self, ids: list[int]) -> np.ndarray:
        with self._lock:
            blobs = dict(
                self._db.execute(
                    f"SELECT id, embedding FROM chunks WHERE id IN ({','.join('?' * len(ids))})", list(ids)
                )
            )
        return np.stack([np.frombuffer(blobs[i], dtype=np.float32) for i in ids])

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._index = None

    def destroy(self) -> None:
        """Delete the knowledge base: the database (with its WAL files) and the vector index."""
        self.close()
        database = Path(self.location)
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm"), self._index_path):
            path.unlink(missing_ok=True)

    def _delete(self, path: str) -> list[int]:
        """Delete one document's rows (inside the caller's transaction); its chunk ids, for the vector index."""
        ids = [
            row[0]
            for row in self._db.execute(
                "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.path = ?", (path,)
            )
        ]
        self._db.executemany("DELETE FROM chunks_fts WHERE rowid = ?", [(i,) for i in ids])
        self._db.execute("DELETE FROM documents WHERE path = ?", (path,))
        return ids

    def _signature(self) -> str:
        count, total = self._db.execute("SELECT count(*), coalesce(sum(id), 0) FROM chunks").fetchone()
        return f"{count}:{total}"

    def _vector_index(self):
        """The in-memory HNSW index: reloaded when another process saved a newer one, rebuilt from the database
        when none matches it. While another process is still writing, a loaded index is kept until it saves
        (searches skip the chunks it deleted meanwhile), or rebuilt if it never does."""
        from usearch.index import Index

        with self._lock:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if self._index is not None and self._stale_since is None and version == self._data_version:
                return self._index  # current, and no other process has written since: skip the table scan
            self._data_version = version
            signature = self._signature()
            if self._index is not None and self._index_signature == signature:
                self._stale_since = None
                return self._index
            recorded = self._db.execute("SELECT value FROM settings WHERE key = 'vector_index'").fetchone()
            restored = None
            if recorded and recorded[0] == signature and self._index_path.exists():
                restored = _restore(Index, self._index_path)
            if restored is not None:
                self._index, self._index_signature, self._stale_since = restored, signature, None
            elif self._index is None or self._stale_too_long():
                self._index = self._rebuild_index(Index)
                self._index_signature, self._stale_since = signature, None
            return self._index

    def _stale_too_long(self) -> bool:
        """Whether the loaded index has lagged the database for longer than a live writer leaves it (it saves
        every `STALE_SECONDS / 2`): that writer has died, and the index is rebuilt from the database."""
        now = time.monotonic()
        self._stale_since = self._stale_since or now
        return now - self._stale_since > STALE_SECONDS

    def _rebuild_index(self, index_class):
        dimension = int(self.settings().get("dimension", 0))
        if not dimension:
            raise KnowledgeBaseError(
                f"{self.location} has no recorded embedding dimension: delete it (`llmkit rag delete`) and index again"
            )
        index = index_class(ndim=dimension, **_HNSW)
        rows = self._db.execute("SELECT id, embedding FROM chunks").fetchall()
        if rows:
            index.add(
                np.array([row[0] for row in rows], dtype=np.uint64),
                np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), dimension),
            )
        return index


def knowledge_base_names(folder: Path) -> list[str]:
    """The knowledge bases in a store folder: its `{kb}.sqlite` files."""
    return [file.stem for file in folder.glob("*.sqlite") if is_kb_name(file.stem)]


def _shifted(signature: str, removed: list[int], added: list[int]) -> str:
    """The (count, id sum) signature after removing and adding these chunk ids, without rescanning the table:
    the index matches the database after a write exactly when it matched before it."""
    count, total = map(int, signature.split(":"))
    return f"{count - len(removed) + len(added)}:{total - sum(removed) + sum(added)}"


def _restore(index_class, path: Path):
    """The index saved at `path`, or None when the file is not a readable index (truncated, overwritten)."""
    try:
        return index_class.restore(str(path))
    except (ValueError, RuntimeError):
        return None


def _remove_keys(index, ids: list[int]) -> None:
    if ids:
        index.remove(np.asarray(ids, dtype=np.uint64))


def _where(filters: Filters) -> tuple[str, list[str]]:
    return filter_sql(filters, "REGEXP", "?")


def _regexp(pattern: str, value: str) -> bool:
    return re.search(pattern, value) is not None
