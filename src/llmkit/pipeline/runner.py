"""Run a pipeline over a file of records: concurrent, saved as each record finishes, resumable, traced.

Each output line is the input record with `_index` (its place in the input), `_task` and the prediction
field added, in the order records finish. A re-run skips the indices already in the output, so a
killed run goes on where it stopped. Every attempt, failed ones included, leaves one trace line:

    {"_index": 7, "task": "ranking", "transformed": {…}, "messages": […], "raw_output": "3, 1, 3, 2",
     "finish_reason": "stop", "tool_calls": […], "postprocess": [{"step": "permutation", "output": [3, 1, 2, 4, 5]}],
     "output": [3, 1, 2, 4, 5], "usage": {"prompt_tokens": 212, "completion_tokens": 9}, "latency_s": 1.92,
     "error": null}

A failed record (no task matches, a template names a missing field, a step or the request fails) is
not written to the output, so the next run tries it again; its trace line says why.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
import openai

from llmkit.jsonl import JsonlAppender, file_path, read_jsonl
from llmkit.pipeline.client import ChatClient, EndpointError, open_client
from llmkit.pipeline.config import PipelineConfig, PipelineError, Task
from llmkit.pipeline.matchers import route
from llmkit.pipeline.postprocess import run_chain
from llmkit.pipeline.steps import StepError
from llmkit.pipeline.tools import Toolset
from llmkit.pipeline.transforms import apply_transforms, render
from llmkit.train.readers import read_rows

Connect = Callable[[], AbstractAsyncContextManager[ChatClient]]


@dataclass(frozen=True)
class RunProgress:
    """Where a run stands: records in the output (earlier runs' included), records failed this run, records wanted."""

    done: int
    failed: int
    total: int


@dataclass
class RunSummary:
    """What a run did: records written and failed, the tasks they went to, files its finalize steps wrote, tokens
    spent, time taken."""

    output: Path
    trace: Path
    total: int
    already_done: int
    model: str | None = None
    done: int = 0
    failed: int = 0
    first_error: str | None = None
    tasks: Counter[str] = field(default_factory=Counter)
    files: list[Path] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class InputRecord:
    """One input record by its place in the file, or why it cannot be used."""

    index: int
    data: dict[str, Any] | None
    error: str | None = None


class RecordError(Exception):
    """A record that cannot run as the pipeline stands (no task takes it, a field is missing)."""


def run_pipeline(
    config: PipelineConfig, input_path: Path, output: Path, *, trace: Path | None = None,
    concurrency: int | None = None, limit: int | None = None, connect: Connect | None = None,
    on_progress: Callable[[RunProgress], None] | None = None,
) -> RunSummary:
    """Add the predictions missing from `output` for the first `limit` records of `input_path`.

    `connect` opens the model client (default: `open_client(config.model)`: a server, or the model in-process).
    """
    records = read_records(input_path, limit)
    finished = finished_indices(output)
    todo = [record for record in records if record.index not in finished]
    trace = file_path(trace or default_trace_path(output))  # refused now, not once the model has loaded
    summary = RunSummary(output, trace, len(records), len(records) - len(todo))
    if todo:
        run = _Run(config, summary, on_progress or (lambda progress: None))
        started = time.monotonic()
        try:
            connect = connect or (lambda: open_client(config.model))
            asyncio.run(run.main(todo, connect, concurrency or config.concurrency))
        finally:
            summary.seconds = time.monotonic() - started
    summary.files = finalize(config, output)
    return summary


def finalize(config: PipelineConfig, output: Path) -> list[Path]:
    """Run the pipeline's finalize steps over the whole output (earlier runs' records too): the files they wrote."""
    if not output.exists():
        return []
    return [Path(path) for step in config.finalize for path in step(output) or ()]


def default_trace_path(output: Path) -> Path:
    """`out.jsonl` → `out.trace.jsonl`, beside it."""
    return output.with_name(output.stem + ".trace.jsonl")


def read_records(path: Path, limit: int | None = None) -> list[InputRecord]:
    """The first `limit` records of a data file (.jsonl, .json, .csv, .parquet or a folder of them)."""
    if not path.exists():
        raise PipelineError(f"input {path} does not exist")
    records = []
    for index, row in enumerate(islice(read_rows(path), limit)):
        if row.error is None and not isinstance(row.data, dict):
            records.append(InputRecord(index, None, f"{row.location}: a {type(row.data).__name__}, not an object"))
        else:
            records.append(InputRecord(index, row.data, row.error and f"{row.location}: {row.error}"))
    return records


def finished_indices(output: Path) -> set[int]:
    """The indices already in `output` (a last line cut off by a crash does not count)."""
    try:
        return {line["_index"] for line in read_jsonl(output)}
    except json.JSONDecodeError as error:
        raise PipelineError(f"output {output}: a line is not JSON ({error}); remove it or choose another "
                            "output") from None
    except (KeyError, TypeError):
        raise PipelineError(f"output {output} has lines without _index, so `llmkit run` did not write it; "
                            "choose another output") from None


async def process_record(
    config: PipelineConfig, client: ChatClient, record: dict[str, Any], toolsets: dict[str, Toolset],
    trace: dict[str, Any],
) -> tuple[Task, Any]:
    """Route one record, ask the model, post-process: the task and the prediction. `trace` is filled as each
    step ends, so when one raises (`RecordError`, `StepError`, `openai.APIError`) it shows the steps before."""
    task = route(config.tasks, record, config.prompt_field)
    if task is None:
        raise RecordError("no task matches the record; add a task without match as the last task")
    trace["task"] = task.name
    prepared = apply_transforms(task.transforms, record)
    trace["transformed"] = {key: value for key, value in prepared.items() if record.get(key, ...) != value}
    trace["messages"] = messages = _messages(task, prepared, config.prompt_field)
    completion = await client.complete(messages, config.sampling_for(task), toolsets[task.name],
                                       max_tool_rounds=task.max_tool_rounds, tool_choice=task.tool_choice)
    trace |= {"raw_output": completion.text, "finish_reason": completion.finish_reason,
              "tool_calls": completion.tool_calls,
              "usage": {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens}}
    prediction, trace["postprocess"] = run_chain(task.postprocess, completion.text, prepared)
    trace["output"] = prediction
    return task, prediction


def _messages(task: Task, record: dict[str, Any], prompt_field: str) -> list[dict[str, str]]:
    """The system message (if the task has one) and the user message: its template, else the prompt as it is."""
    if task.user is not None:
        user = render(task.user, record, "user")
    elif prompt_field in record:
        user = str(record[prompt_field])
    else:
        raise RecordError(f"the record has no field {prompt_field!r}; set prompt_field in the pipeline or give the "
                          f"task a user template (record fields: {', '.join(record) or 'none'})")
    system = [] if task.system is None else [{"role": "system", "content": render(task.system, record, "system")}]
    return [*system, {"role": "user", "content": user}]


class _Run:
    """One run's shared state: the open files and the tallies the summary reports."""

    def __init__(self, config: PipelineConfig, summary: RunSummary, on_progress: Callable[[RunProgress], None]) -> None:
        self.config, self.summary, self.on_progress = config, summary, on_progress

    async def main(self, todo: list[InputRecord], connect: Connect, concurrency: int) -> None:
        """Open the model, then process `todo` with at most `concurrency` records in flight."""
        # No client-wide timeout for HTTP tools: each call is bounded by its own tool's timeout.
        async with connect() as client, httpx.AsyncClient(timeout=None) as tool_http:
            self.summary.model = client.model
            toolsets = {task.name: Toolset(task.tools, tool_http) for task in self.config.tasks}
            with JsonlAppender(self.summary.output) as output, JsonlAppender(self.summary.trace) as trace:
                self._report()
                pending: Iterator[InputRecord] = iter(todo)  # shared: each record goes to exactly one worker

                async def worker() -> None:
                    for record in pending:
                        await self._one(client, record, toolsets, output, trace)

                workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(todo)))]
                try:
                    await asyncio.gather(*workers)
                finally:  # one worker's fatal error stops the others before the files close
                    for task in workers:
                        task.cancel()
                    await asyncio.gather(*workers, return_exceptions=True)

    async def _one(self, client: ChatClient, record: InputRecord, toolsets: dict[str, Toolset],
                   output: JsonlAppender, trace: JsonlAppender) -> None:
        started = time.monotonic()
        fields: dict[str, Any] = {"task": None}
        try:
            if record.error is not None:
                raise RecordError(record.error)
            task, prediction = await process_record(self.config, client, record.data, toolsets, fields)
            error = None
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as failure:
            # Every other record would fail the same way: stop the run (finished records stay saved).
            raise EndpointError(_describe(failure)) from None
        except (RecordError, StepError, openai.APIError) as failure:
            error = _describe(failure)
        fields |= {"latency_s": round(time.monotonic() - started, 3), "error": error}
        trace.write(_jsonable({"_index": record.index, **fields}))
        summary = self.summary
        if error is None:
            output.write(_jsonable({"_index": record.index, "_task": task.name, **record.data,
                                    self.config.prediction_field: prediction}))
            summary.done += 1
            summary.tasks[task.name] += 1
            summary.prompt_tokens += fields["usage"]["prompt_tokens"]
            summary.completion_tokens += fields["usage"]["completion_tokens"]
        else:
            summary.failed += 1
            summary.first_error = summary.first_error or f"record {record.index}: {error}"
        self._report()

    def _report(self) -> None:
        summary = self.summary
        self.on_progress(RunProgress(summary.already_done + summary.done, summary.failed, summary.total))


def _describe(error: Exception) -> str:
    if isinstance(error, openai.APIStatusError):  # the server's own words, from OpenAI's {"error": {"message": …}}
        body = error.body if isinstance(error.body, dict) else {}
        return f"the model server answered HTTP {error.status_code}: {body.get('message') or error.message}"
    if isinstance(error, openai.APITimeoutError):
        return "the model server did not answer in time (model.timeout)"
    if isinstance(error, openai.APIConnectionError):
        return f"lost the connection to the model server ({error.__cause__ or error})"
    return str(error)


def _jsonable(value: Any) -> Any:
    """The value as JSON can hold it: what a user's post-processor returns (a set, a date) becomes text."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))
