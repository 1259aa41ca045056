"""PostgresStore on a real PostgreSQL server with pgvector, started for this test session from pgserver's binaries."""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from llmkit.rag.chunking import Chunk
from llmkit.rag.documents import Document, Section
from llmkit.rag.keywords import keyword_terms
from llmkit.rag.store import Filters, KnowledgeBaseError, KnowledgeBaseNotFound
from llmkit.rag.stores import open_store

pytest.importorskip("psycopg", reason="PostgresStore needs psycopg: pip install 'psycopg[binary]'")
from llmkit.rag.postgres_store import PostgresStore  # after the skip, as it imports psycopg

SQUAD = Path(os.environ["LLMKIT_SHARED_DATA"]) / "squad" / "squad2-dev-subset.json"
EXAMPLE_DOCS = Path(__file__).resolve().parents[2] / "examples" / "rag" / "docs"
CHINESE = (
    "诺曼人是十世纪和十一世纪生活在法国诺曼底的民族，他们的祖先是来自丹麦、冰岛和挪威的维京人。"
    "1066年，诺曼底公爵威廉在黑斯廷斯战役中获胜，征服了英格兰，成为英格兰国王。"
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL 16 + pgvector server: pgserver's bundled binaries, initdb'd into a temporary folder
    and listening only on a unix socket there. PostgreSQL refuses to run as root, so under root it runs as
    `postgres` (or `nobody`), and the folder is made with mkdtemp, since pytest's tmp_path is closed to others."""
    spec = importlib.util.find_spec("pgserver")  # found, not imported: importing it sets up its own server state
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("no PostgreSQL with pgvector to test against: pip install pgserver")
    bin_dir = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
    if not (bin_dir / "initdb").is_file() or not (bin_dir / "pg_ctl").is_file():
        pytest.skip(f"pgserver has no PostgreSQL binaries in {bin_dir}")
    folder = Path(tempfile.mkdtemp(prefix="llmkit-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            pytest.skip("running as root without `runuser`: cannot start PostgreSQL as another user")
        user = "postgres" if _user_exists("postgres") else "nobody"
        shutil.chown(folder, user)
        run_as = ["runuser", "-u", user, "--"]
    data, log = folder / "data", folder / "server.log"
    subprocess.run(
        [
            *run_as,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
        check=True,
        capture_output=True,
    )
    # No TCP listener: the port only names the socket file, and the socket folder is ours alone.
    options = f"-k {folder} -p 5432 -c listen_addresses=''"
    started = subprocess.run(
        [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"],
        check=False,
        capture_output=True,
        text=True,
    )
    server_log = log.read_text() if log.exists() else ""
    assert started.returncode == 0, f"PostgreSQL did not start: {started.stderr}\n{server_log}"
    try:
        yield f"postgresql://postgres@/postgres?host={folder}&port=5432"
    finally:
        stop = [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
        subprocess.run(stop, check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="session")
def embedder():
    from llmkit.rag.embedding import load_embedder

    return load_embedder()


@pytest.fixture(scope="session")
def corpus(embedder) -> list[tuple[Document, list[Chunk], np.ndarray]]:
    """Three documents with their chunks and vectors: ten SQuAD paragraphs on the Normans, ten on complexity
    theory (one paragraph a chunk), and a Chinese paragraph on the Norman conquest."""
    articles = {article["title"]: article["paragraphs"][:10] for article in json.loads(SQUAD.read_text())["data"]}
    sources = [
        ("/kb/history/normans.md", "Normans", "2021-05-01", articles["Normans"]),
        (
            "/kb/cs/complexity.html",
            "Computational complexity theory",
            "2023-09-15",
            articles["Computational_complexity_theory"],
        ),
        ("/kb/zh/normans-zh.txt", "诺曼人", "2024-02-01", [{"context": CHINESE}]),
    ]
    documents = []
    for path, title, modified, paragraphs in sources:
        texts = [p["context"] for p in paragraphs]
        tokens = embedder.count_tokens(texts)
        chunks = [Chunk(text, ordinal, count) for ordinal, (text, count) in enumerate(zip(texts, tokens))]
        document = Document(path, title, [Section(text) for text in texts], f"sha-{title}", modified)
        documents.append((document, chunks, embedder.embed(texts)))
    return documents


@pytest.fixture
def store(postgres_url, embedder, corpus, request) -> Iterator[PostgresStore]:
    """A new knowledge base (its name has a '-', as users' do) holding the corpus; destroyed after the test."""
    store = PostgresStore(postgres_url, f"test-{request.node.name[:40]}", create=True)
    store.save_settings({"embedding_model": embedder.name, "dimension": str(embedder.dimension)})
    for document, chunks, vectors in corpus:
        store.replace_document(document, chunks, vectors)
    store.flush()
    yield store
    store.destroy()


def _texts(store: PostgresStore, ranked: list[tuple[int, float]]) -> list[str]:
    found = store.chunks([i for i, _ in ranked])
    return [found[i].text for i, _ in ranked]


def _paths(store: PostgresStore, ranked: list[tuple[int, float]]) -> set[str]:
    return {chunk.path for chunk in store.chunks([i for i, _ in ranked]).values()}


def test_settings_documents_and_vectors_read_back(store, postgres_url, embedder, corpus):
    again = PostgresStore(postgres_url, store.schema.removeprefix("rag_"))  # a second connection sees it all
    assert again.settings() == {"embedding_model": embedder.name, "dimension": str(embedder.dimension)}
    assert again.document_hashes() == {document.path: document.sha256 for document, _, _ in corpus}
    assert again.count_chunks() == sum(len(chunks) for _, chunks, _ in corpus)
    ids = [i for i, _ in again.vector_search(corpus[0][2][3], 1, Filters())]
    assert _texts(again, [(ids[0], 0.0)]) == [corpus[0][1][3].text]
    np.testing.assert_array_equal(again.vectors(ids), corpus[0][2][3:4])  # float32 values come back unchanged
    chunk = again.chunks(ids)[ids[0]]
    where = (chunk.path, chunk.title, chunk.ordinal, chunk.modified)
    assert where == ("/kb/history/normans.md", "Normans", 3, "2021-05-01")
    again.close()


@pytest.mark.parametrize(
    "question, document, ordinal",
    [
        ("Who did Rollo sign the treaty of Saint-Clair-sur-Epte with?", 0, 3),
        ("When did Robert Crispin go up against the Turks?", 0, 8),
        (
            "By how many kilometers does the traveling salesman problem seek to classify a route between "
            "the 15 largest "
            + "cities in Germany?",
            1,
            4,
        ),
        ("What is the name of the alphabet is most commonly used in a problem instance?", 1, 5),
    ],
)
def test_vector_search_ranks_the_answering_paragraph_first(store, embedder, corpus, question, document, ordinal):
    ranked = store.vector_search(embedder.embed([question])[0], 3, Filters())
    assert _texts(store, ranked)[0] == corpus[document][1][ordinal].text


def test_vector_search_scores_are_cosine_similarities_best_first(store, embedder, corpus):
    query = embedder.embed(["Who was the duke in the battle of Hastings?"])[0]
    ranked = store.vector_search(query, 5, Filters())
    vectors = np.concatenate([vectors for _, _, vectors in corpus])
    texts = [chunk.text for _, chunks, _ in corpus for chunk in chunks]
    exact = np.argsort(-(vectors @ query))[:5]
    assert _texts(store, ranked) == [texts[i] for i in exact]
    np.testing.assert_allclose([score for _, score in ranked], (vectors @ query)[exact], atol=1e-5)


def test_keyword_search_in_english_matches_word_forms(store):
    ranked = store.keyword_search(keyword_terms("Which treaties established the Duchy of Normandy?"), 3, Filters())
    assert "treaty of Saint-Clair-sur-Epte" in _texts(store, ranked)[0]  # "treaties" found "treaty"
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert store.keyword_search(keyword_terms("xylophone quasar"), 3, Filters()) == []
    assert store.keyword_search([], 3, Filters()) == []


def test_keyword_search_in_chinese(store):
    ranked = store.keyword_search(keyword_terms("谁征服了英格兰？"), 3, Filters())
    assert _texts(store, ranked) == [CHINESE]


def test_filters_by_source_glob_and_date(store, embedder):
    query = embedder.embed(["Who conquered England in 1066?"])[0]
    terms = keyword_terms("Normans conquered England")
    for filters, expected in [
        (Filters(sources=("*.md",)), {"/kb/history/normans.md"}),
        (Filters(sources=("cs/**", "*.txt")), {"/kb/cs/complexity.html", "/kb/zh/normans-zh.txt"}),
        (Filters(sources=("/kb/history/*",)), {"/kb/history/normans.md"}),
        (Filters(sources=("/history/*",)), set()),  # an absolute pattern matches from the root only
        (Filters(after="2023-01-01"), {"/kb/cs/complexity.html", "/kb/zh/normans-zh.txt"}),
        (Filters(before="2023-09-15"), {"/kb/history/normans.md", "/kb/cs/complexity.html"}),  # inclusive
        (Filters(after="2022-01-01", before="2023-12-31"), {"/kb/cs/complexity.html"}),
    ]:
        assert _paths(store, store.vector_search(query, 30, filters)) == expected, filters
        assert _paths(store, store.keyword_search(terms, 30, filters)) <= expected, filters
    assert len(store.vector_search(query, 5, Filters(sources=("*.md",)))) == 5  # k results even through a filter
    assert _paths(store, store.keyword_search(keyword_terms("Rollo"), 30, Filters(sources=("*.html",)))) == set()


def test_replace_document_removes_its_old_chunks(store, embedder, corpus):
    document, chunks, _ = corpus[0]
    old_ids = [i for i, _ in store.keyword_search(["rollo"], 30, Filters(sources=("*.md",)))]
    assert old_ids
    text = "The Bayeux Tapestry depicts the events leading up to the Norman conquest of England."
    changed = Document(document.path, document.title, [Section(text)], "sha-changed", "2025-01-01")
    store.replace_document(changed, [Chunk(text, 0, 16)], embedder.embed([text]))
    assert store.chunks(old_ids) == {}
    assert store.keyword_search(["rollo"], 30, Filters(sources=("*.md",))) == []
    assert store.document_hashes()[document.path] == "sha-changed"
    assert store.count_chunks() == sum(len(c) for _, c, _ in corpus) - len(chunks) + 1
    ranked = store.vector_search(embedder.embed(["What does the Bayeux Tapestry show?"])[0], 1, Filters())
    assert _texts(store, ranked) == [text]


def test_delete_documents(store, embedder, corpus):
    store.delete_documents(["/kb/history/normans.md", "/kb/zh/normans-zh.txt", "/kb/never-indexed.md"])
    store.delete_documents([])
    assert set(store.document_hashes()) == {"/kb/cs/complexity.html"}
    assert store.count_chunks() == len(corpus[1][1])
    query = embedder.embed(["Who conquered England in 1066?"])[0]
    assert _paths(store, store.vector_search(query, 30, Filters())) == {"/kb/cs/complexity.html"}


def test_missing_knowledge_base_and_destroy(postgres_url, embedder):
    with pytest.raises(KnowledgeBaseNotFound, match="no knowledge base 'absent'.*--kb absent"):
        open_store("absent", postgres_url)
    store = open_store("short-lived", postgres_url, create=True)
    assert isinstance(store, PostgresStore) and store.settings() == {} and store.count_chunks() == 0
    store.save_settings({"dimension": str(embedder.dimension)})
    store.destroy()
    with pytest.raises(KnowledgeBaseNotFound):
        open_store("short-lived", postgres_url)


def test_unreachable_server_names_the_url_without_its_password(tmp_path):
    url = f"postgresql://reader:hunter2@/postgres?host={tmp_path}&port=5999"
    with pytest.raises(KnowledgeBaseError, match="cannot connect to PostgreSQL at") as raised:
        PostgresStore(url, "any")
    assert "reader:***@" in str(raised.value) and "hunter2" not in str(raised.value)


@pytest.mark.slow
def test_knowledge_base_indexes_and_searches_on_postgres(postgres_url):
    from llmkit.rag.knowledge_base import KnowledgeBase

    kb = KnowledgeBase.open("examples-e2e", postgres_url, create=True)
    try:
        report = kb.index([EXAMPLE_DOCS])
        assert len(report.added) == 2 and not report.failed and report.chunks == kb.store.count_chunks()
        hits = kb.search("Who conquered England in 1066?")
        assert hits and Path(hits[0].chunk.path).name == "normans.md"
        assert all(hit.similarity <= 1.0001 for hit in hits)
        kb.close()
        kb = KnowledgeBase.open("examples-e2e", postgres_url)
        again = kb.index([EXAMPLE_DOCS])
        assert sorted(again.unchanged) == sorted(report.added) and not again.added and not again.updated
    finally:
        kb.store.destroy()
