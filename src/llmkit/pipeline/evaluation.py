"""Score a run's output against the records' reference field, task by task, with each task's metric."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.jsonl import read_jsonl
from llmkit.pipeline.config import PipelineConfig
from llmkit.pipeline.metrics import mean


@dataclass(frozen=True)
class TaskScore:
    """One row of the table: a task, its metric, how many records it scored, and the score."""

    task: str
    metric: str
    records: int
    score: float


@dataclass(frozen=True)
class EvalReport:
    """The per-task scores (in the pipeline's task order), their mean, and the records left out, by reason."""

    tasks: list[TaskScore]
    unscored: Counter[str]

    @property
    def overall(self) -> float:
        """The mean of the task scores (ShopBench's track score): each task counts once, whatever its size."""
        return mean([row.score for row in self.tasks])


def evaluate(config: PipelineConfig, output: Path) -> EvalReport:
    """Score every prediction in `output` (this run's and earlier runs') against its `reference_field`."""
    scores: dict[str, list[Any]] = defaultdict(list)
    unscored: Counter[str] = Counter()
    for line in read_jsonl(output):
        task = config.task(line.get("_task"))
        if task is None:
            unscored[f"task {line.get('_task')!r} is not in the pipeline"] += 1
        elif task.metric is None:
            unscored[f"task {task.name!r} has no metric"] += 1
        elif config.reference_field not in line:
            unscored[f"no {config.reference_field!r} field"] += 1
        else:
            scores[task.name].append(task.metric.score(line.get(config.prediction_field), line[config.reference_field]))
    rows = [
        TaskScore(task.name, task.metric.name, len(scores[task.name]), task.metric.combine(scores[task.name]))
        for task in config.tasks if scores.get(task.name)
    ]
    return EvalReport(rows, unscored)
