"""`llmkit eval`: score models on held-out data and write reports to read and share."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from llmkit.cli.console import console, err_console
from llmkit.cli.options import MODEL_OPTIONS, add_options
from llmkit.eval.harness_scores import RESULT_HEADER, result_rows
from llmkit.eval.perplexity import DEFAULT_STRIDE, DEFAULT_WINDOW
from llmkit.eval.report import summary_header, summary_rows
from llmkit.eval.runs import EvalError

if TYPE_CHECKING:
    from llmkit.api import LLM
    from llmkit.eval.compare import AnswerProgress
    from llmkit.eval.runs import Evaluation

app = typer.Typer(help="Evaluate models on held-out data.", no_args_is_help=True)

# lm-evaluation-harness's names work as they are (--num_fewshot, --include_path, --limit, -t, -f, -L).
NUM_FEWSHOT = typer.Option(
    0, "--num-fewshot", "--num_fewshot", "-f", min=0, help="Worked examples before each question, from NAME.dev.jsonl."
)
LIMIT = typer.Option(
    None, "--limit", "-L", help="Score only the first N questions (of each task), or a fraction of them below 1."
)
INCLUDE_PATH = typer.Option(
    [], "--include-path", "--include_path", help="A folder of NAME.jsonl task files (repeatable)."
)


@app.command("compare")
def compare(
    base: str = typer.Option("default", "--base", help="The model to compare against: name, path or hub id."),
    tuned: str = typer.Option(..., "--tuned", help="The fine-tuned model: a llmkit train output dir, path or name."),
    data: str = typer.Option(..., "--data", help="Held-out data: a file or folder, or a registered dataset name."),
    dataset_dir: Path = typer.Option(Path("."), "--dataset-dir", help="Folder of datasets.yaml or dataset_info.json."),
    metric: list[str] = typer.Option(
        ["exact", "rouge_l"], "--metric", help="exact, rouge_l, bleu, f1, package.module:function or file.py:function."
    ),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", "-n", min=1, help="Most tokens per answer."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", min=1, help="Use the first N usable records."),
    out: Path = typer.Option(Path("eval/compare"), "--out", "-o", help="Output folder; a re-run resumes in it."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Answer held-out prompts greedily with BASE and TUNED, score both, write report.md and report.html."""
    from llmkit.cli.model_loading import build_llm
    from llmkit.eval.compare import compare as run_compare

    def load(model: str) -> LLM:
        options = dict(model=model, dtype=dtype, device=device, max_seq_len=2048, chat_template=None, backend="auto", quantize=None)
        return build_llm(options)

    with answer_progress() as progress:
        result = run_compare(
            base,
            tuned,
            data,
            out,
            dataset_dir=dataset_dir,
            metrics=metric,
            max_new_tokens=max_new_tokens,
            max_samples=max_samples,
            load_model=load,
            progress=progress,
        )
    for skipped in result.skipped[:20]:
        err_console.print(f"[yellow]skipped[/] {escape(str(skipped))}")
    if len(result.skipped) > 20:
        err_console.print(f"[yellow]… and {len(result.skipped) - 20} more skipped records[/]")
    print_table(summary_header(result.report), summary_rows(result.report), f"{len(result.report.samples)} records")
    console.print("new answers: " + ", ".join(f"{role} {count}" for role, count in result.generated.items()))
    console.print(f"report: {result.files['markdown']} · {result.files['html']}", markup=False)


@app.command("ppl")
@add_options(MODEL_OPTIONS, into="model_options")
def ppl(
    data: Path = typer.Option(..., "--data", help="JSONL file, one document per line."),
    field: str = typer.Option("text", "--field", help="The key of each record that holds its text."),
    window: int = typer.Option(DEFAULT_WINDOW, "--window", help="Tokens per forward pass (context + scored)."),
    stride: int = typer.Option(DEFAULT_STRIDE, "--stride", help="Tokens the window advances by (< --window)."),
    out: Path = typer.Option(Path("eval/ppl"), "--out", "-o", help="Output folder; a re-run resumes in it."),
    model_options: dict[str, Any] = None,
) -> None:
    """Perplexity of a model on documents, with a sliding window; per document and over the corpus."""
    from llmkit.eval.perplexity import perplexity

    run_evaluation(
        perplexity, model_options, "documents", data=data, out=out, field=field, window=window, stride=stride
    )


