"""Multiple-choice questions scored by log-likelihood, as lm-evaluation-harness scores MMLU-style tasks.

The model reads the prompt; each option is scored as its continuation, the sum of its tokens' log-probabilities,
and the likeliest option is the model's answer. A second accuracy divides each sum by the option's token count, so a
long option is not penalised for its length. Nothing is generated, so the scores are exact and need no parsing.

Records: MMLU / C-Eval style (`question`; options as a `choices` list or `A`, `B`, … keys; `answer` as a letter or
an index; optional `subject`), or ShopBench's (`input_field` lists the options as lines "0. …" and ends with
"Answer: ", `output_field` is the index, `task_name` the subject; its other task types are skipped).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from llmkit.eval.report import Report, Sample, Table
from llmkit.eval.runs import EvalError, EvalRun, Evaluation, OtherTask, Progress, load_items, load_llm, text_field

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from llmkit.api import LLM


class ContinuationLogprobs(Protocol):
    """Log-probability of each token of `ids` from `start` on, given the ones before it (`LLM.prompt_logprobs`)."""

    def __call__(self, ids: list[int], *, start: int) -> list[float]: ...


METRICS = ("accuracy", "accuracy_norm")
_LISTED_OPTION = re.compile(r"(\d+)\.\s+(\S.*)")


@dataclass(frozen=True)
class Question:
    """A question as the model sees it: the prompt, the options that may continue it, the right option's index."""

    index: int  # the record's line in the data file
    subject: str
    prompt: str
    options: list[str]
    answer: int


def to_question(index: int, record: dict) -> Question:
    """The question a record holds, in either record style (see the module docstring)."""
    if "is_multiple_choice" in record:
        return _shopbench_question(index, record)
    prompt = f"{text_field(record, 'question').strip()}\nAnswer: "
    options = _record_options(record)
    subject = str(record.get("subject") or "all")
    return Question(index, subject, prompt, options, answer_index(record.get("answer"), len(options), "answer"))


def listed_options(text: str) -> list[str]:
    """The options a prompt lists as consecutive lines "0. …", "1. …", … (the last such list in the text)."""
    found: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        match = _LISTED_OPTION.fullmatch(line.strip())
        if match and int(match[1]) == 0:
            current = [match[2]]
        elif match and current is not None and int(match[1]) == len(current):
            current.append(match[2])
        else:
            current = None
            continue
        if len(current) >= 2:
            found = current
    return list(found)


def answer_index(value: object, count: int, key: str) -> int:
    """The right option's index from a letter ("B") or an index (1), checked against the `count` options."""
    letters = string.ascii_uppercase[:count]
    if isinstance(value, str) and len(value.strip()) == 1 and value.strip().upper() in letters:
        return letters.index(value.strip().upper())
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < count:
        return value
    raise EvalError(f"{key!r} must be a letter A–{letters[-1]} or an index 0–{count - 1} of the options, not {value!r}")


def option_logprobs(
    tokenizer: PreTrainedTokenizerBase, logprobs: ContinuationLogprobs, prompt: str, options: Sequence[str]
) -> list[tuple[float, int]]:
    """(sum of log-probabilities, token count) of each option as the continuation of `prompt`.

    The prompt's trailing whitespace moves to the start of each option ("Answer:", " B"), as word-level tokenizers
    join a space to the word after it; the option's tokens are those the whole text has beyond the prompt's.
    `logprobs(ids, start=n)` scores tokens n.. only, so a backend with a prefix cache computes the prompt once.
    """
    context = prompt.rstrip()
    context_length = len(tokenizer.encode(context))
    scores = []
    for option in options:
        ids = tokenizer.encode(context + prompt[len(context) :] + option)
        if len(ids) <= context_length:
            raise EvalError(f"option {option!r} adds no tokens to the prompt")
        continuation = logprobs(ids, start=context_length)
        scores.append((sum(continuation), len(continuation)))
    return scores


