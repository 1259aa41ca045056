"""Compare a base and a tuned model on held-out records: both answer every prompt greedily, side by side.

Records are read with the training data readers (alpaca, sharegpt, … as `llmkit train` reads them):
the prompt is every message before the last assistant turn, the reference is that turn. Models load
one at a time; answers are appended to `answers.jsonl` every `CHUNK` records, so an interrupted run
resumes where it stopped. Scores, `scores.json` and the reports are computed from the answers file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmkit.api import LLM
from llmkit.eval.metrics import Metric, resolve_metric
from llmkit.eval.report import Report, Sample, Summary, write_report
from llmkit.eval.runs import ResumeError, claim_run  # noqa: F401 (ResumeError: `compare` raises it, callers import it here)
from llmkit.jsonl import JsonlAppender, read_jsonl
from llmkit.models import render_chat
from llmkit.train.datasets import (
    Conversation,
    DatasetError,
    Skipped,
    load_dataset,
    resolve,
)

ROLES = ("base", "tuned")
CHUNK = 16  # records generated (and saved) at a time per model
RecordScores = dict[str, dict[str, float]]  # role → metric → score
AnswerProgress = Callable[[str, int, int], None]
"""Called as (role, answered, total) once a model starts and after every chunk it answers."""


@dataclass(frozen=True)
class Example:
    """A held-out record as an evaluation sees it: prompt messages, tool schemas, the reference answer.

    `index` is the record's place among the usable records of the data; saved answers are keyed by it.
    """

    index: int
    messages: list[dict]
    reference: str
    tools: list[dict] | None = None


@dataclass(frozen=True)
class Comparison:
    """What `compare` did: how many answers it generated now, the report it wrote, skipped records, its files."""

    generated: dict[str, int]
    report: Report
    skipped: list[Skipped]
    files: dict[str, Path]


def to_example(index: int, conversation: Conversation) -> Example:
    """Split a conversation into the prompt (system prompt included) and its last answer, the reference."""
    system = [{"role": "system", "content": conversation.system}] if conversation.system else []
    tools = json.loads(conversation.tools) if conversation.tools else None
    *prompt, answer = conversation.messages
    return Example(index, system + prompt, answer["content"], tools)


def generate_answers(llm: LLM, examples: Sequence[Example], max_new_tokens: int) -> list[str]:
    """The model's greedy answers to the examples' prompts, batched through its engine."""
    prompts = [render_chat(llm.tokenizer, example.messages, tools=example.tools) for example in examples]
    results = llm.generate(prompts, do_sample=False, max_new_tokens=max_new_tokens)
    return [result.outputs[0].text for result in results]


def read_answers(path: Path) -> dict[tuple[int, str], str]:
    """The answers saved so far, keyed by (record index, role); an interrupted last line is ignored."""
    return {(row["index"], row["role"]): row["answer"] for row in read_jsonl(path)}


def append_answers(path: Path, role: str, examples: Sequence[Example], answers: Sequence[str]) -> None:
    """Add one chunk of answers to the answers file (after any line an interrupted write left unfinished)."""
    with JsonlAppender(path) as out:
        for example, answer in zip(examples, answers):
            out.write({"index": example.index, "role": role, "answer": answer})


def score(
    examples: Sequence[Example], answers: Mapping[tuple[int, str], str], metrics: Mapping[str, Metric]
) -> list[RecordScores]:
    """Per example: role → metric → score of that role's answer against the reference."""
    return [
        {
            role: {name: metric(answers[example.index, role], example.reference) for name, metric in metrics.items()}
            for role in ROLES
        }
        for example in examples
    ]


def summarize(scores: Sequence[RecordScores], metrics: Sequence[str]) -> Summary:
    """Mean score per metric and role over all examples."""
    return {name: {role: sum(s[role][name] for s in scores) / len(scores) for role in ROLES} for name in metrics}


