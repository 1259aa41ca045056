"""Retrieval speed and quality: indexing throughput, query latency and hit@5 of `llmkit.rag`, SQLite store.

    python benchmarks/rag.py                                   # 10k and 100k chunks, every SQuAD question
    python benchmarks/rag.py --write docs/benchmarks.md
    python benchmarks/rag.py --sizes 2000 --quick              # smoke test

The haystack: the 87 paragraphs of the SQuAD 2.0 subset in ../shared/data (the needles: each answerable
question's answer is in one of them) among distractor chunks of real text, sentence pairs drawn from
LLaMA-Factory's wiki_demo, c4_demo and alpaca_en_demo files. Real distractors are embedded with the
default model (all-MiniLM-L6-v2) up to `--embedded` of them (10k by default: embedding runs ~30-100
chunks/s on 2 cores, so 100k real embeddings would take most of an hour). Beyond that, each distractor
is the two halves of two embedded ones, its vector the normalised mean of theirs: the vector index and
FTS5 still see 100k distinct texts and vectors, at the density of real embeddings.

Indexing throughput is measured on the embedded chunks (embedding + SQLite + FTS5 + HNSW, chunks already
cut); the synthetic ones go through the same store, so the store's own rate is reported for all of them.
Each query runs `KnowledgeBase.search` (query embedding included). Recall@5 counts a hit when one of the
top five chunks contains an answer string. In the same run a brute-force numpy search over every vector
(exact cosine, the same fusion) gives the reference recall and speed.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import DATA_DIR, console, markdown_table, print_table, report_section, write_section

from llmkit.rag.chunking import Chunk
from llmkit.rag.documents import Document
from llmkit.rag.keywords import keyword_terms
from llmkit.rag.knowledge_base import KnowledgeBase
from llmkit.rag.ranking import reciprocal_rank_fusion
from llmkit.rag.store import Filters

SQUAD = DATA_DIR / "squad/squad2-dev-subset.json"
DISTRACTOR_SOURCES = ("llama-factory/wiki_demo.txt", "llama-factory/c4_demo.jsonl", "llama-factory/alpaca_en_demo.json")
DOCUMENT_CHUNKS = 500  # chunks stored per synthetic document (one transaction each)
TARGET_MS = 50.0
K = 5


def squad() -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The SQuAD paragraphs, and each answerable question with its answer strings."""
    paragraphs, questions = [], []
    for article in json.loads(SQUAD.read_text())["data"]:
        for paragraph in article["paragraphs"]:
            paragraphs.append(paragraph["context"])
            for qa in paragraph["qas"]:
                if not qa["is_impossible"]:
                    questions.append((qa["question"], sorted({a["text"] for a in qa["answers"]})))
    return paragraphs, questions


