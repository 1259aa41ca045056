"""`llmkit rag`: build a knowledge base from documents, search it, ask questions answered from it, evaluate it."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmkit.cli.console import console, err_console
from llmkit.cli.options import MODEL_OPTIONS, OptionGroup, add_options

if TYPE_CHECKING:
    from llmkit.rag.knowledge_base import Hit, KnowledgeBase

app = typer.Typer(help="Knowledge bases for retrieval-augmented answers.", no_args_is_help=True)

KB = typer.Option(..., "--kb", help="Knowledge base name (letters, digits, - and _).")
STORE = typer.Option(
    None, "--store", envvar="LLMKIT_RAG_STORE", help="A folder for SQLite knowledge bases, or a postgresql:// URL."
)
MODE = typer.Option("hybrid", "--mode", help="vector, keyword (BM25) or hybrid (both, rank-fused).")
SEARCH_OPTIONS: OptionGroup = {
    "mode": (str, MODE),
    "sources": (
        Optional[list[str]],
        typer.Option(None, "--source", help="Only documents whose path matches this glob (repeatable)."),
    ),
    "after": (
        Optional[dt.datetime],
        typer.Option(None, "--after", help="Only documents modified on or after this date (YYYY-MM-DD)."),
    ),
    "before": (
        Optional[dt.datetime],
        typer.Option(None, "--before", help="Only documents modified on or before this date (YYYY-MM-DD)."),
    ),
    "mmr": (
        Optional[float],
        typer.Option(None, "--mmr", min=0.0, max=1.0, help="Diversify: MMR weight (1 = relevance only)."),
    ),
    "rerank": (
        Optional[str],
        typer.Option(None, "--rerank", help="A sentence-transformers cross-encoder to rerank with."),
    ),
    "candidates": (
        Optional[int],
        typer.Option(
            None, "--fetch-k", "--candidates", min=1,
            help="Candidates each retriever gives before fusion, reranking and MMR (LangChain's fetch_k) "
            "\\[default: 4 × k].",
        ),
    ),
}


@app.command("index")
def index(
    paths: list[Path] = typer.Argument(..., help="Files and folders (.txt .md .html .pdf .docx .json .jsonl .csv)."),
    kb: str = KB,
    store: Optional[str] = STORE,
    embedding_model: Optional[str] = typer.Option(
        None, "--embedding-model", help="sentence-transformers model \\[default: all-minilm-l6-v2; fixed once created]."
    ),
    embedding_url: Optional[str] = typer.Option(
        None, "--embedding-url", help="Embed through this OpenAI-compatible server's /v1/embeddings instead."
    ),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="OPENAI_API_KEY", help="Key for --embedding-url."),
    chunk_tokens: Optional[int] = typer.Option(
        None, "--chunk-tokens", "--chunk-size",
        help="Chunk size in tokens (LangChain's chunk_size, counted in tokens) "
        "\\[default: 512, or the embedding model's window if smaller].",
    ),
    overlap: Optional[int] = typer.Option(
        None, "--overlap", "--chunk-overlap", help="Tokens shared by neighbouring chunks \\[default: 64]."
    ),
    text_field: str = typer.Option(
        "text", "--text-field", help="The text field of .json/.jsonl records and .csv rows."
    ),
) -> None:
    """Add, update and remove documents: unchanged files are skipped, files gone from a folder are removed."""
    from llmkit.cli.model_loading import quiet_transformers
    from llmkit.rag.knowledge_base import KnowledgeBase

    quiet_transformers()
    knowledge_base = KnowledgeBase.open(
        kb,
        store,
        create=True,
        embedding_model=embedding_model,
        embedding_url=embedding_url,
        api_key=api_key,
        chunk_tokens=chunk_tokens,
        overlap=overlap,
    )
    with Progress(
        TextColumn("[bold]indexing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None)
        report = knowledge_base.index(
            paths,
            text_field=text_field,
            progress=lambda done, total, path: bar.update(
                task, completed=done, total=total, description=Path(path).name
            ),
        )
    table = Table("files", "count", title=f"knowledge base {kb} ({knowledge_base.store.location})")
    for label, items in (
        ("added", report.added),
        ("updated", report.updated),
        ("unchanged", report.unchanged),
        ("deleted", report.deleted),
        ("failed", report.failed),
    ):
        table.add_row(label, str(len(items)))
    console.print(table)
    console.print(
        f"{report.chunks} chunks embedded in {report.seconds:.1f} s · {knowledge_base.store.count_chunks()} in all · "
        f"{knowledge_base.embedder.name}, chunks of ≤ {knowledge_base.chunk_tokens} tokens, "
        f"{knowledge_base.overlap} overlap"
    )
    for path, reason in report.failed.items():
        err_console.print(f"[yellow]skipped[/] {escape(reason)}")
    knowledge_base.close()
    if report.failed:
        raise typer.Exit(1)


@app.command("search")
@add_options(SEARCH_OPTIONS, into="search_options")
def search(
    query: str = typer.Argument(..., help="What to look for."),
    kb: str = KB,
    store: Optional[str] = STORE,
    k: int = typer.Option(5, "--k", "-k", min=1, help="How many chunks."),
    search_options: dict[str, Any] = None,
) -> None:
    """Show the chunks that best match QUERY, with their scores and sources (no model involved)."""
    hits = _search(_open(kb, store), query, k, search_options)
    table = Table("#", "score", "sim", show_lines=True)
    table.add_column("source", overflow="fold")  # a path cut short names no file
    table.add_column("text")
    for number, hit in enumerate(hits, 1):
        table.add_row(
            str(number), f"{hit.score:.4f}", f"{hit.similarity:.3f}", escape(_label(hit)), escape(hit.chunk.text[:300])
        )
    console.print(table if hits else "no chunks match")


@app.command("ask")
@add_options(MODEL_OPTIONS, into="model_options")
@add_options(SEARCH_OPTIONS, into="search_options")
def ask(
    question: str = typer.Argument(..., help="The question; '-' reads it from stdin."),
    kb: str = KB,
    store: Optional[str] = STORE,
    k: int = typer.Option(4, "--k", "-k", min=1, help="Chunks given to the model."),
    min_similarity: Optional[float] = typer.Option(
        None, "--min-similarity", help="Chunks less similar (cosine) are not used \\[default: 0.25]."
    ),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", "-n", min=1, help="Most tokens in the answer."),
    model_options: dict[str, Any] = None,
    search_options: dict[str, Any] = None,
) -> None:
    """Answer QUESTION from the knowledge base, streaming the answer, then list the sources it rests on."""
    from llmkit.cli.model_loading import build_llm
    from llmkit.rag.answer import NOT_FOUND, build_messages, cited_numbers, relevant_hits, supporting_numbers

    question = sys.stdin.read().strip() if question == "-" else question
    hits = _search(_open(kb, store), question, k, search_options)
    hits = relevant_hits(hits) if min_similarity is None else relevant_hits(hits, min_similarity)
    if not hits:
        console.print(NOT_FOUND)
        return
    llm = build_llm(model_options, max_batch_size=1)
    answer = ""
    for delta in llm.stream_chat(build_messages(question, hits), max_new_tokens=max_new_tokens):
        answer += delta
        console.print(delta, end="", markup=False)
    console.print()
    cited = cited_numbers(answer, len(hits))
    heading = "Sources" if cited else "Sources (the answer cites none; these hold its words)"
    numbers = cited or supporting_numbers(answer, hits)
    if numbers:
        console.print(f"\n[bold]{heading}:[/]")
        for number in numbers:
            console.print(f"[{number}] {escape(_label(hits[number - 1]))}", markup=True)


@app.command("eval")
@add_options(MODEL_OPTIONS, into="model_options")
@add_options(SEARCH_OPTIONS, into="search_options")
def evaluate(
    qa: Path = typer.Option(..., "--qa", help="JSONL: question + answers (or answer) and/or reference passages."),
    kb: str = KB,
    store: Optional[str] = STORE,
    k: int = typer.Option(5, "--k", "-k", min=1, help="Chunks retrieved per question."),
    answer: bool = typer.Option(
        False, "--answer", help="Also answer each question: SQuAD exact match and F1, and faithfulness."
    ),
    judge: Optional[str] = typer.Option(
        None, "--judge", help="A chat model that checks each claim of the answers against the chunks (with --answer)."
    ),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", "-n", min=1, help="Most tokens in each answer."),
    out: Path = typer.Option(Path("eval/rag"), "--out", "-o", help="Output folder; a re-run of the same run resumes."),
    model_options: dict[str, Any] = None,
    search_options: dict[str, Any] = None,
) -> None:
    """Retrieval hit@k, recall@k and MRR on a question set, and (with --answer) the answers' scores."""
    from llmkit.cli.model_loading import build_llm
    from llmkit.errors import InvalidRequestError
    from llmkit.eval.runs import EvalRun
    from llmkit.rag import evaluate as rag_eval
    from llmkit.rag.knowledge_base import check_search_settings

    if judge and not answer:
        raise InvalidRequestError("--judge scores the answers' faithfulness: add --answer")
    check_search_settings(k, search_options["mode"], search_options["mmr"], search_options["candidates"])
    questions = rag_eval.read_questions(qa)
    knowledge_base = _open(kb, store)
    answerer = judge_fn = None
    if answer:
        llm = build_llm(model_options, max_batch_size=1)
        answerer = lambda messages: "".join(  # noqa: E731
            llm.stream_chat(messages, max_new_tokens=max_new_tokens, temperature=0)
        )
    if judge:
        judge_options = {**model_options, "model": judge, "adapter": None, "chat_template": None}
        judge_llm = build_llm(judge_options, max_batch_size=1)
        judge_fn = lambda messages: "".join(  # noqa: E731
            judge_llm.stream_chat(messages, max_new_tokens=4, temperature=0)
        )
    settings = dict(
        kb=kb,
        store=knowledge_base.store.location,
        qa=str(qa.resolve()),
        k=k,
        **{name: _setting(value) for name, value in search_options.items()},
        answer=answer,
        model=model_options["model"] if answer else None,
        max_new_tokens=max_new_tokens if answer else None,
        judge=judge,
    )
    run = EvalRun(out, settings)  # refuses a folder holding another run's results before any work
    with Progress(
        TextColumn("[bold]questions"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=len(questions))
        result = rag_eval.evaluate(
            knowledge_base,
            questions,
            run,
            k=k,
            answerer=answerer,
            judge=judge_fn,
            progress=lambda done, total: bar.update(task, completed=done),
            **_search_arguments(search_options),
        )
    mode = search_options["mode"]
    table = Table("metric", "value", title=f"{kb}: {len(questions)} questions, {mode} search")
    for name, means in result.report.summary.items():
        table.add_row(name, f"{means[kb]:.3f}")
    console.print(table)
    console.print(f"report: {result.files['markdown']} · {result.files['html']}")


@app.command("delete")
def delete(kb: str = KB, store: Optional[str] = STORE) -> None:
    """Delete a knowledge base and everything in it."""
    from llmkit.rag.stores import open_store

    target = open_store(kb, store)
    location = target.location
    target.destroy()
    console.print(f"deleted knowledge base {kb} ({location})")


def _open(kb: str, store: str | None) -> KnowledgeBase:
    from llmkit.cli.model_loading import quiet_transformers
    from llmkit.rag.knowledge_base import KnowledgeBase

    quiet_transformers()
    return KnowledgeBase.open(kb, store)


def _search(knowledge_base: KnowledgeBase, query: str, k: int, options: dict[str, Any]) -> list[Hit]:
    """`query` searched with the `SEARCH_OPTIONS` values."""
    return knowledge_base.search(query, k=k, **_search_arguments(options))


def _search_arguments(options: dict[str, Any]) -> dict[str, Any]:
    """The `SEARCH_OPTIONS` values as `KnowledgeBase.search` takes them: dates as filters, the reranker loaded."""
    from llmkit.rag.ranking import CrossEncoderReranker
    from llmkit.rag.store import Filters

    after, before = (options[key] and options[key].date().isoformat() for key in ("after", "before"))
    return dict(
        mode=options["mode"],
        filters=Filters(tuple(options["sources"] or ()), after, before),
        mmr=options["mmr"],
        reranker=CrossEncoderReranker(options["rerank"]) if options["rerank"] else None,
        candidates=options["candidates"],
    )


def _setting(value: Any) -> Any:
    """A search option as run.json records it (dates as text)."""
    return value.date().isoformat() if isinstance(value, dt.datetime) else value


def _label(hit: Hit) -> str:
    """Where a hit comes from, its path relative to the working folder when it lies inside it."""
    from llmkit.rag.answer import source_label

    label = source_label(hit.chunk)
    cwd = str(Path.cwd()) + "/"
    return label.removeprefix(cwd)