@app.command("mc")
@add_options(MODEL_OPTIONS, into="model_options")
def mc(
    data: Path = typer.Option(..., "--data", help="JSONL: MMLU / C-Eval style questions or ShopBench records."),
    num_fewshot: int = NUM_FEWSHOT,
    fewshot_data: Optional[Path] = typer.Option(
        None, "--fewshot-data", help="JSONL of worked examples for --num-fewshot; default NAME.dev.jsonl beside --data."
    ),
    limit: Optional[float] = LIMIT,
    out: Path = typer.Option(Path("eval/mc"), "--out", "-o", help="Output folder; a re-run resumes in it."),
    model_options: dict[str, Any] = None,
) -> None:
    """Multiple-choice acc and acc_norm with standard errors, by log-likelihood as lm-evaluation-harness scores MMLU."""
    from llmkit.eval.multiple_choice import multiple_choice

    _refuse_chat_template(model_options)
    settings = {"data": data, "out": out, "num_fewshot": num_fewshot, "fewshot": fewshot_data, "limit": limit}
    run_evaluation(multiple_choice, model_options, "questions", **settings)


@app.command("run")
@add_options(MODEL_OPTIONS, into="model_options")
def run(
    tasks: list[str] = typer.Option(
        ..., "--tasks", "-t", help="Task names or patterns such as 'mmlu_*', comma-separated or repeated."
    ),
    include_path: list[Path] = INCLUDE_PATH,
    num_fewshot: int = NUM_FEWSHOT,
    limit: Optional[float] = LIMIT,
    out: Path = typer.Option(Path("eval/run"), "--out", "-o", help="Output folder: one folder per task, results.json."),
    model_options: dict[str, Any] = None,
) -> None:
    """Score a model on tasks by name, as `lm_eval --tasks`; writes lm-eval's results.json for all of them."""
    from llmkit.eval.tasks import find_tasks, run_tasks, select_tasks

    _refuse_chat_template(model_options)
    chosen = select_tasks(tasks, find_tasks(include_path))
    load, loading = _loader(model_options)
    with answer_progress("questions") as progress:
        result = run_tasks(
            model_options["model"],
            chosen,
            out,
            num_fewshot=num_fewshot,
            limit=limit,
            load_model=load,
            loading=loading,
            progress=progress,
        )
    for task, evaluation in result.evaluations.items():
        for note in evaluation.report.notes:
            err_console.print(f"[yellow]{escape(task)}: {escape(note)}[/]")
    print_table(RESULT_HEADER, result_rows(result.results), f"{model_options['model']} · lm-eval results")
    counts = (f"{task} {e.evaluated} of {len(e.report.samples)}" for task, e in result.evaluations.items())
    console.print("newly evaluated: " + ", ".join(counts))
    console.print(f"results: {result.path} · reports: {out}/TASK/report.html", markup=False)


@app.command("tasks")
def tasks(include_path: list[Path] = INCLUDE_PATH) -> None:
    """List the tasks `llmkit eval run --tasks` knows: the built-in ones and those of --include-path folders."""
    from llmkit.eval.questions import dev_file
    from llmkit.eval.tasks import find_tasks

    found = find_tasks(include_path)
    rows = [[name, str(data), str(dev_file(data)) if dev_file(data).is_file() else "-"] for name, data in found.items()]
    print_table(["task", "questions", "worked examples"], rows, f"{len(rows)} tasks")