def sentences() -> list[str]:
    """Real English sentences of 40-300 characters from the distractor sources."""
    texts = []
    for name in DISTRACTOR_SOURCES:
        path = DATA_DIR / name
        if path.suffix == ".jsonl":
            texts += [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
        elif path.suffix == ".json":
            texts += [record["output"] for record in json.loads(path.read_text())]
        else:
            texts.append(path.read_text())
    pieces = (s.strip() for text in texts for s in re.split(r"(?<=[.!?])\s+", text))
    return sorted({s for s in pieces if 40 <= len(s) <= 300})


def embed_corpus(kb: KnowledgeBase, count: int, rng: random.Random) -> tuple[list[str], np.ndarray, float]:
    """The SQuAD paragraphs and real distractors, `count` chunks in all, their vectors, and the embedding rate."""
    paragraphs, _ = squad()
    pool = sentences()
    texts = paragraphs + [" ".join(rng.sample(pool, 2)) for _ in range(count - len(paragraphs))]
    started = time.perf_counter()
    vectors = kb.embedder.embed(texts, batch_size=64)
    return texts, vectors, len(texts) / (time.perf_counter() - started)


def build(kb: KnowledgeBase, size: int, real: list[str], vectors: np.ndarray, rng: random.Random) -> float:
    """Fill `kb` with the first `size` real chunks, or all of them and synthetic ones up to `size` (see above);
    the store's chunks per second (SQLite rows, FTS5, HNSW, in transactions of `DOCUMENT_CHUNKS`)."""
    texts, store_vectors = list(real[:size]), vectors[:size]
    extra = size - len(texts)
    if extra > 0:
        pairs = np.array([rng.sample(range(len(real)), 2) for _ in range(extra)])
        texts += [real[a][: len(real[a]) // 2] + " " + real[b][len(real[b]) // 2 :] for a, b in pairs]
        mixed = vectors[pairs[:, 0]] + vectors[pairs[:, 1]]
        store_vectors = np.concatenate([vectors, mixed / np.linalg.norm(mixed, axis=1, keepdims=True)])
    started = time.perf_counter()
    for start in range(0, size, DOCUMENT_CHUNKS):
        batch = texts[start : start + DOCUMENT_CHUNKS]
        chunks = [Chunk(text, i, len(text.split())) for i, text in enumerate(batch)]
        document = Document(f"/corpus/part-{start // DOCUMENT_CHUNKS:05d}.txt", "corpus", [], f"{start}", "2026-11-23")
        kb.store.replace_document(document, chunks, store_vectors[start : start + DOCUMENT_CHUNKS])
    kb.store.flush()
    return size / (time.perf_counter() - started)


def brute_force(kb: KnowledgeBase, mode: str, query: str, matrix: np.ndarray, ids: np.ndarray) -> list[int]:
    """The same search with an exact numpy scan in place of the HNSW index."""
    vector = kb.embedder.embed([query])[0]
    pool = 4 * K
    nearest = [int(i) for i in ids[np.argpartition(-(matrix @ vector), pool)[:pool]]]
    nearest = sorted(nearest, key=lambda i: -float(matrix[np.searchsorted(ids, i)] @ vector))
    if mode == "vector":
        return list(nearest[:K])
    keyword = [i for i, _ in kb.store.keyword_search(keyword_terms(query), pool, Filters())]
    return [i for i, _ in reciprocal_rank_fusion([list(nearest), keyword])[:K]]


def measure(kb: KnowledgeBase, questions: list[tuple[str, list[str]]]) -> dict[str, dict[str, float]]:
    """Per search: p50 / p99 latency in ms and hit@5, for llmkit's modes and the numpy reference."""
    rows = kb.store._db.execute("SELECT id, embedding FROM chunks ORDER BY id").fetchall()
    ids = np.array([row[0] for row in rows])
    matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), -1)
    texts = {}
    results = {}
    searches = {
        "vector": lambda q: [h.chunk.id for h in kb.search(q, k=K, mode="vector")],
        "keyword": lambda q: [h.chunk.id for h in kb.search(q, k=K, mode="keyword")],
        "hybrid": lambda q: [h.chunk.id for h in kb.search(q, k=K, mode="hybrid")],
        "numpy vector": lambda q: brute_force(kb, "vector", q, matrix, ids),
        "numpy hybrid": lambda q: brute_force(kb, "hybrid", q, matrix, ids),
    }
    for name, search in searches.items():
        search(questions[0][0])  # warm-up: first-query costs (index load) are not latency
        latencies, hits = [], 0
        for question, answers in questions:
            started = time.perf_counter()
            found = search(question)
            latencies.append((time.perf_counter() - started) * 1000)
            missing = [i for i in found if i not in texts]
            texts.update({i: c.text for i, c in kb.store.chunks(missing).items()} if missing else {})
            hits += any(any(a in texts[i] for a in answers) for i in found)
        latencies.sort()
        results[name] = {
            "p50": statistics.median(latencies),
            "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "recall": hits / len(questions),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--embedded", type=int, default=10_000, help="Distractors embedded for real (see above).")
    parser.add_argument("--quick", action="store_true", help="Only the first 40 questions.")
    parser.add_argument("--write", type=Path, help="Markdown file to write the section into.")
    args = parser.parse_args()
    _, questions = squad()
    questions = questions[:40] if args.quick else questions
    headers = ["chunks", "search", "p50 ms", "p99 ms", "hit@5", "indexing"]
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as folder:
        embedder = KnowledgeBase.open("embed", folder, create=True)
        real, vectors, embed_rate = embed_corpus(embedder, min(args.embedded, max(args.sizes)), random.Random(0))
        embedder.close()
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            kb = KnowledgeBase.open(f"bench{size}", folder, create=True)
            store_rate = build(kb, size, real, vectors, random.Random(1))
            results = measure(kb, questions)
            kb.close()
        index_rate = 1 / (1 / embed_rate + 1 / store_rate)  # a real chunk is embedded, then stored
        index_cell = f"{index_rate:.0f} chunks/s ({embed_rate:.0f} embed, {store_rate:.0f} store)"
        for name, figures in results.items():
            rows.append(
                [
                    f"{size:,}",
                    name,
                    f"{figures['p50']:.1f}",
                    f"{figures['p99']:.1f}",
                    f"{figures['recall']:.3f}",
                    index_cell if name == "vector" else "",
                ]
            )
        speedup = results["numpy vector"]["p50"] / results["vector"]["p50"]
        delta = abs(results["hybrid"]["recall"] - results["numpy hybrid"]["recall"]) * 100
        notes.append(
            f"{size:,} chunks ({min(size, len(real)):,} embedded for real): hybrid p50 {results['hybrid']['p50']:.1f} "
            f"ms (target < {TARGET_MS:.0f} ms: {'met' if results['hybrid']['p50'] < TARGET_MS else 'NOT met'}); "
            f"HNSW vector search {speedup:.1f}x the numpy scan's speed; hybrid hit@5 within {delta:.1f} points "
            "of numpy's"
        )
        console.print(notes[-1])
    print_table("llmkit rag: SQLite store, default embedding model", headers, rows, left=2)
    for note in notes:
        console.print(note)
    if args.write:
        setup = [
            f"{len(questions)} answerable SQuAD 2.0 questions over its 87 paragraphs plus distractors (see the script)",
            "latency: `KnowledgeBase.search`, query embedding included, k=5, candidate pool 20",
        ]
        table = markdown_table(headers, rows, left=2)
        write_section(
            args.write, "rag.py", report_section("rag.py", "Retrieval (`benchmarks/rag.py`)", setup, table, notes, [])
        )


if __name__ == "__main__":
    main()
