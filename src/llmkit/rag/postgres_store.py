"""A knowledge base in one PostgreSQL schema, `rag_<kb>`: pgvector's HNSW index for vectors, a GIN index for words.

The schema holds the SQLite store's tables (settings, documents, chunks), so both behave alike. Each chunk
keeps its vector and a `tsvector` of its `keyword_text` under the 'english' configuration, whose Snowball
stemmer matches the SQLite store's porter tokenizer (and leaves the jieba-cut Chinese words as they are).
The connection is in autocommit mode: every write is durable when its transaction block ends.
"""

from __future__ import annotations

import re
import threading

import numpy as np
import psycopg
from psycopg import sql

from llmkit.rag.chunking import Chunk
from llmkit.rag.documents import Document
from llmkit.rag.keywords import keyword_text
from llmkit.rag.store import Filters, KnowledgeBaseError, StoredChunk, filter_sql, is_kb_name, not_found

# The dimension is known only when `save_settings` records it, so `embedding` starts as a plain `vector`
# and is typed `vector(D)` then, while the table is still empty, before the HNSW index is built: pgvector
# (0.5 to 0.7) indexes only columns with a dimension, and an index on the expression `embedding::vector(D)`
# would be used only by queries that repeat the cast.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    path text NOT NULL UNIQUE,
    title text NOT NULL,
    sha256 text NOT NULL,
    modified text NOT NULL,
    indexed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS chunks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id bigint NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal integer NOT NULL,
    text text NOT NULL,
    page integer,
    heading text,
    tokens integer NOT NULL,
    embedding vector NOT NULL,
    body tsvector NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks (document_id);
