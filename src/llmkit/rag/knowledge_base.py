"""A knowledge base: documents indexed into a store with one embedding model, searched by meaning and by words.

`KnowledgeBase.open` binds a store to the embedding model it was built with (recorded at creation; any
other model is refused, since its vectors would not be comparable). `index` reads, chunks, embeds and
stores files, skipping unchanged ones and removing deleted ones; `search` ranks chunks by vector
similarity, BM25 keywords, or both fused, with optional MMR diversity and a cross-encoder reranker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from llmkit.embeddings import DEFAULT_EMBEDDING_MODEL, canonical_embedding_name
from llmkit.errors import InvalidRequestError
from llmkit.rag.chunking import check_budget, chunk_document
from llmkit.rag.documents import DocumentError, file_sha256, find_files, read_document
from llmkit.rag.embedding import EmbeddingError, TextEmbedder, load_embedder
from llmkit.rag.keywords import keyword_terms
from llmkit.rag.ranking import CrossEncoderReranker, maximal_marginal_relevance, reciprocal_rank_fusion
from llmkit.rag.store import Filters, Store, StoredChunk
from llmkit.rag.stores import open_store

SearchMode = Literal["vector", "keyword", "hybrid"]
SEARCH_MODES: tuple[SearchMode, ...] = ("vector", "keyword", "hybrid")
DEFAULT_CHUNK_TOKENS = 512
DEFAULT_OVERLAP = 64
FLUSH_SECONDS = 30.0  # how often a long indexing run saves the vector index, so a crash loses little
IndexProgress = Callable[[int, int, str], None]  # files done, files in all, the file being read


@dataclass(frozen=True)
class Hit:
    """A search result: the chunk, its rank score in the chosen mode, and its cosine similarity to the query."""

    chunk: StoredChunk
    score: float
    similarity: float  # comparable across modes and queries: what relevance thresholds use


@dataclass
class IndexReport:
    """What an indexing run did, file by file."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # path → why it could not be read
    chunks: int = 0  # chunks written by this run
    seconds: float = 0.0