@app.command("gen")
@add_options(MODEL_OPTIONS, into="model_options")
def gen(
    data: Path = typer.Option(..., "--data", help="JSONL: prompt and reference records, or ShopBench records."),
    metric: list[str] = typer.Option(
        ["exact", "f1"], "--metric", help="exact, rouge_l, bleu, f1, package.module:function or file.py:function."
    ),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", "-n", min=1, help="Most tokens per answer."),
    base_url: str | None = typer.Option(
        None, "--base-url", help="An OpenAI-compatible server (API root, e.g. http://host:8000/v1) that serves --model."
    ),
    api_key: str | None = typer.Option(None, "--api-key", envvar="OPENAI_API_KEY", help="The server's API key."),
    out: Path = typer.Option(Path("eval/gen"), "--out", "-o", help="Output folder; a re-run resumes in it."),
    model_options: dict[str, Any] = None,
) -> None:
    """Answer prompts greedily (a model loaded here or on a server) and score the answers against references."""
    from llmkit.eval.generation import generation

    settings = {"metrics": metric, "max_new_tokens": max_new_tokens, "base_url": base_url, "api_key": api_key}
    run_evaluation(generation, model_options, "answers", batch=8, data=data, out=out, **settings)


def run_evaluation(
    evaluate: Callable[..., Evaluation], model_options: dict[str, Any], noun: str, batch: int = 1, **settings: Any
) -> None:
    """Run an evaluation function on the model the options name (loaded with engine rows for `batch` requests)
    with a progress bar counting `noun`, then print what it found."""
    model = model_options["model"]
    load, loading = _loader(model_options, batch)
    with answer_progress(noun) as progress:
        result = evaluate(model, load_model=load, loading=loading, progress=partial(progress, model), **settings)
    show(result)


def show(result: Evaluation) -> None:
    """Print an evaluation: its notes, summary (lm-eval's table where it has one) and breakdown tables, what it did
    now, where the reports are."""
    report = result.report
    for note in report.notes:
        err_console.print(f"[yellow]{escape(note)}[/]")
    if result.harness:
        print_table(RESULT_HEADER, result_rows(result.harness), f"{len(report.samples)} records")
    else:
        print_table(summary_header(report), summary_rows(report), f"{len(report.samples)} records")
    for table in report.tables:
        print_table(table.header, table.rows, table.title)
    console.print(f"newly evaluated: {result.evaluated} of {len(report.samples)}")
    console.print(f"report: {result.files['markdown']} · {result.files['html']}", markup=False)
    if "harness" in result.files:
        console.print(f"results (lm-eval's shape): {result.files['harness']}", markup=False)


def print_table(header: list[str], rows: list[list[str]], title: str) -> None:
    """A rich table of text cells (escaped: they may hold model output)."""
    table = Table(*header, title=title)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)


def _loader(model_options: dict[str, Any], batch: int = 1) -> tuple[Callable[[str], LLM], dict[str, Any]]:
    """How the library loads a model with the command's options (engine rows for `batch` requests), and those
    options as plain JSON: how the model is loaded is part of a run, so a re-run with another adapter or dtype
    does not reuse its rows."""
    loading = json.loads(json.dumps({k: v for k, v in model_options.items() if k != "model"}, default=str))
    return partial(_load, model_options, batch), loading


def _refuse_chat_template(model_options: dict[str, Any]) -> None:
    """Multiple-choice prompts are plain text (lm-eval's default): a chat template given for them would be unused."""
    if model_options.get("chat_template"):
        raise EvalError(
            "--chat-template does not apply to eval mc / eval run: their prompts are plain text, as lm-eval's "
            "without --apply_chat_template; leave it out"
        )


def _load(model_options: dict[str, Any], max_batch_size: int, model: str) -> LLM:
    """`build_llm` with the command's model options, for `model` (the library names the model it loads)."""
    from llmkit.cli.model_loading import build_llm

    return build_llm({**model_options, "model": model}, max_batch_size)


@contextmanager
def answer_progress(noun: str = "answers") -> Iterator[AnswerProgress]:
    """A progress bar per model, fed by a (role, done, total) callback such as `compare`'s ("base answers");
    each stops when done, so the next model's loading spinner has the terminal to itself."""
    bars: dict[str, tuple[Progress, TaskID]] = {}

    def update(role: str, done: int, total: int) -> None:
        if role not in bars:
            bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=err_console,
            )
            bar.start()
            bars[role] = bar, bar.add_task(f"{role} {noun}", total=total)
        bar, task = bars[role]
        bar.update(task, completed=done)
        if done == total:
            bar.stop()

    try:
        yield update
    finally:
        for bar, _ in bars.values():
            bar.stop()
