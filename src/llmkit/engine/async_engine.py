"""Run an `Engine` on its own thread and serve many asyncio callers at once.

The event loop never blocks on the model: callers put commands (add, abort) into a thread-safe inbox,
the engine thread drains it between steps, and each step's outputs are handed back to the waiting
coroutines with `call_soon_threadsafe`. A caller that stops listening (a client that disconnects)
aborts its request, so no decoding is wasted on it.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from llmkit.engine.engine import Engine
from llmkit.engine.outputs import RequestOutput
from llmkit.engine.params import SamplingParams
from llmkit.engine.prefix_cache import PrefixStats
from llmkit.errors import LLMKitError

T = TypeVar("T")


class QueueFullError(LLMKitError):
    """More requests are waiting than the server accepts; the client should retry after `retry_after` seconds."""

    status_code = 429
    retry_after = 1


class AsyncEngine:
    """An `Engine` stepped by a background thread; `generate` is an async iterator of outputs."""

    def __init__(self, engine: Engine, *, max_queue: int = 256) -> None:
        self.engine = engine
        self.max_queue = max_queue
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._listeners: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._thread = threading.Thread(target=self._run, name="llmkit-engine", daemon=True)
        self._stopped = False
        self._thread.start()

    @property
    def num_requests(self) -> int:
        """Requests accepted and not yet finished (waiting or running)."""
        return len(self._listeners)

    # What a server reads about the engine; len() of the engine thread's list or deque is atomic.

    @property
    def sampling_defaults(self) -> dict[str, float]:
        return self.engine.sampling_defaults

    @property
    def backend(self) -> str:
        return self.engine.runner.backend_name

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    @property
    def max_seq_len(self) -> int:
        return self.engine.max_seq_len

    @property
    def adapters(self) -> dict[str, Path]:
        return self.engine.adapters

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch slot."""
        return len(self.engine.waiting)

    @property
    def batch_size(self) -> int:
        """Sequences (rows) in the running batch."""
        return len(self.engine.rows)

    @property
    def prefix_stats(self) -> PrefixStats | None:
        """Prompt tokens looked up in the prefix cache and found there (None without one)."""
        prefix_cache = self.engine.runner.prefix_cache
        return prefix_cache.stats if prefix_cache is not None else None

    def check_request(self, prompt_token_ids: Sequence[int], params: SamplingParams, adapter: str | None = None) -> None:
        """Raise `InvalidRequestError` now, in the caller, for a request the engine would refuse."""
        self.engine.check_request(prompt_token_ids, params, adapter)

    async def load_adapter(self, name: str, path: Path) -> None:
        """Load a LoRA adapter between two engine steps."""
        await self.call(lambda engine: engine.load_adapter(name, path))

    async def unload_adapter(self, name: str) -> None:
        """Unload a LoRA adapter between two engine steps (refused while requests use it)."""
        await self.call(lambda engine: engine.unload_adapter(name))

    async def generate(
        self,
        prompt_token_ids: Sequence[int],
        params: SamplingParams,
        request_id: str | None = None,
        adapter: str | None = None,
    ) -> AsyncIterator[RequestOutput]:
        """Yield the request's outputs as they grow (through LoRA `adapter` if given); leaving early aborts it.

        Input the engine refuses raises `InvalidRequestError` here, in the caller (the engine thread hands it back).
        """
        request_id = request_id or f"async-{next(self._ids)}"
        outputs: asyncio.Queue = asyncio.Queue()
        with self._lock:
            if len(self._listeners) >= self.max_queue:
                raise QueueFullError(f"the server is busy ({self.max_queue} requests in flight): retry later")
            self._listeners[request_id] = (asyncio.get_running_loop(), outputs)
        self._inbox.put(("add", request_id, list(prompt_token_ids), params, adapter))
        finished = False
        try:
            while not finished:
                item = await outputs.get()
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                yield item
        finally:
            if not finished:
                self._inbox.put(("abort", request_id))
            with self._lock:
                self._listeners.pop(request_id, None)

    async def call(self, function: Callable[[Engine], T]) -> T:
        """Run `function(engine)` on the engine thread between two steps (e.g. loading an adapter); its result."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        self._inbox.put(("call", function, loop, done))
        return await done

    def shutdown(self) -> None:
        """Stop the engine thread (requests still running are abandoned)."""
        self._stopped = True
        self._inbox.put(("stop",))
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopped:
            self._drain_inbox(block=not self.engine.has_unfinished())
            if not self.engine.has_unfinished():
                continue
            try:
                outputs = self.engine.step()
            except Exception as error:  # a bug outside any one request: no caller may be left waiting forever
                self._fail_all(error)
                continue
            for output in outputs:
                self._deliver(output.request_id, output if output.error is None else output.error)

    def _fail_all(self, error: Exception) -> None:
        with self._lock:
            request_ids = list(self._listeners)
        self.engine.reset()
        for request_id in request_ids:
            self._deliver(request_id, error)

    def _drain_inbox(self, *, block: bool) -> None:
        while True:
            try:
                command = self._inbox.get(block=block)
            except queue.Empty:
                return
            block = False
            if command[0] == "add":
                _, request_id, prompt, params, adapter = command
                try:
                    self.engine.add_request(prompt, params, request_id=request_id, adapter=adapter)
                except Exception as error:  # this request fails alone; the engine thread keeps serving
                    self._deliver(request_id, error)
            elif command[0] == "abort":
                self.engine.abort(command[1])
            elif command[0] == "call":
                self._call(*command[1:])
            else:
                return

    def _call(self, function: Callable[[Engine], object], loop: asyncio.AbstractEventLoop, done: asyncio.Future) -> None:
        """Run a `call` command and settle its future on the caller's loop."""
        try:
            result = function(self.engine)
        except Exception as error:  # handed to the awaiting caller, raised there
            loop.call_soon_threadsafe(_settle, done, None, error)
        else:
            loop.call_soon_threadsafe(_settle, done, result, None)

    def _deliver(self, request_id: str, item: RequestOutput | BaseException) -> None:
        with self._lock:
            listener = self._listeners.get(request_id)
        if listener is not None:
            loop, outputs = listener
            loop.call_soon_threadsafe(outputs.put_nowait, item)


def _settle(future: asyncio.Future, result: object, error: BaseException | None) -> None:
    """Complete `future` unless its caller already gave up on it."""
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
