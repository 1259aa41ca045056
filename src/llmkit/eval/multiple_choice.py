"""Multiple-choice questions scored by log-likelihood, as lm-evaluation-harness scores MMLU-style tasks.

The model reads the prompt (description, worked examples, question up to "Answer:"); each choice is scored as its
continuation (" A"), the sum of its tokens' log-probabilities. `acc` takes the likeliest choice, `acc_norm` the
likeliest per character of the choice, both as lm-eval computes them (`llmkit.eval.harness_scores`). Nothing is
generated, so the scores are exact and need no parsing. Records and prompts: `llmkit.eval.questions`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from llmkit.eval.harness_scores import (
    METRICS,
    aggregate,
    merge_results,
    predictions,
    run_config,
    sample_size,
    task_results,
)
from llmkit.eval.questions import (
    FEWSHOT_DELIMITER,
    PROMPT_VERSION,
    TARGET_DELIMITER,
    Question,
    dev_file,
    to_question,
    worked_example,
)
from llmkit.eval.report import Report, Sample, Table
from llmkit.eval.runs import EvalError, EvalRun, Evaluation, Progress, load_items, load_llm

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from llmkit.api import LLM


class ContinuationLogprobs(Protocol):
    """Log-probability of each token of `ids` from `start` on, given the ones before it (`LLM.prompt_logprobs`)."""

    def __call__(self, ids: list[int], *, start: int) -> list[float]: ...


def fewshot_context(question: Question, examples: Sequence[Question], num_fewshot: int, *, source: str) -> str:
    """The prompt of a question: its description, the first `num_fewshot` worked examples of its subject (lm-eval's
    `first_n` sampler; the question itself excluded when the examples come from its own file), the question."""
    shots = [e for e in examples if e.subject == question.subject and e is not question][:num_fewshot]
    if len(shots) < num_fewshot:
        raise EvalError(
            f"--num-fewshot {num_fewshot}: {source} has {len(shots)} worked example(s) of subject "
            f"{question.subject!r}: lower --num-fewshot or add examples"
        )
    return question.description + "".join(worked_example(shot) for shot in shots) + question.text


def option_logprobs(
    tokenizer: PreTrainedTokenizerBase, logprobs: ContinuationLogprobs, context: str, continuations: Sequence[str]
) -> list[float]:
    """The log-likelihood of each continuation after `context`, tokenised as lm-eval's `_encode_pair`: the context's
    trailing whitespace moves to the continuation, and the continuation's tokens are those the whole text has
    beyond the context's. `logprobs(ids, start=n)` scores tokens n.. only, so a backend with a prefix cache
    computes the shared context once.
    """
    stripped = context.rstrip()
    context_length = len(tokenizer.encode(stripped))
    scores = []
    for continuation in continuations:
        ids = tokenizer.encode(context + continuation)
        if len(ids) <= context_length:
            raise EvalError(f"choice {continuation!r} adds no tokens to the prompt")
        scores.append(sum(logprobs(ids, start=context_length)))
    return scores


@dataclass(frozen=True)
class Task:
    """A multiple-choice task ready to score: its questions (the first `limit` of the file's) and their prompts."""

    name: str
    data: Path
    questions: list[Question]
    total: int  # questions in the file, before --limit
    notes: list[str]  # the records of other tasks that were skipped
    prompts: dict[int, str]  # by question index: description, worked examples, question
    num_fewshot: int
    fewshot: Path | None
    limit: float | None


def load_task(
    data: Path,
    *,
    name: str | None = None,
    num_fewshot: int = 0,
    fewshot: Path | None = None,
    limit: float | None = None,
) -> Task:
    """The questions of `data` (JSONL) and their prompts after `num_fewshot` worked examples from `fewshot`
    (default: NAME.dev.jsonl beside it); read before any model loads, so mistakes in them cost nothing."""
    questions, notes = load_items(data, to_question)
    kept = questions[: sample_size(len(questions), limit)]
    if fewshot and not num_fewshot:
        raise EvalError(f"--fewshot-data {fewshot} is used only with --num-fewshot K: give K, or leave the file out")
    examples: list[Question] = []
    if num_fewshot:
        if fewshot is None:
            fewshot = dev_file(data)
            if not fewshot.is_file():
                raise EvalError(
                    f"--num-fewshot {num_fewshot} needs worked examples: put them in {fewshot} "
                    "(NAME.dev.jsonl beside NAME.jsonl), or name another file with --fewshot-data"
                )
        # lm-eval's rule when the few-shot split is the test split: a question is never its own example.
        examples = questions if fewshot.resolve() == data.resolve() else load_items(fewshot, to_question)[0]
    prompts = {q.index: fewshot_context(q, examples, num_fewshot, source=str(fewshot)) for q in kept}
    name = name or data.name.removesuffix(".jsonl")
    return Task(name, data, kept, len(questions), notes, prompts, num_fewshot, fewshot, limit)


def multiple_choice(
    model: str,
    data: Path,
    out: Path,
    *,
    num_fewshot: int = 0,
    fewshot: Path | None = None,
    limit: float | None = None,
    load_model: Callable[[str], LLM] = load_llm,
    loading: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """`score_task` on the task of one data file (see `load_task`)."""
    task = load_task(data, num_fewshot=num_fewshot, fewshot=fewshot, limit=limit)
    return score_task(model, task, out, load_model=load_model, loading=loading, progress=progress)


def score_task(
    model: str,
    task: Task,
    out: Path,
    *,
    load_model: Callable[[str], LLM] = load_llm,
    loading: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Answer a task's questions by log-likelihood with `model`; write results.jsonl, scores.json, results.json
    (lm-eval's shape), report.md and report.html into `out`, resuming the questions a previous run there scored."""
    loading = loading or {}
    settings = {"model": model, "loading": loading, "data": str(task.data.resolve())}
    settings |= {"prompt_version": PROMPT_VERSION, "num_fewshot": task.num_fewshot}
    settings |= {"fewshot": str(task.fewshot.resolve()) if task.fewshot else None}
    run = EvalRun(out, settings)
    questions = task.questions
    pending = run.pending(questions)
    if pending:
        llm = load_model(model)

        def evaluate(batch: list[Question]) -> list[dict]:
            return [{"logprobs": _scored_choices(llm, task.prompts[q.index], q, task.data)} for q in batch]

        run.complete(pending, evaluate, progress=progress)
    picks = [predictions(run.rows[q.index]["logprobs"], q.choices) for q in questions]
    correct = [{m: float(pick[m] == q.answer) for m in METRICS} for q, pick in zip(questions, picks)]
    subjects = _by_subject(questions, correct)
    summary = {metric: {model: float(subjects["overall"][metric])} for metric in METRICS}
    samples = [Sample(q.index, _texts(q, pick), {model: c}) for q, pick, c in zip(questions, picks, correct)]
    details = {"model": model, "data": str(task.data), "questions": str(len(questions))}
    details["num_fewshot"] = str(task.num_fewshot)
    columns = [f"{metric}{part}" for metric in METRICS for part in ("", "_stderr")]
    rows = [[subject, str(s["questions"]), *(_cell(s[c]) for c in columns)] for subject, s in subjects.items()]
    table = Table("By subject", ["subject", "questions", *columns], rows)
    report = Report("Multiple choice", [model], summary, samples, details, task.notes, [table])
    scores = {"questions": len(questions), "skipped": task.notes, "summary": summary, "subjects": subjects}
    scores["rows"] = [
        {**run.rows[q.index], "answer": q.answer, "chosen": pick["acc"], "chosen_norm": pick["acc_norm"]}
        for q, pick in zip(questions, picks)
    ]
    overall = {key: value for key, value in subjects["overall"].items() if key != "questions"}
    part = task_results(
        task.name, overall, count=len(questions), total=task.total, num_fewshot=task.num_fewshot, config=_config(task)
    )
    harness = merge_results([part], run_config(model, loading, task.limit))
    return run.finish(report, scores, len(pending), harness=harness)


def _config(task: Task) -> dict[str, Any]:
    """The task's entry under "configs", in lm-eval's task-config keys."""
    return {
        "task": task.name,
        "dataset_path": str(task.data),
        "fewshot_path": str(task.fewshot) if task.fewshot else None,
        "output_type": "multiple_choice",
        "num_fewshot": task.num_fewshot,
        "fewshot_config": {"sampler": "first_n"},
        "target_delimiter": TARGET_DELIMITER,
        "fewshot_delimiter": FEWSHOT_DELIMITER,
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in METRICS],
        "metadata": {"version": PROMPT_VERSION},
    }


def _scored_choices(llm: LLM, context: str, question: Question, data: Path) -> list[float]:
    """`option_logprobs` of one question's choices by the model, refusing a text longer than the model's context."""

    def logprobs(ids: list[int], start: int = 0) -> list[float]:
        if len(ids) > llm.engine.max_seq_len:
            raise EvalError(
                f"{data} line {question.index}: prompt and choice take {len(ids)} tokens, over the model's context "
                f"of {llm.engine.max_seq_len}: raise --max-seq-len or lower --num-fewshot"
            )
        return llm.prompt_logprobs(ids, start=start)

    continuations = [TARGET_DELIMITER + choice for choice in question.choices]
    return option_logprobs(llm.tokenizer, logprobs, context, continuations)


def _by_subject(questions: Sequence[Question], correct: Sequence[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Question count, and each metric's mean and standard error per subject, subjects sorted, then "overall"."""
    groups: dict[str, list[dict[str, float]]] = {}
    for question, scores in zip(questions, correct):
        groups.setdefault(question.subject, []).append(scores)
    groups = dict(sorted(groups.items())) | {"overall": list(correct)}
    return {subject: {"questions": len(group), **aggregate(group)} for subject, group in groups.items()}


def _texts(question: Question, pick: dict[str, int]) -> dict[str, str]:
    return {
        "subject": question.subject,
        "question": question.text,
        "answer": _shown(question, question.answer),
        "chosen": _shown(question, pick["acc"]),
        "chosen (per character)": _shown(question, pick["acc_norm"]),
    }


def _shown(question: Question, choice: int) -> str:
    """A choice as people read it: "B. Paris" for a letter, the option itself when the option is the choice."""
    letter, option = question.choices[choice], question.options[choice]
    return option if letter == option else f"{letter}. {option}"


def _cell(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.3f}"
