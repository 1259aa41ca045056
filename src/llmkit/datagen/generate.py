"""Generate a spec's records through an OpenAI-compatible endpoint: concurrent, retried, saved on arrival, resumable.

Each output line is the model's JSON object plus `_meta`, in the order records finish:

    {"question_zh": "…", …, "_meta": {"index": 7, "seed": 7, "fields": {…}, "model": "default",
                                      "usage": {"prompt_tokens": 212, "completion_tokens": 96}, "attempts": 1}}

`_meta.index` (0 … count-1) is what resuming goes by: a re-run asks only for the indices missing from
the file, and record i always gets seed + i and the fields drawn from it, so nothing is duplicated or
lost. `_meta.fields` lets validation rules compare an answer with the facts it was given. A record that
fails every retry goes to `<stem>.failed.jsonl` (remade each run) with its cause; the next run tries it again.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from llmkit.datagen.fields import draw_fields
from llmkit.datagen.local_server import local_server
from llmkit.datagen.records import META
from llmkit.datagen.spec import GenerateSpec, SpecError
from llmkit.endpoint import EndpointError, check_endpoint
from llmkit.jsonl import JsonlAppender, read_jsonl

BACKOFF_S = 1.0
BACKOFF_CAP_S = 60.0
_sleep = asyncio.sleep  # the one place retries wait; tests replace it to run without waiting


@dataclass(frozen=True)
class GenerationProgress:
    """Where a run stands: records in the output (earlier runs' included), records failed this run, records wanted."""

    done: int
    failed: int
    total: int


@dataclass
class GenerationSummary:
    """What a run did: records written and failed (by cause), retries (by cause), tokens spent, time taken."""

    output: Path
    failed_output: Path
    total: int
    already_done: int
    model: str | None = None
    done: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    first_error: dict[str, str] = field(default_factory=dict)  # cause -> the first message seen, retried or not
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


class AttemptFailure(Exception):
    """One attempt that gave no usable record: why (`cause`), whether another attempt may help, what came back."""

    def __init__(self, cause: str, message: str, *, retry: bool = True, retry_after: float | None = None,
                 output: str | None = None) -> None:
        super().__init__(message)
        self.cause, self.retry, self.retry_after, self.output = cause, retry, retry_after, output


def generate(
    spec: GenerateSpec,
    on_progress: Callable[[GenerationProgress], None] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> GenerationSummary:
    """Add the records missing from `spec.output`, starting a local llmkit server when the spec names no endpoint."""
    finished = finished_indices(spec.output)
    todo = [index for index in range(spec.count) if index not in finished]
    summary = GenerationSummary(spec.output, spec.failed_output, spec.count, already_done=spec.count - len(todo))
    if not todo:
        return summary
    spec.prompt.render(draw_fields(spec.fields, spec.seed + todo[0]))  # a template error now, not once per record
    api_key = _api_key(spec)
    endpoint = nullcontext(spec.endpoint.base_url) if spec.endpoint.base_url else local_server(on_status or _ignore)
    with endpoint as base_url:
        run = _Run(spec, summary, on_progress or _ignore, base_url, api_key)
        started = time.monotonic()
        try:
            asyncio.run(run.main(todo))
        finally:
            run.close()
            summary.seconds = time.monotonic() - started
    return summary


def finished_indices(output: Path) -> set[int]:
    """The indices already in `output` (a last line cut off by a crash does not count)."""
    try:
        return {record[META]["index"] for record in read_jsonl(output)}
    except json.JSONDecodeError as error:
        raise SpecError(f"output {output}: a line is not JSON ({error}); remove it or choose another output") from None
    except (KeyError, TypeError):
        raise SpecError(f"output {output} has lines without _meta.index, so it was not written by "
                        "`llmkit data generate`; choose another output") from None


def parse_record(text: str | None, finish_reason: str | None, schema: Validator | None) -> dict[str, Any]:
    """The JSON object in a model's answer, checked against the schema; else an `AttemptFailure` naming the cause."""
    try:
        record = json.loads(text or "")
    except json.JSONDecodeError as error:
        cause = "truncated" if finish_reason == "length" else "invalid_json"
        raise AttemptFailure(cause, f"{error} (finish_reason {finish_reason})", output=text) from None
    if not isinstance(record, dict):
        raise AttemptFailure("not_an_object", f"a JSON {type(record).__name__}, not an object", output=text)
    problem = next(iter(schema.iter_errors(record)), None) if schema is not None else None
    if problem is not None:
        where = "/".join(str(part) for part in problem.absolute_path) or "record"
        raise AttemptFailure("schema_mismatch", f"{where}: {problem.message}", output=text)
    return record


def backoff_delay(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before retry `attempt` (1, 2, …): the server's Retry-After, else 1, 2, 4 … s, jittered and capped."""
    if retry_after is not None:
        return min(retry_after, BACKOFF_CAP_S)
    return min(BACKOFF_CAP_S, BACKOFF_S * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def response_format(spec: GenerateSpec) -> dict[str, Any]:
    """OpenAI's `response_format`: the spec's JSON schema, or plain JSON mode without one."""
    if spec.json_schema is None:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "record", "schema": spec.json_schema, "strict": True}}


class _Run:
    """One run's shared state: the client, the open output files, and the tallies the summary reports."""

    def __init__(self, spec: GenerateSpec, summary: GenerationSummary,
                 on_progress: Callable[[GenerationProgress], None], base_url: str, api_key: str) -> None:
        self.spec, self.summary, self.on_progress = spec, summary, on_progress
        # Opened once there is something to write: a run that cannot reach its endpoint leaves no files.
        self.output: JsonlAppender | None = None
        self.failed_output: JsonlAppender | None = None
        self.response_format = response_format(spec)
        self.schema = _validator(spec.json_schema)
        # max_retries=0: the retries are ours, so each one is counted by its cause.
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0,
                                         timeout=spec.endpoint.timeout)

    async def main(self, todo: list[int]) -> None:
        """Check the endpoint, then produce the `todo` indices with at most `concurrency` requests in flight."""
        async with self.client:
            self.summary.model = await check_endpoint(self.client, self.spec.endpoint.model, "endpoint", "the spec")
            self.output = JsonlAppender(self.spec.output)
            self.spec.failed_output.unlink(missing_ok=True)  # each index it listed is in `todo` again (or done)
            self._report()
            pending = iter(todo)  # shared: each index goes to exactly one worker

            async def worker() -> None:
                for index in pending:
                    await self._produce(index)

            workers = [asyncio.create_task(worker()) for _ in range(min(self.spec.concurrency, len(todo)))]
            try:
                await asyncio.gather(*workers)
            finally:  # one worker's fatal error stops the others before the client closes
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    def close(self) -> None:
        for appender in (self.output, self.failed_output):
            if appender is not None:
                appender.close()

    async def _produce(self, index: int) -> None:
        """Ask for record `index` until it comes back usable or the retries run out; save either outcome."""
        seed = self.spec.seed + index
        fields = draw_fields(self.spec.fields, seed)
        messages = self.spec.prompt.render(fields)
        meta = {"index": index, "seed": seed, "fields": fields, "model": self.summary.model}
        for attempt in range(1, self.spec.max_retries + 2):
            try:
                record, usage = await self._attempt(messages, seed)
            except AttemptFailure as failure:
                self.summary.first_error.setdefault(failure.cause, str(failure)[:500])
                if failure.retry and attempt <= self.spec.max_retries:
                    self.summary.retried[failure.cause] += 1
                    await _sleep(backoff_delay(attempt, failure.retry_after))
                    continue
                self._save_failure(failure, {**meta, "attempts": attempt})
                return
            self.output.write({**record, META: {**meta, "usage": usage, "attempts": attempt}})
            self.summary.done += 1
            self._report()
            return

    async def _attempt(self, messages: list[dict[str, str]], seed: int) -> tuple[dict[str, Any], dict[str, int]]:
        """One request: the record and its token usage, or an `AttemptFailure` saying why not."""
        sampling = self.spec.sampling
        try:
            completion = await self.client.chat.completions.create(
                model=self.summary.model, messages=messages, seed=seed, response_format=self.response_format,
                temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens,
            )
        except openai.RateLimitError as error:
            raise AttemptFailure("rate_limited", _message(error), retry_after=_retry_after(error.response)) from None
        except openai.InternalServerError as error:
            raise AttemptFailure("server_error", _message(error)) from None
        except openai.APITimeoutError:
            raise AttemptFailure("timeout", f"no answer within {self.spec.endpoint.timeout:g} s") from None
        except openai.APIConnectionError as error:
            raise AttemptFailure("connection", str(error.__cause__ or error)) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as error:
            # Every other request would fail the same way: stop the run (finished records stay saved).
            raise EndpointError(f"the endpoint answered HTTP {error.status_code}: {_message(error)}") from None
        except openai.APIStatusError as error:
            raise AttemptFailure(f"http_{error.status_code}", _message(error), retry=False) from None
        usage = {"prompt_tokens": getattr(completion.usage, "prompt_tokens", 0) or 0,
                 "completion_tokens": getattr(completion.usage, "completion_tokens", 0) or 0}
        self.summary.prompt_tokens += usage["prompt_tokens"]
        self.summary.completion_tokens += usage["completion_tokens"]
        choice = completion.choices[0]
        return parse_record(choice.message.content, choice.finish_reason, self.schema), usage

    def _save_failure(self, failure: AttemptFailure, meta: dict[str, Any]) -> None:
        if self.failed_output is None:
            self.failed_output = JsonlAppender(self.spec.failed_output)
        error = str(failure)[:500]
        self.failed_output.write({META: {**meta, "cause": failure.cause, "error": error, "output": failure.output}})
        self.summary.failed[failure.cause] += 1
        self._report()

    def _report(self) -> None:
        summary = self.summary
        self.on_progress(GenerationProgress(summary.already_done + summary.done, sum(summary.failed.values()),
                                            summary.total))


def _ignore(*_: Any) -> None:
    """The default callback: nothing below the CLI prints."""


def _validator(schema: dict[str, Any] | None) -> Validator | None:
    """A validator for the schema's own draft (2020-12 when it names none)."""
    return None if schema is None else validator_for(schema, default=Draft202012Validator)(schema)


def _api_key(spec: GenerateSpec) -> str:
    """The key from `endpoint.api_key_env`; for the local server, LLMKIT_API_KEY (what `llmkit serve` reads)."""
    endpoint = spec.endpoint
    name = endpoint.api_key_env or (None if endpoint.base_url else "LLMKIT_API_KEY")
    key = os.environ.get(name) if name else None
    if endpoint.api_key_env and not key:
        raise EndpointError(f"endpoint.api_key_env: the environment variable {name} is not set")
    return key or "no-key"  # the client insists on a string; servers without auth ignore it


def _message(error: openai.APIStatusError) -> str:
    """The server's own words (OpenAI's `{"error": {"message": …}}`), not the client's "Error code: …" wrapper."""
    body = error.body
    return body["message"] if isinstance(body, dict) and isinstance(body.get("message"), str) else error.message


def _retry_after(response: Any) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError, AttributeError):
        return None
