"""Multiple-choice records as the questions a model reads, rendered as lm-evaluation-harness renders MMLU.

Records: MMLU / C-Eval style (`question`; options as a `choices` list or `A`, `B`, … keys; `answer` as a letter or
an index; optional `subject`), or ShopBench's (`input_field` lists the options as lines "0. …" and ends with
"Answer: ", `output_field` is the index, `task_name` the subject; its other task types are skipped).

An MMLU-style question reads as lm-eval's `mmlu` task writes it (`tasks/mmlu/default/_default_template_yaml`):

    The following are multiple choice questions (with answers) about high school geography.   <- description

    What is the capital of France?
    A. Paris
    B. Rome
    Answer:

and its choices are the letters, each scored as the continuation " A", " B". A ShopBench prompt is used as it is
(trailing whitespace moved to the continuation) and its choices are the option texts.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path

from llmkit.eval.runs import EvalError, OtherTask, text_field

PROMPT_VERSION = 1.0  # written as the task's version in results.json; raise it when the rendering changes
TARGET_DELIMITER = " "  # between a question and its answer, as lm-eval's `target_delimiter`
FEWSHOT_DELIMITER = "\n\n"  # after each worked example, as lm-eval's `fewshot_delimiter`
DEV_SUFFIX = ".dev.jsonl"  # NAME.dev.jsonl holds the worked examples (lm-eval's `fewshot_split: dev`) of NAME.jsonl
_LISTED_OPTION = re.compile(r"(\d+)\.\s+(\S.*)")


@dataclass(frozen=True)
class Question:
    """A question as the model sees it: the text up to "Answer:", the choices that may continue it, the right one."""

    index: int  # the record's line in the data file
    subject: str
    description: str  # said once before the worked examples and the question ("" for none)
    text: str  # ends where the answer starts, without trailing whitespace
    choices: list[str]  # each scored as TARGET_DELIMITER + choice after the text
    options: list[str]  # what each choice stands for, for people reading the report
    answer: int


def to_question(index: int, record: dict) -> Question:
    """The question a record holds, in either record style (see the module docstring)."""
    if "is_multiple_choice" in record:
        return _shopbench_question(index, record)
    options = _record_options(record)
    letters = list(string.ascii_uppercase[: len(options)])
    lines = [text_field(record, "question").strip(), *(f"{letter}. {o}" for letter, o in zip(letters, options))]
    subject = record.get("subject")
    if subject is not None and not (isinstance(subject, str) and subject.strip()):
        raise EvalError(f"'subject' must be non-empty text, not {subject!r}")
    answer = answer_index(record.get("answer"), len(options), "answer")
    text = "\n".join(lines) + "\nAnswer:"
    return Question(index, subject or "all", mmlu_description(subject), text, letters, options, answer)


def mmlu_description(subject: str | None) -> str:
    """lm-eval's MMLU description for a subject ("high_school_geography" reads "high school geography"); without
    a subject the same sentence without "about …"."""
    about = f" about {' '.join(subject.split('_'))}" if subject else ""
    return f"The following are multiple choice questions (with answers){about}.{FEWSHOT_DELIMITER}"


def worked_example(question: Question) -> str:
    """A question followed by its right answer, as a few-shot example ("…\\nAnswer: B\\n\\n")."""
    return question.text + TARGET_DELIMITER + question.choices[question.answer] + FEWSHOT_DELIMITER


def dev_file(data: Path) -> Path:
    """Where the worked examples of a data file are looked for: NAME.dev.jsonl beside NAME.jsonl."""
    return data.with_name(data.name.removesuffix(".jsonl") + DEV_SUFFIX)


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


def _shopbench_question(index: int, record: dict) -> Question:
    if record["is_multiple_choice"] is not True:
        raise OtherTask("that are not multiple-choice (is_multiple_choice false)")
    prompt = text_field(record, "input_field")
    options = listed_options(prompt)
    if not options:
        raise OtherTask("that list no options as lines '0. …', '1. …'")
    answer = answer_index(record.get("output_field"), len(options), "output_field")
    subject = str(record.get("task_name") or "shopbench")
    return Question(index, subject, "", prompt.rstrip(), options, options, answer)


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
