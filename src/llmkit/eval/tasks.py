"""Evaluation tasks by name, as lm-evaluation-harness takes `--tasks` and `--include_path`.

Every JSONL file of multiple-choice questions in llmkit's own task folder or in an include path (searched
recursively) is a task named after the file: `mmlu_anatomy.jsonl` is `mmlu_anatomy`, and `mmlu_anatomy.dev.jsonl`
beside it holds its worked examples for `--num-fewshot`. Task names take shell-style patterns (`mmlu_*`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.eval.harness_scores import merge_results, run_config
from llmkit.eval.multiple_choice import load_task, score_task
from llmkit.eval.questions import DEV_SUFFIX
from llmkit.eval.runs import EvalError, Evaluation, load_llm, write_json

if TYPE_CHECKING:
    from llmkit.api import LLM

BUILTIN_TASKS = Path(__file__).parent / "data"  # small demo tasks that run offline out of the box


@dataclass(frozen=True)
class TaskRun:
    """What `run_tasks` did: each task's evaluation, and all their scores in one lm-eval results file."""

    evaluations: dict[str, Evaluation]
    results: dict[str, Any]
    path: Path


def find_tasks(include_paths: Sequence[Path] = ()) -> dict[str, Path]:
    """Every task name and its data file: the built-in tasks, then each include path's (a task there replaces a
    built-in one of the same name); two files of one name in the same folder tree are an error."""
    tasks: dict[str, Path] = {}
    for folder in [BUILTIN_TASKS, *include_paths]:
        if not folder.is_dir():
            raise EvalError(f"--include-path {folder} is not a folder: give a folder of JSONL task files")
        found: dict[str, Path] = {}
        for path in sorted(folder.rglob("*.jsonl")):
            if path.name.endswith(DEV_SUFFIX):
                continue
            name = path.name.removesuffix(".jsonl")
            if name in found:
                raise EvalError(f"two tasks named {name!r}: {found[name]} and {path}; rename one")
            found[name] = path
        tasks |= found
    return dict(sorted(tasks.items()))


def select_tasks(patterns: Sequence[str], tasks: Mapping[str, Path]) -> dict[str, Path]:
    """The tasks whose names match one of `patterns` (names or shell patterns, each maybe a comma-separated list, as
    lm-eval's --tasks), by name; a pattern that matches nothing is an error listing the tasks there are."""
    chosen: set[str] = set()
    for pattern in (p.strip() for given in patterns for p in given.split(",")):
        matched = [name for name in tasks if fnmatchcase(name, pattern)] if pattern else []
        if not matched:
            raise EvalError(
                f"no task matches {pattern!r}; the tasks are {', '.join(tasks)} "
                "(add your own: --include-path DIR, a folder of NAME.jsonl files)"
            )
        chosen.update(matched)
    return {name: tasks[name] for name in sorted(chosen)}


def run_tasks(
    model: str,
    tasks: Mapping[str, Path],
    out: Path,
    *,
    num_fewshot: int = 0,
    limit: float | None = None,
    load_model: Callable[[str], LLM] = load_llm,
    loading: dict[str, Any] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> TaskRun:
    """Score `model` on each task (into out/TASK, which a re-run resumes), every task read before the model loads
    and the model loaded once at most; out/results.json holds all their scores, as lm-eval writes a run of tasks."""
    prepared = [load_task(data, name=name, num_fewshot=num_fewshot, limit=limit) for name, data in tasks.items()]
    load_once = functools.cache(load_model)  # loaded by the first task with questions left, shared by the rest
    evaluations = {
        task.name: score_task(
            model,
            task,
            out / task.name,
            load_model=load_once,
            loading=loading,
            progress=functools.partial(progress, task.name) if progress else None,
        )
        for task in prepared
    }
    parts = (e.harness for e in evaluations.values() if e.harness)
    results = merge_results(parts, run_config(model, loading or {}, limit))
    return TaskRun(evaluations, results, write_json(out / "results.json", results))