def multiple_choice(
    model: str,
    data: Path,
    out: Path,
    *,
    load_model: Callable[[str], LLM] = load_llm,
    loading: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Answer every question of `data` (JSONL) by log-likelihood with `model`; write results.jsonl, scores.json,
    report.md and report.html into `out`, resuming the questions a previous run there scored."""
    questions, notes = load_items(data, to_question)
    run = EvalRun(out, {"model": model, "loading": loading or {}, "data": str(data.resolve())})
    pending = run.pending(questions)
    if pending:
        llm = load_model(model)

        def evaluate(batch: list[Question]) -> list[dict]:
            scores = [_scored_options(llm, question, data) for question in batch]
            return [{"logprobs": [s for s, _ in pairs], "tokens": [n for _, n in pairs]} for pairs in scores]

        run.complete(pending, evaluate, progress=progress)
    chosen = [_chosen(run.rows[question.index]) for question in questions]
    correct = [{m: float(pick == q.answer) for m, pick in zip(METRICS, picks)} for q, picks in zip(questions, chosen)]
    subjects = _by_subject(questions, correct)
    summary = {metric: {model: subjects["overall"][metric]} for metric in METRICS}
    samples = [
        Sample(q.index, _texts(q, picks), {model: scores}) for q, picks, scores in zip(questions, chosen, correct)
    ]
    details = {"model": model, "data": str(data), "questions": str(len(questions))}
    header = ["subject", "questions", *METRICS]
    rows = [[subject, str(s["questions"]), *(f"{s[m]:.3f}" for m in METRICS)] for subject, s in subjects.items()]
    report = Report("Multiple choice", [model], summary, samples, details, notes, [Table("By subject", header, rows)])
    scores = {"questions": len(questions), "skipped": notes, "summary": summary, "subjects": subjects}
    scores["rows"] = [
        {**run.rows[q.index], "answer": q.answer, "chosen": picks[0], "chosen_norm": picks[1]}
        for q, picks in zip(questions, chosen)
    ]
    return run.finish(report, scores, len(pending))


def _shopbench_question(index: int, record: dict) -> Question:
    if record["is_multiple_choice"] is not True:
        raise OtherTask("that are not multiple-choice (is_multiple_choice false)")
    prompt = text_field(record, "input_field")
    options = listed_options(prompt)
    if not options:
        raise OtherTask("that list no options as lines '0. …', '1. …'")
    return Question(
        index,
        str(record.get("task_name") or "shopbench"),
        prompt,
        options,
        answer_index(record.get("output_field"), len(options), "output_field"),
    )


def _record_options(record: dict) -> list[str]:
    """The options of an MMLU-style record: its `choices` list, else its `A`, `B`, … keys in order."""
    if "choices" in record:
        options = record["choices"]
        if not isinstance(options, list):
            raise EvalError(f"'choices' must be a list of options, not {type(options).__name__}")
    else:
        letters = [letter for letter in string.ascii_uppercase if letter in record]
        if letters != list(string.ascii_uppercase[: len(letters)]):
            raise EvalError(f"option keys must run A, B, C, … without gaps; found {', '.join(letters) or 'none'}")
        options = [record[letter] for letter in letters]
    if len(options) < 2:
        raise EvalError("a question needs at least two options: a 'choices' list or keys 'A', 'B', …")
    if not all(isinstance(option, str) and option.strip() for option in options):
        raise EvalError(f"every option must be non-empty text: {options!r}")
    return options


def _scored_options(llm: LLM, question: Question, data: Path) -> list[tuple[float, int]]:
    """`option_logprobs` of one question by the model, refusing a text longer than the model's context."""

    def logprobs(ids: list[int], start: int = 0) -> list[float]:
        if len(ids) > llm.engine.max_seq_len:
            raise EvalError(
                f"{data} line {question.index}: prompt and option take {len(ids)} tokens, over the model's context "
                f"of {llm.engine.max_seq_len}: raise --max-seq-len"
            )
        return llm.prompt_logprobs(ids, start=start)

    return option_logprobs(llm.tokenizer, logprobs, question.prompt, question.options)


def _chosen(row: dict) -> tuple[int, int]:
    """The option with the highest log-likelihood, and the one with the highest per token."""
    sums, counts = row["logprobs"], row["tokens"]
    by_sum = max(range(len(sums)), key=lambda i: sums[i])
    by_mean = max(range(len(sums)), key=lambda i: sums[i] / counts[i])
    return by_sum, by_mean


def _by_subject(questions: Sequence[Question], correct: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Question count and mean of each metric per subject, subjects sorted, then "overall"."""
    groups: dict[str, list[dict[str, float]]] = {}
    for question, scores in zip(questions, correct):
        groups.setdefault(question.subject, []).append(scores)
    groups = dict(sorted(groups.items())) | {"overall": list(correct)}
    return {
        subject: {"questions": len(group), **{m: _mean(s[m] for s in group) for m in METRICS}}
        for subject, group in groups.items()
    }


def _texts(question: Question, picks: tuple[int, int]) -> dict[str, str]:
    options = question.options
    return {
        "subject": question.subject,
        "prompt": question.prompt,
        "answer": options[question.answer],
        "chosen": options[picks[0]],
        "chosen (per token)": options[picks[1]],
    }


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)