def prompt_text(messages: list[dict]) -> str:
    """A prompt for reading: a lone user turn as it is, a longer conversation as "role: content" blocks."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{message['role']}: {message['content']}" for message in messages)


def compare(
    base: str,
    tuned: str,
    data: str,
    out: Path,
    *,
    dataset_dir: str | Path = ".",
    metrics: Sequence[str] = ("exact", "rouge_l"),
    max_new_tokens: int = 128,
    max_samples: int | None = None,
    load_model: Callable[[str], LLM] = LLM.build,
    progress: AnswerProgress | None = None,
) -> Comparison:
    """Answer the held-out records of `data` with `base` and `tuned` (models as `LLM.build` takes them), score
    both with `metrics`, and write answers.jsonl, scores.json, report.md and report.html into `out`."""
    scorers = {name: resolve_metric(name) for name in metrics}  # a bad metric fails before any model loads
    entry = resolve(data, dataset_dir)
    loaded = load_dataset(entry, "sft", max_samples)
    examples = [to_example(index, record) for index, record in enumerate(loaded.records)]
    if not examples:
        raise DatasetError(f"{data} holds no usable records ({len(loaded.skipped)} skipped)")
    out.mkdir(parents=True, exist_ok=True)
    run = {"base": base, "tuned": tuned, "data": entry.location, "max_new_tokens": max_new_tokens}
    claim_run(out / "run.json", run)

    answers_path = out / "answers.jsonl"
    answers = read_answers(answers_path)
    generated = {}
    for role, model in zip(ROLES, (base, tuned)):
        pending = [example for example in examples if (example.index, role) not in answers]
        answers.update(_answer(role, model, pending, answers_path, max_new_tokens, load_model, progress))
        generated[role] = len(pending)

    scores = score(examples, answers, scorers)
    summary = summarize(scores, list(scorers))
    report = _report(run, examples, answers, scores, summary, loaded.skipped)
    scores_path = out / "scores.json"
    _write_scores(scores_path, run, report, loaded.skipped)
    markdown, page = write_report(report, out)
    files = {"answers": answers_path, "scores": scores_path, "markdown": markdown, "html": page}
    return Comparison(generated, report, loaded.skipped, files)


def _answer(
    role: str,
    model: str,
    pending: list[Example],
    path: Path,
    max_new_tokens: int,
    load_model: Callable[[str], LLM],
    progress: AnswerProgress | None,
) -> dict[tuple[int, str], str]:
    """Load `model` (only if something is pending), answer `pending` chunk by chunk, saving each chunk.

    The model lives only in this call, so it is freed before the next one loads.
    """
    if not pending:
        return {}
    llm = load_model(model)
    answers = {}
    for start in range(0, len(pending), CHUNK):
        if progress:
            progress(role, start, len(pending))
        chunk = pending[start : start + CHUNK]
        texts = generate_answers(llm, chunk, max_new_tokens)
        append_answers(path, role, chunk, texts)
        answers.update({(example.index, role): text for example, text in zip(chunk, texts)})
    if progress:
        progress(role, len(pending), len(pending))
    return answers


def _write_scores(path: Path, run: dict, report: Report, skipped: Sequence[Skipped]) -> None:
    """scores.json: the run's settings, the records skipped, the summary and every record's scores."""
    rows = [{"index": sample.index, "scores": sample.scores} for sample in report.samples]
    result = {**run, "records": len(rows), "skipped": [str(s) for s in skipped], "summary": report.summary}
    path.write_text(json.dumps({**result, "rows": rows}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _report(
    run: dict,
    examples: Sequence[Example],
    answers: Mapping[tuple[int, str], str],
    scores: Sequence[RecordScores],
    summary: Summary,
    skipped: Sequence[Skipped],
) -> Report:
    """The side-by-side report: prompt, reference and both answers per record, with their scores."""
    samples = []
    for example, example_scores in zip(examples, scores):
        texts = {"prompt": prompt_text(example.messages), "reference": example.reference}
        texts.update({role: answers[example.index, role] for role in ROLES})
        samples.append(Sample(example.index, texts, example_scores))
    details = {key.replace("_", " "): str(value) for key, value in run.items()} | {"records": str(len(examples))}
    return Report("Base vs tuned model", list(ROLES), summary, samples, details, [f"skipped {s}" for s in skipped])
