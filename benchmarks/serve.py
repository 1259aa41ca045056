"""Serving speed: `llmkit serve` against `transformers serve` (and llama.cpp's server), over HTTP, in one run.

    python benchmarks/serve.py                                           # N = 1, 4, 16; 64 tokens per request
    python benchmarks/serve.py --write docs/benchmarks.md
    python benchmarks/serve.py --levels 1,2 --requests-per-level 2 --max-tokens 8     # smoke test

Modelled on vLLM's serving benchmark (`vllm bench serve`): the script starts each server on a free
loopback port, waits until it answers, sends one untimed warm-up request, then for each concurrency
level N runs N clients that each send streaming chat completions one after another (`stream=True`,
usage requested, `max_tokens` fixed, temperature 0, EOS ignored where the server allows it) until the
level has sent `--requests-per-level` requests or `--time-limit` seconds have passed; then it stops
the server. The prompts are 32 real instructions, 16 English and 16 Chinese, from the alpaca demo
sets. Per level: requests/s and output tokens/s over the level's wall time, time to first token
(TTFT), inter-token latency (ITL, the gaps between content chunks) and end-to-end latency.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from _report import DATA_DIR, console, machine, markdown_table, print_table, report_section, write_section
from transformers import AutoTokenizer

from llmkit.errors import ModelNotFoundError
from llmkit.hub import gguf_file, resolve
from llmkit.models import render_chat

PROMPT_FILES = (DATA_DIR / "llama-factory/alpaca_en_demo.json", DATA_DIR / "llama-factory/alpaca_zh_demo.json")
PROMPTS_PER_FILE = 16
SERVERS = ("llmkit", "llmkit-llamacpp", "transformers", "llamacpp")
LABELS = {
    "llmkit": "llmkit serve",
    "llmkit-llamacpp": "llmkit serve (llamacpp)",
    "transformers": "transformers serve",
    "llamacpp": "llama_cpp.server",
}
START_TIMEOUT_S = 600.0
REQUEST_TIMEOUT_S = 600.0
CB_PAGE_SIZE = 256  # transformers' default page size for continuous batching
RATIO_LEVEL, RATIO_TARGET = 16, 3.0
TTFT_LEVEL, TTFT_TARGET_S = 4, 1.0


# ---- the prompts ---------------------------------------------------------------------------------


def load_prompts() -> list[str]:
    """The first alpaca instructions without an `input` from each file, English then Chinese."""
    prompts = []
    for path in PROMPT_FILES:
        records = [r["instruction"] for r in json.loads(path.read_text()) if not r["input"]][:PROMPTS_PER_FILE]
        if len(records) < PROMPTS_PER_FILE:
            raise SystemExit(f"{path} has only {len(records)} instructions without input, need {PROMPTS_PER_FILE}")
        prompts += records
    return prompts


# ---- the servers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """How to start one server and what its requests carry besides the common fields."""

    name: str
    mode: str
    command: list[str]
    port: int
    model: str
    ready_path: str
    extra_body: dict[str, object]

    @property
    def url(self) -> str:
        """Where it listens."""
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def venv_script(name: str) -> str:
    """A console script installed beside this Python (the virtualenv's `bin/`)."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        raise SystemExit(f"{path} is missing: install the package that provides `{name}`")
    return str(path)


def llmkit_server(args: argparse.Namespace, port: int, backend: str = "torch") -> Server:
    """`llmkit serve`, its batch as wide as the highest level; vLLM's `ignore_eos` makes every answer full length."""
    batch = max(args.levels)
    options = ["--max-batch-size", str(batch), "--backend", backend]
    options += ["--dtype", args.dtype] if backend == "torch" else []
    return Server(
        name="llmkit" if backend == "torch" else f"llmkit-{backend}",
        mode=f"llmkit serve {shlex.join(options)}",
        command=[venv_script("llmkit"), "serve", "--model", args.model, "--port", str(port), *options],
        port=port,
        model=args.model,
        ready_path="/health",
        extra_body={"ignore_eos": True},
    )


def transformers_server(args: argparse.Namespace, port: int, model_dir: Path, prompt_lengths: list[int]) -> Server:
    """`transformers serve` with continuous batching, its paged KV cache sized for the busiest level."""
    # Left to itself it sizes the cache from free memory: ~11 GB on a 23 GB CPU box, and ~60 s to the first
    # token while it allocates. It rejects unknown request fields, so EOS is switched off through its own
    # `generation_config` field instead of `ignore_eos`.
    busiest = max(args.levels)
    longest = sorted(prompt_lengths, reverse=True)[:busiest]
    blocks = 2 * busiest * math.ceil((longest[0] + args.max_tokens) / CB_PAGE_SIZE)
    batch_tokens = max(CB_PAGE_SIZE, sum(longest) + busiest)
    options = [
        "--continuous-batching",
        "--cb-num-blocks",
        str(blocks),
        "--cb-max-batch-tokens",
        str(batch_tokens),
        "--dtype",
        args.dtype,
    ]
    address = ["--host", "127.0.0.1", "--port", str(port)]
    return Server(
        name="transformers",
        mode=f"transformers serve {shlex.join(options)}",
        command=[venv_script("transformers"), "serve", str(model_dir), *address, *options],
        port=port,
        model=str(model_dir),
        ready_path="/health",
        extra_body={"generation_config": json.dumps({"do_sample": False, "eos_token_id": -1})},
    )


def llamacpp_server(args: argparse.Namespace, port: int, gguf: Path) -> Server:
    """llama-cpp-python's server on the GGUF file, on every core; `min_tokens` makes every answer full length."""
    options = ["--n_ctx", "2048", "--n_threads", str(os.cpu_count())]
    address = ["--host", "127.0.0.1", "--port", str(port)]
    return Server(
        name="llamacpp",
        mode=f"python -m llama_cpp.server {shlex.join(options)} ({gguf.name})",
        command=[sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), *address, *options],
        port=port,
        model=args.model,
        ready_path="/v1/models",
        extra_body={"min_tokens": args.max_tokens},
    )