class KnowledgeBase:
    """A store plus the embedding model its vectors come from (see the module docstring)."""

    def __init__(self, name: str, store: Store, embedder: TextEmbedder, chunk_tokens: int, overlap: int):
        self.name = name
        self.store = store
        self.embedder = embedder
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap

    @classmethod
    def open(
        cls,
        name: str,
        location: str | Path | None = None,
        *,
        create: bool = False,
        embedding_model: str | None = None,
        embedding_url: str | None = None,
        api_key: str | None = None,
        chunk_tokens: int | None = None,
        overlap: int | None = None,
    ) -> KnowledgeBase:
        """Open knowledge base `name` (creating it when `create`), checking the embedding model against its record.

        A new knowledge base records the model (default all-MiniLM-L6-v2), its dimension and the chunk sizes:
        `chunk_tokens` defaults to 512 or the model's window if that is smaller, `overlap` to 64.
        """
        store = open_store(name, location, create=create)
        settings = store.settings()
        model = canonical_embedding_name(embedding_model or settings.get("embedding_model") or DEFAULT_EMBEDDING_MODEL)
        if settings and model != settings["embedding_model"]:
            store.close()
            raise EmbeddingError(
                f"knowledge base {name!r} was built with {settings['embedding_model']} "
                f"({settings['dimension']} dimensions); {model} vectors cannot be compared with them. "
                f"Use the same model, or index into a new --kb (or `llmkit rag delete --kb {name}` first)"
            )
        embedder = load_embedder(model, base_url=embedding_url, api_key=api_key)
        if not settings:
            window = embedder.max_tokens - 2  # the model's [CLS] and [SEP] take two of its tokens
            tokens = chunk_tokens or min(DEFAULT_CHUNK_TOKENS, window)
            if tokens > window:
                store.destroy()  # it was created empty by this call
                raise InvalidRequestError(
                    f"--chunk-tokens {tokens} is more than {model} reads ({window} tokens besides its special ones): "
                    "the rest of each chunk would be stored but never embedded; use at most that"
                )
            overlap = DEFAULT_OVERLAP if overlap is None else overlap
            check_budget(tokens, overlap)
            settings = dict(
                embedding_model=model, dimension=str(embedder.dimension), chunk_tokens=str(tokens), overlap=str(overlap)
            )
            store.save_settings(settings)
        elif int(settings["dimension"]) != embedder.dimension:
            store.close()
            raise EmbeddingError(
                f"knowledge base {name!r} holds {settings['dimension']}-dimensional vectors, but {model} now gives "
                f"{embedder.dimension}: it is not the model the knowledge base was built with"
            )
        else:
            _check_unchanged(name, "chunk size", chunk_tokens, int(settings["chunk_tokens"]))
            _check_unchanged(name, "overlap", overlap, int(settings["overlap"]))
        return cls(name, store, embedder, int(settings["chunk_tokens"]), int(settings["overlap"]))

    def index(
        self, paths: Sequence[Path], *, text_field: str = "text", progress: IndexProgress | None = None
    ) -> IndexReport:
        """Bring the knowledge base up to date with `paths` (files and folders).

        Unchanged files (same content hash) are skipped, changed ones replaced, and documents that were
        indexed from inside one of the folders but are gone from it are removed. Each file is committed
        on its own, so an interrupted run keeps what it finished and the next run picks up the rest.
        A file that cannot be read is reported in `failed`, and its earlier version, if any, is kept.
        """
        started = time.perf_counter()
        files = list(dict.fromkeys(file.resolve() for file in find_files(paths)))  # a file named twice is read once
        known = self.store.document_hashes()
        report, seen, last_flush = IndexReport(), set(), time.monotonic()
        for done, file in enumerate(files):
            path = str(file)
            seen.add(path)
            if progress:
                progress(done, len(files), path)
            sha256 = file_sha256(file)
            if known.get(path) == sha256:
                report.unchanged.append(path)
                continue
            try:
                document = read_document(file, text_field=text_field, sha256=sha256)
            except DocumentError as error:
                report.failed[path] = str(error)
                continue
            chunks = chunk_document(document, self.embedder.count_tokens, self.chunk_tokens, self.overlap)
            vectors = (
                self.embedder.embed([c.text for c in chunks]) if chunks else np.zeros((0, self.embedder.dimension))
            )
            self.store.replace_document(document, chunks, vectors)
            (report.updated if path in known else report.added).append(path)
            report.chunks += len(chunks)
            if time.monotonic() - last_flush > FLUSH_SECONDS:
                self.store.flush()
                last_flush = time.monotonic()
        folders = [str(p.resolve()) + os.sep for p in paths if p.is_dir()]
        report.deleted = [p for p in known if p not in seen and any(p.startswith(folder) for folder in folders)]
        self.store.delete_documents(report.deleted)
        self.store.flush()
        if progress:
            progress(len(files), len(files), "")
        report.seconds = time.perf_counter() - started
        return report

    def search(
        self,
        query: str,
        *,
        k: int = 5,
        mode: SearchMode = "hybrid",
        filters: Filters = Filters(),
        mmr: float | None = None,
        reranker: CrossEncoderReranker | None = None,
        candidates: int | None = None,
    ) -> list[Hit]:
        """The `k` best chunks for `query`.

        Each mode first takes `candidates` (LangChain's `fetch_k`; default 4k, at least k) from its retriever(s);
        hybrid fuses the vector and keyword lists by reciprocal rank. The reranker then reorders them, and `mmr`
        (a weight in [0, 1], 1 = relevance only) picks `k` that are relevant yet unlike each other.
        """
        _check_search(query, k, mode, mmr, candidates)
        pool = candidates or 4 * k
        vector = self.embedder.embed([query])[0]
        rankings = []
        if mode in ("vector", "hybrid"):
            rankings.append(self.store.vector_search(vector, pool, filters))
        if mode in ("keyword", "hybrid"):
            rankings.append(self.store.keyword_search(keyword_terms(query), pool, filters))
        ranked = reciprocal_rank_fusion([[i for i, _ in r] for r in rankings]) if mode == "hybrid" else rankings[0]
        chunks = self.store.chunks([i for i, _ in ranked[:pool]])
        ranked = [(i, s) for i, s in ranked[:pool] if i in chunks]  # another process may have just deleted some
        if not ranked:
            return []
        ids = [i for i, _ in ranked]
        scores = [s for _, s in ranked]
        vectors = self.store.vectors(ids)
        similarity = vectors @ vector
        if reranker is not None:
            scores = reranker.scores(query, [chunks[i].text for i in ids])
        order = sorted(range(len(ids)), key=lambda i: -scores[i]) if reranker is not None else list(range(len(ids)))
        if mmr is not None:
            picked = maximal_marginal_relevance(vector, vectors[order], k, mmr)
            order = [order[i] for i in picked]
        return [Hit(chunks[ids[i]], float(scores[i]), float(similarity[i])) for i in order[:k]]

    def close(self) -> None:
        """Release the store."""
        self.store.close()


def _check_unchanged(name: str, what: str, asked: int | None, recorded: int) -> None:
    if asked is not None and asked != recorded:
        raise InvalidRequestError(
            f"knowledge base {name!r} was chunked with {what} {recorded}; re-chunking needs a new --kb "
            f"(or `llmkit rag delete --kb {name}` first)"
        )


def _check_search(query: str, k: int, mode: str, mmr: float | None, candidates: int | None) -> None:
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequestError("the query is empty: ask something")
    check_search_settings(k, mode, mmr, candidates)


def check_search_settings(k: int, mode: str, mmr: float | None = None, candidates: int | None = None) -> None:
    """Refuse search settings that cannot work (before a long run that would search with them)."""
    if k < 1:
        raise InvalidRequestError(f"k must be at least 1 (got {k})")
    if mode not in SEARCH_MODES:
        raise InvalidRequestError(f"unknown search mode {mode!r}: use one of {', '.join(SEARCH_MODES)}")
    if mmr is not None and not 0.0 <= mmr <= 1.0:
        raise InvalidRequestError(f"mmr must be between 0 and 1 (got {mmr})")
    if candidates is not None and candidates < k:
        raise InvalidRequestError(
            f"fetch_k (candidates) {candidates} is fewer than the {k} results asked for: give at least k"
        )
