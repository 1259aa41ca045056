"""Start-up time: how long `llmkit generate` takes to load the model and answer, without and with `--compile`.

    python benchmarks/startup.py                       # default model, 8 new tokens
    python benchmarks/startup.py --write docs/benchmarks.md

Each figure is the wall time of one whole `llmkit generate PROMPT -n 8 -t 0` process (Python start, imports, model
load, compile if asked, prefill, 8 tokens). "Warm" runs after one untimed start that filled llmkit's caches (the
GGUF conversion; with `--compile`, inductor's compiled code, here kept in a fresh folder so the first compiled start
really compiles).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import markdown_table, print_table, report_section, write_section

PROMPT = "The capital of France is"
LOAD_TWICE = """
import sys, time
from llmkit.models import load
times = []
for _ in range(2):
    start = time.perf_counter()
    load(sys.argv[1])
    times.append(time.perf_counter() - start)
print(*times)
"""
HEADERS = ["Start", "Seconds"]


def timed_start(model: str, extra: list[str], env: dict[str, str]) -> float:
    """Seconds one `llmkit generate` process takes from launch to exit (it must succeed)."""
    command = [str(Path(sys.executable).parent / "llmkit"), "generate", PROMPT, "-m", model, "-n", "8", "-t", "0", *extra]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def load_times(model: str) -> tuple[float, float]:
    """Seconds of `llmkit.models.load` in a fresh process: the first call (transformers' modelling code imported on
    first use included) and a second one."""
    done = subprocess.run([sys.executable, "-c", LOAD_TWICE, model], check=True, capture_output=True, text=True)
    first, second = map(float, done.stdout.split())
    return first, second


def measure(model: str) -> list[list[str]]:
    """Rows: model load (first and second in a process), warm start without compile, first compiled start (empty
    cache), second compiled start."""
    env = dict(os.environ)
    timed_start(model, [], env)  # fills the conversion cache
    first, second = load_times(model)
    rows = [["model load, first in a process (imports included)", f"{first:.1f}"],
            ["model load, second in the process", f"{second:.1f}"],
            ["warm, no --compile", f"{timed_start(model, [], env):.1f}"]]
    with tempfile.TemporaryDirectory() as cache:
        env["TORCHINDUCTOR_CACHE_DIR"] = cache
        rows.append(["--compile, first start (empty compile cache)", f"{timed_start(model, ['--compile'], env):.1f}"])
        rows.append(["--compile, second start", f"{timed_start(model, ['--compile'], env):.1f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="Any name llmkit resolves (default: the embedded model).")
    parser.add_argument("--write", type=Path, help="Markdown file whose startup section is replaced.")
    args = parser.parse_args()
    rows = measure(args.model)
    print_table(f"Start-up — {args.model}", HEADERS, rows, left=1)
    if args.write:
        load = os.getloadavg()
        setup = [f"Model: `{args.model}`; `llmkit generate` with 8 greedy tokens; load average before the run "
                 f"{load[0]:.2f}"]
        findings = ["Targets (issue 15): model load under 2 s without --compile (the whole start above includes "
                    "Python, imports and 8 tokens besides); second start with --compile under 15 s."]
        write_section(args.write, "startup.py", report_section(
            "startup.py", f"Start-up: {args.model}", setup, markdown_table(HEADERS, rows, left=1), [], findings,
        ))


if __name__ == "__main__":
    main()