def gguf_path(model: str) -> Path | None:
    """The GGUF file behind `model` (a known name's packaged file, a `.gguf` path), None for other models."""
    try:
        return gguf_file(model)
    except ModelNotFoundError:
        return None


@contextmanager
def running(server: Server, log: Path) -> Iterator[None]:
    """Start the server in its own process group, wait until it answers, and stop the group afterwards."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with log.open("w") as out:
        process = subprocess.Popen(
            server.command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            with console.status(f"starting {LABELS[server.name]}…"):
                wait_until_ready(server, process, log)
            yield
        finally:
            stop(process)


def wait_until_ready(server: Server, process: subprocess.Popen, log: Path) -> None:
    """Poll the server's readiness route until it answers 200; fail with its log if it exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with status {process.returncode}:\n{log_tail(log)}")
        try:
            if httpx.get(server.url + server.ready_path, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"not ready after {START_TIMEOUT_S:.0f} s:\n{log_tail(log)}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL if it is still there after 30 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def log_tail(log: Path, lines: int = 20) -> str:
    """The last lines of a server's output."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# ---- one request, one level ----------------------------------------------------------------------


@dataclass
class RequestResult:
    """One streamed request: when it was sent and ended, when each content chunk came, tokens, error."""

    sent: float
    ended: float = 0.0
    chunks: list[float] = field(default_factory=list)
    usage_tokens: int | None = None
    error: str | None = None

    @property
    def ttft(self) -> float | None:
        """Sent → first content chunk, None without content."""
        return self.chunks[0] - self.sent if self.chunks else None

    @property
    def itls(self) -> list[float]:
        """Gaps between successive content chunks."""
        return [b - a for a, b in itertools.pairwise(self.chunks)]

    @property
    def output_tokens(self) -> int:
        """Completion tokens from the usage chunk, else the count of content chunks."""
        return self.usage_tokens if self.usage_tokens is not None else len(self.chunks)


def request_body(server: Server, prompt: str, max_tokens: int) -> dict[str, object]:
    """A streaming greedy chat completion of exactly `max_tokens` where the server can be told to ignore EOS."""
    return {
        "model": server.model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **server.extra_body,
    }


async def send(client: httpx.AsyncClient, server: Server, prompt: str, max_tokens: int) -> RequestResult:
    """Send one request and time its server-sent events as they arrive."""
    result = RequestResult(sent=time.perf_counter())
    try:
        async with client.stream("POST", "/v1/chat/completions", json=request_body(server, prompt, max_tokens)) as r:
            if r.status_code != 200:
                result.error = f"HTTP {r.status_code}: {(await r.aread()).decode(errors='replace')[:300]}"
            else:
                await read_events(r, result)
    except (httpx.HTTPError, ValueError) as error:  # ValueError: an event that is not JSON
        result.error = f"{type(error).__name__}: {error}"
    result.ended = time.perf_counter()
    return result


async def read_events(response: httpx.Response, result: RequestResult) -> None:
    """Record the arrival time of each event with content, and the usage, until `[DONE]` or the stream ends."""
    async for line in response.aiter_lines():
        arrived = time.perf_counter()
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            result.error = str(event["error"])[:300]
            return
        if any((choice.get("delta") or {}).get("content") for choice in event.get("choices") or []):
            result.chunks.append(arrived)
        if event.get("usage"):
            result.usage_tokens = event["usage"]["completion_tokens"]


@dataclass
class Level:
    """One server at one concurrency: every request's result and the level's wall time."""

    server: str
    concurrency: int
    results: list[RequestResult]
    seconds: float

    @property
    def ok(self) -> list[RequestResult]:
        """The requests that succeeded."""
        return [r for r in self.results if r.error is None]

    @property
    def failed(self) -> list[RequestResult]:
        """The requests that failed."""
        return [r for r in self.results if r.error is not None]

    @property
    def output_tokens(self) -> int:
        """Output tokens of the successful requests."""
        return sum(r.output_tokens for r in self.ok)

    @property
    def requests_per_s(self) -> float:
        """Successful requests per second of wall time."""
        return len(self.ok) / self.seconds

    @property
    def tokens_per_s(self) -> float:
        """Output tokens per second of wall time."""
        return self.output_tokens / self.seconds

    def ttft(self, q: float) -> float | None:
        """The q-th percentile of time to first token."""
        return percentile([r.ttft for r in self.ok if r.ttft is not None], q)

    def itl(self, q: float) -> float | None:
        """The q-th percentile of inter-token latency."""
        return percentile([gap for r in self.ok for gap in r.itls], q)

    def e2e(self, q: float) -> float | None:
        """The q-th percentile of end-to-end latency."""
        return percentile([r.ended - r.sent for r in self.ok], q)


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation, as vLLM reports them), None for no values."""
    return float(np.percentile(values, q)) if values else None


async def run_level(
    server: Server, prompts: list[str], concurrency: int, requests: int, time_limit: float, max_tokens: int
) -> Level:
    """`concurrency` clients send requests back to back until `requests` are sent or `time_limit` has passed."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=server.url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        counter = itertools.count()
        start = time.perf_counter()
        deadline = start + time_limit

        async def client_loop() -> list[RequestResult]:
            results = []  # the first round always goes out, whatever the time limit
            while (i := next(counter)) < requests and (i < concurrency or time.perf_counter() < deadline):
                results.append(await send(client, server, prompts[i % len(prompts)], max_tokens))
            return results

        batches = await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    results = [r for batch in batches for r in batch]
    return Level(server.name, concurrency, results, max(r.ended for r in results) - start)


async def measure_server(server: Server, prompts: list[str], args: argparse.Namespace) -> list[Level]:
    """One untimed warm-up request, then every level in turn."""
    async with httpx.AsyncClient(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as client:
        warm_up = await send(client, server, prompts[0], args.max_tokens)
    if warm_up.error:
        raise RuntimeError(f"warm-up request failed: {warm_up.error}")
    levels = []
    for n in args.levels:
        with console.status(f"{LABELS[server.name]}, {n} concurrent…"):
            level = await run_level(server, prompts, n, args.requests_per_level, args.time_limit, args.max_tokens)
        console.print(f"  {LABELS[server.name]:<20} N={n:<3} {summary(level)}")
        levels.append(level)
    return levels


def summary(level: Level) -> str:
    """One progress line for a level."""
    line = (
        f"{len(level.ok):>4} requests {level.requests_per_s:7.2f} req/s {level.tokens_per_s:8.1f} tok/s  "
        f"TTFT p50 {ms(level.ttft(50))} ms  ITL p50 {ms(level.itl(50))} ms"
    )
    if level.failed:
        line += f"  [red]{len(level.failed)} failed: {level.failed[0].error}[/]"
    return line


# ---- reporting ------------------------------------------------------------------------------------


def ms(seconds: float | None) -> str:
    """Seconds as whole milliseconds, n/a for none."""
    return "n/a" if seconds is None else f"{seconds * 1000:.0f}"


LATENCY_HEADERS = ["TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "E2E p50"]
HEADERS = ["Server", "N", "Requests", "Tokens", "Req/s", "Tok/s", *LATENCY_HEADERS]


def rows(levels: list[Level]) -> list[list[str]]:
    """Table rows, one per server and level."""
    return [
        [
            LABELS[level.server],
            str(level.concurrency),
            f"{len(level.ok)}" + (f" ({len(level.failed)} failed)" if level.failed else ""),
            str(level.output_tokens),
            f"{level.requests_per_s:.2f}",
            f"{level.tokens_per_s:.1f}",
            ms(level.ttft(50)),
            ms(level.ttft(99)),
            ms(level.itl(50)),
            ms(level.itl(99)),
            ms(level.e2e(50)),
        ]
        for level in levels
    ]


def find(levels: list[Level], server: str, concurrency: int) -> Level | None:
    """The level measured for this server at this concurrency, if any."""
    return next((lv for lv in levels if (lv.server, lv.concurrency) == (server, concurrency)), None)


def findings(levels: list[Level]) -> list[str]:
    """The issue's two targets: llmkit ÷ transformers serve output tok/s at N=16, llmkit p50 TTFT at N=4."""
    ours, theirs = find(levels, "llmkit", RATIO_LEVEL), find(levels, "transformers", RATIO_LEVEL)
    ratio = ours.tokens_per_s / theirs.tokens_per_s if ours and theirs and theirs.tokens_per_s else None
    level = find(levels, "llmkit", TTFT_LEVEL)
    ttft = level.ttft(50) if level else None
    return [
        f"llmkit ÷ transformers serve, output tok/s at N={RATIO_LEVEL}: "
        + ("not measured" if ratio is None else f"{ratio:.2f}×{verdict(ratio >= RATIO_TARGET)}")
        + f" (target ≥ {RATIO_TARGET:g}×)",
        f"llmkit p50 TTFT at N={TTFT_LEVEL}: "
        + ("not measured" if ttft is None else f"{ttft * 1000:.0f} ms{verdict(ttft < TTFT_TARGET_S)}")
        + f" (target < {TTFT_TARGET_S:g} s)",
    ]


def verdict(met: bool) -> str:
    """The suffix that says whether a target is met."""
    return " — met" if met else " — not met"


NOTES = [
    "N: concurrent clients, each sending its next request when the last one ends.",
    "Tokens: completion tokens of the successful requests (from the usage chunk, else counted content chunks). "
    "Req/s and Tok/s: successful requests and their tokens ÷ the level's wall time, first request sent to last "
    "response ended.",
    "Latencies in ms. TTFT: request sent → first chunk with content. ITL: gaps between content chunks (chunks "
    "that arrive in one read count as 0 ms). E2E: request sent → stream ended.",
]


@dataclass
class Report:
    """Everything one run found, ready to print and to write as markdown."""

    args: argparse.Namespace
    prompts: list[str]
    prompt_lengths: list[int]
    servers: list[Server]
    skipped: list[str]
    levels: list[Level]

    def title(self) -> str:
        """The table's title and the section's heading."""
        return f"Serving — {self.args.model}, {self.args.dtype}, {self.args.max_tokens} tokens per request"

    def setup(self) -> list[str]:
        """How the servers ran and what the clients sent, one line each."""
        return [
            *(f"{LABELS[s.name]}: `{s.mode}`" for s in self.servers),
            *self.skipped,
            f"Prompts: {len(self.prompts)} alpaca instructions ({PROMPTS_PER_FILE} English, {PROMPTS_PER_FILE} "
            f"Chinese), {min(self.prompt_lengths)}–{max(self.prompt_lengths)} tokens chat-templated; "
            f"max_tokens={self.args.max_tokens}, temperature 0, EOS ignored (llmkit `ignore_eos`, transformers "
            "`generation_config` with eos_token_id -1, llama.cpp `min_tokens`).",
            f"Per level: up to {self.args.requests_per_level} requests or {self.args.time_limit:g} s "
            "(each client's first request goes out regardless; none starts after the limit); one untimed "
            "warm-up request per server.",
        ]


def print_report(report: Report) -> None:
    """The table, the setup, the notes and the findings, on the console."""
    print_table(report.title(), HEADERS, rows(report.levels), left=1)
    for line in report.setup():
        console.print(f"  {line}")
    for note in NOTES:
        console.print(f"  [dim]{note}[/]")
    for line in findings(report.levels):
        console.print(f"  {line}")


def markdown_section(report: Report, marker: str) -> str:
    """This run as a markdown section between `<!-- marker -->` and `<!-- /marker -->`."""
    table = markdown_table(HEADERS, rows(report.levels), left=1)
    return report_section(marker, report.title(), report.setup(), table, NOTES, findings(report.levels))


# ---- the run --------------------------------------------------------------------------------------


def parse_levels(text: str) -> list[int]:
    """`1,4,16` → [1, 4, 16]."""
    levels = [int(part) for part in text.split(",") if part.strip()]
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("levels are positive integers, comma-separated")
    return levels


def parse_servers(text: str) -> list[str]:
    """`llmkit,transformers` → ["llmkit", "transformers"], each one of SERVERS."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(SERVERS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"servers are among {', '.join(SERVERS)} (got {', '.join(unknown) or text!r})")
    return names


def parse_args() -> argparse.Namespace:
    """The command line, checked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="Any name llmkit resolves (default: the embedded model).")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="Weights dtype.")
    parser.add_argument("--levels", type=parse_levels, default=[1, 4, 16], help="Concurrency levels (default 1,4,16).")
    parser.add_argument("--requests-per-level", type=int, default=32, help="Requests sent per level, at most.")
    parser.add_argument("--time-limit", type=float, default=120.0, help="Seconds per level after which none is sent.")
    parser.add_argument("--max-tokens", type=int, default=64, help="max_tokens of every request.")
    parser.add_argument(
        "--servers", type=parse_servers, default=list(SERVERS), help="Comma-separated, among " + ",".join(SERVERS)
    )
    parser.add_argument("--write", type=Path, help="Markdown file whose serve.py section is replaced.")
    args = parser.parse_args()
    if min(args.requests_per_level, args.max_tokens) < 1 or args.time_limit <= 0:
        parser.error("--requests-per-level, --max-tokens and --time-limit must be positive")
    return args