CREATE INDEX IF NOT EXISTS chunks_body ON chunks USING gin (body);
"""
_CHUNK_COLUMNS = "c.id, c.text, d.path, d.title, c.ordinal, c.page, c.heading, d.modified"
_HNSW = "USING hnsw (embedding vector_ip_ops) WITH (m = 16, ef_construction = 128)"  # as the SQLite store's usearch
_EF_SEARCH = 64  # candidates the HNSW search keeps; raised to k for larger k (pgvector's limit is 1000)


class PostgresStore:
    """The `Store` of one knowledge base in a PostgreSQL database with pgvector (see the module docstring)."""

    def __init__(self, url: str, kb: str, *, create: bool = False):
        self.schema = f"rag_{kb}"
        if len(self.schema) > 63:  # PostgreSQL would silently cut the name, and two knowledge bases could share it
            raise KnowledgeBaseError(f"knowledge base name {kb!r} is too long for PostgreSQL (59 characters at most)")
        self._url = masked_url(url)
        self.location = f"{self._url} (schema {self.schema})"
        self._lock = threading.RLock()  # the server searches from worker threads
        try:
            self._db = psycopg.connect(url, autocommit=True)
        except psycopg.Error as error:
            raise KnowledgeBaseError(f"cannot connect to PostgreSQL at {self._url}: {error}".strip()) from error
        try:
            self._open(kb, create)
        except BaseException:
            self._db.close()
            raise

    def _open(self, kb: str, create: bool) -> None:
        exists = self._db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)).fetchone()
        if not exists and not create:
            raise not_found(kb, self._knowledge_base_names(), " --store URL")
        with self._db.transaction():
            if create:
                self._create_extension()  # before the search path names our schema, or the extension would land in it
                self._db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            # Our schema first, then the server's own path (where the `vector` type lives).
            server_path = self._db.execute("SHOW search_path").fetchone()[0]
            path = f"{sql.Identifier(self.schema).as_string(self._db)}, {server_path}"
            self._db.execute("SELECT set_config('search_path', %s, false)", (path,))
            if create:
                self._db.execute(_SCHEMA)

    def _knowledge_base_names(self) -> list[str]:
        """The knowledge bases in this database: its `rag_{kb}` schemas."""
        rows = self._db.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, 'rag_')").fetchall()
        names = [schema.removeprefix("rag_") for (schema,) in rows]
        return [name for name in names if is_kb_name(name)]

    def _create_extension(self) -> None:
        if not self._db.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone():
            raise KnowledgeBaseError(
                f"the PostgreSQL server at {self._url} has no pgvector extension: install pgvector on it "
                "(https://github.com/pgvector/pgvector#installation)"
            )
        try:
            self._db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege as error:
            raise KnowledgeBaseError(
                f"cannot enable pgvector in the database at {self._url} ({error}): "
                "ask its owner to run `CREATE EXTENSION vector`"
            ) from error

    def settings(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT key, value FROM settings").fetchall())

    def save_settings(self, values: dict[str, str]) -> None:
        """Record settings; the first `dimension` recorded types the vector column and builds its HNSW index."""
        with self._lock, self._db.transaction():
            with self._db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO settings VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    list(values.items()),
                )
            if "dimension" not in values:
                return
            dimension = int(values["dimension"])
            typed = self._db.execute(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
            ).fetchone()[0]
            if typed == -1:  # pgvector's type modifier is the dimension, -1 for none
                self._db.execute(sql.SQL("ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({})").format(dimension))
                self._db.execute(f"CREATE INDEX IF NOT EXISTS chunks_embedding ON chunks {_HNSW}")
            elif typed != dimension:
                raise KnowledgeBaseError(f"{self.location} holds {typed}-dimensional vectors, not {dimension}")

    def document_hashes(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT path, sha256 FROM documents").fetchall())

    def replace_document(self, document: Document, chunks: list[Chunk], vectors: np.ndarray) -> None:
        with self._lock, self._db.transaction():
            self._db.execute("DELETE FROM documents WHERE path = %s", (document.path,))  # its chunks go with it
            document_id = self._db.execute(
                "INSERT INTO documents (path, title, sha256, modified) VALUES (%s, %s, %s, %s) RETURNING id",
                (document.path, document.title, document.sha256, document.modified),
            ).fetchone()[0]
            with self._db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO chunks (document_id, ordinal, text, page, heading, tokens, embedding, body) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s::vector, to_tsvector('english', %s))",
                    [
                        (
                            document_id,
                            c.ordinal,
                            c.text,
                            c.page,
                            c.heading,
                            c.tokens,
                            _vector_text(vector),
                            keyword_text(f"{c.heading or ''}\n{c.text}"),
                        )
                        for c, vector in zip(chunks, vectors)
                    ],
                )

    def delete_documents(self, paths: list[str]) -> None:
        if paths:
            with self._lock:
                self._db.execute("DELETE FROM documents WHERE path = ANY(%s)", (list(paths),))

    def flush(self) -> None:
        """Nothing to do: each write was committed when it returned, the HNSW index with it."""

    def count_chunks(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def vector_search(self, query: np.ndarray, k: int, filters: Filters) -> list[tuple[int, float]]:
        """Nearest chunks by inner product (vectors are unit length): by the HNSW index when unfiltered; exactly,
        over the chunks that pass, when filtered, since pgvector 0.7 filters the index's `ef_search` candidates
        after the search and so can return fewer than `k` (0.8's iterative scans lift that)."""
        vector = _vector_text(query)
        with self._lock, self._db.transaction():
            if filters:
                where, parameters = _where(filters)
                rows = self._db.execute(
                    "WITH passing AS MATERIALIZED (SELECT c.id, c.embedding <#> %s::vector AS distance "
                    f"FROM chunks c JOIN documents d ON d.id = c.document_id WHERE {where}) "
                    "SELECT id, distance FROM passing ORDER BY distance, id LIMIT %s",
                    [vector, *parameters, k],
                ).fetchall()
            else:
                self._db.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(min(max(_EF_SEARCH, k), 1000)),))
                rows = self._db.execute(
                    "SELECT id, embedding <#> %s::vector AS distance FROM chunks ORDER BY distance LIMIT %s",
                    (vector, k),
                ).fetchall()
        return [(int(i), -float(distance)) for i, distance in rows]  # <#> is the negated inner product

    def keyword_search(self, terms: list[str], k: int, filters: Filters) -> list[tuple[int, float]]:
        if not terms:
            return []
        any_term = " || ".join(["plainto_tsquery('english', %s)"] * len(terms))
        where, parameters = _where(filters)
        with self._lock:
            rows = self._db.execute(
                f"WITH q AS (SELECT {any_term} AS query) "
                "SELECT c.id, ts_rank_cd(c.body, q.query) AS score "
                "FROM q, chunks c JOIN documents d ON d.id = c.document_id "
                f"WHERE c.body @@ q.query AND {where} ORDER BY score DESC, c.id LIMIT %s",
                [*terms, *parameters, k],
            ).fetchall()
        return [(int(i), float(score)) for i, score in rows]

    def chunks(self, ids: list[int]) -> dict[int, StoredChunk]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ANY(%s)",
                (list(ids),),
            ).fetchall()
        return {row[0]: StoredChunk(*row) for row in rows}

    def vectors(self, ids: list[int]) -> np.ndarray:
        with self._lock:
            texts = dict(
                self._db.execute("SELECT id, embedding::text FROM chunks WHERE id = ANY(%s)", (list(ids),)).fetchall()
            )
        return np.stack([np.array(texts[i][1:-1].split(","), dtype=np.float32) for i in ids])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def destroy(self) -> None:
        """Drop the knowledge base's schema with everything in it."""
        with self._lock:
            self._db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))
        self.close()


def masked_url(url: str) -> str:
    """`url` with its password (in the user part or a `password=` parameter) shown as ***, fit for messages."""
    url = re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)
    return re.sub(r"(password=)[^&]*", r"\1***", url)


def _vector_text(vector: np.ndarray) -> str:
    """pgvector's text form of a vector; float32 values printed in full, so they read back unchanged."""
    return "[" + ",".join(map(str, np.asarray(vector, dtype=np.float32).tolist())) + "]"


def _where(filters: Filters) -> tuple[str, list[str]]:
    return filter_sql(filters, "~", "%s")