def build_servers(
    args: argparse.Namespace, model_dir: Path, prompt_lengths: list[int]
) -> tuple[list[Server], list[str]]:
    """The servers to measure, and a line for each asked-for server that cannot run here."""
    servers, skipped = [], []
    for name in args.servers:
        if name == "llmkit":
            servers.append(llmkit_server(args, free_port()))
        elif name == "transformers":
            servers.append(transformers_server(args, free_port(), model_dir, prompt_lengths))
        elif importlib.util.find_spec("llama_cpp") is None:
            skipped.append(f"{LABELS[name]}: skipped, `llama_cpp` is not installed (pip install llama-cpp-python)")
        elif (gguf := gguf_path(args.model)) is None:
            skipped.append(f"{LABELS[name]}: skipped, {args.model} has no GGUF file")
        elif name == "llmkit-llamacpp":
            servers.append(llmkit_server(args, free_port(), backend="llamacpp"))
        else:
            servers.append(llamacpp_server(args, free_port(), gguf))
    return servers, skipped


def main() -> None:
    args = parse_args()
    prompts = load_prompts()
    model_dir = resolve(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt_lengths = [len(render_chat(tokenizer, [{"role": "user", "content": p}])) for p in prompts]
    servers, skipped = build_servers(args, model_dir, prompt_lengths)
    console.print(f"[bold]{machine()}[/]")
    for line in skipped:
        console.print(f"  {line}")

    levels: list[Level] = []
    with tempfile.TemporaryDirectory(prefix="llmkit-serve-bench-") as logs:
        for server in servers:
            console.print(f"{LABELS[server.name]}: {shlex.join(server.command)}")
            try:
                with running(server, Path(logs) / server.name):
                    levels += asyncio.run(measure_server(server, prompts, args))
            except RuntimeError as error:
                console.print(f"  [red]{LABELS[server.name]} failed: {error}[/]")
                skipped.append(f"{LABELS[server.name]}: failed ({str(error).splitlines()[0]})")

    report = Report(args, prompts, prompt_lengths, servers, skipped, levels)
    print_report(report)
    if args.write:
        write_section(args.write, "serve.py", markdown_section(report, "serve.py"))
        console.print(f"wrote the serve.py section of {args.write}")


if __name__ == "__main__":
    main()
