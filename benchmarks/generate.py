"""Decode speed: the llmkit engine against transformers, on one machine, one loaded model, one run.

    python benchmarks/generate.py                        # default model, fp32, 128 new tokens, 16 concurrent
    python benchmarks/generate.py --dtype bfloat16 --write docs/benchmarks.md
    python benchmarks/generate.py --quantize int8 --only llmkit --write docs/benchmarks.md
    python benchmarks/generate.py --compile --only llmkit hf-generate --write docs/benchmarks.md
    python benchmarks/generate.py --new-tokens 8 --concurrent 2 --only llmkit hf-generate   # smoke test

Systems: the llmkit `Engine` on its own forward (with `--quantize`: on int8 / int4 weights; with `--compile`:
through torch.compile, compiled before the warm-up call is timed), the same engine
on the transformers forward, transformers `model.generate` (the baseline), transformers continuous
batching (`model.generate_batch`) and llama-cpp-python on the model's GGUF file (`llama.cpp`, when installed). Scenarios: one greedy stream, and `--concurrent` requests with
different real prompts submitted at once. Every request produces exactly `--new-tokens` tokens (EOS is
ignored), and tokens/s is generated tokens over the wall time of the whole generate call, so prefill
is included. Each system gets one untimed warm-up call per scenario; the figure is the best of
`--repeats` timed calls. With `--write`, the figures replace this dtype's section of a markdown file.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from _report import DATA_DIR, console, machine, markdown_table, print_table, section, utc_now, write_section
from transformers import ContinuousBatchingConfig, GenerationConfig

from llmkit.engine.engine import Engine
from llmkit.engine.params import SamplingParams
from llmkit.hub import gguf_file
from llmkit.models import load, render_chat

PROMPTS_FILE = DATA_DIR / "llama-factory/alpaca_en_demo.json"
SYSTEMS = ("llmkit", "llmkit-transformers", "hf-generate", "hf-generate-batch", "llama.cpp")
LABELS = {
    "llmkit": "llmkit engine",
    "llmkit-transformers": "llmkit, transformers forward",
    "hf-generate": "model.generate",
    "hf-generate-batch": "generate_batch",
    "llama.cpp": "llama.cpp (GGUF)",
}
BASELINE = "hf-generate"
COPY_BYTES = 512 * 2**20


@dataclass
class Measurement:
    """One system in one scenario: tokens generated in `seconds` (best of the repeats)."""

    system: str
    scenario: str
    tokens: int
    seconds: float
    outputs: list[list[int]]

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


# ---- the prompts ---------------------------------------------------------------------------------


def load_prompts(tokenizer, count: int) -> list[list[int]]:
    """The first `count` alpaca instructions (with their input, if any) as chat-templated token ids."""
    records = json.loads(PROMPTS_FILE.read_text())[:count]
    if len(records) < count:
        raise SystemExit(f"{PROMPTS_FILE} has only {len(records)} records; --concurrent asks for {count}")
    texts = [r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "") for r in records]
    return [render_chat(tokenizer, [{"role": "user", "content": text}]) for text in texts]


# ---- one generate call per system: prompts in, generated token ids per prompt out -----------------


def llmkit_runner(engine: Engine) -> Callable[[list[list[int]], int], list[list[int]]]:
    def run(prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
        params = SamplingParams(max_new_tokens=new_tokens, ignore_eos=True)
        with torch.inference_mode():
            return [out.outputs[0].token_ids for out in engine.generate(prompts, params)]

    return run


def hf_generate_runner(model, tokenizer) -> Callable[[list[list[int]], int], list[list[int]]]:
    def run(prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
        # Left padding with EOS as the pad token, as `model.generate` wants for a decoder-only batch.
        tokenizer.padding_side = "left"
        batch = tokenizer.pad({"input_ids": prompts}, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = model.generate(
                **batch,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        return out[:, batch["input_ids"].shape[1] :].tolist()

    return run


def llamacpp_runner(gguf: Path) -> Callable[[list[list[int]], int], list[list[int]]]:
    """llama-cpp-python on the model's own GGUF file (its quantisation), greedy; its high-level API decodes one
    prompt at a time, so the concurrent scenario runs them in turn."""
    from llama_cpp import Llama

    llama = Llama(model_path=str(gguf), n_ctx=1024, n_threads=torch.get_num_threads(), verbose=False)

    def run(prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
        outputs = []
        for prompt in prompts:
            tokens: list[int] = []
            for token in llama.generate(prompt, temp=0.0, top_k=1, reset=True):
                tokens.append(token)
                if len(tokens) == new_tokens:
                    break
            outputs.append(tokens)
        return outputs

    return run


def hf_generate_batch_runner(model, tokenizer) -> Callable[[list[list[int]], int], list[list[int]]]:
    def run(prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
        # eos_token_id=-1 disables EOS (generate_batch has no min_new_tokens), so every request runs to N.
        generation_config = GenerationConfig(
            max_new_tokens=new_tokens, do_sample=False, eos_token_id=-1, pad_token_id=tokenizer.pad_token_id
        )
        # Sized for this workload: by default it sizes the paged cache from free memory (~10 GB on a
        # CPU box) and warms up at 8192-token batches (20-50 s), which measures nothing we care about.
        page_size = 256
        blocks = len(prompts) * math.ceil((max(map(len, prompts)) + new_tokens) / page_size)
        cb_config = ContinuousBatchingConfig(
            page_size=page_size,
            num_blocks=blocks + 1,
            max_batch_tokens=max(page_size, sum(map(len, prompts)) + len(prompts)),
            max_requests_per_batch=len(prompts),
        )
        # Not under inference_mode: the manager makes its tensors in this thread and updates them in
        # place from its own background thread, which inference tensors forbid.
        results = model.generate_batch(
            prompts,
            generation_config=generation_config,
            continuous_batching_config=cb_config,
            persistent_manager=True,  # the warm-up call builds the manager; timed calls reuse it
            warmup=False,  # its warm-up captures CUDA graphs; on CPU it only runs 8192-token dummy batches
        )
        failed = [r.error for r in results.values() if r.error is not None]
        if failed or len(results) != len(prompts):
            raise SystemExit(f"generate_batch failed: {failed[:1] or f'{len(results)} of {len(prompts)} results'}")
        return [r.generated_tokens for r in results.values()]

    return run


def measure(
    system: str, scenario: str, run: Callable, prompts: list[list[int]], new_tokens: int, repeats: int
) -> Measurement:
    """One untimed warm-up call, then the best of `repeats` timed calls; checks every output has N tokens."""
    run(prompts, new_tokens)
    best, outputs = math.inf, []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = run(prompts, new_tokens)
        best = min(best, time.perf_counter() - start)
    lengths = sorted({len(tokens) for tokens in outputs})
    if len(outputs) != len(prompts) or lengths != [new_tokens]:
        raise SystemExit(f"{system} ({scenario}) produced {lengths} tokens per request, expected {new_tokens}")
    return Measurement(system, scenario, new_tokens * len(prompts), best, outputs)


def engine_ttft(engine: Engine, prompt: list[int], repeats: int) -> float:
    """Time to first token: a one-token request is exactly prefill plus picking the first token."""
    params = SamplingParams(max_new_tokens=1, ignore_eos=True)
    best = math.inf
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first is a warm-up
            start = time.perf_counter()
            engine.generate([prompt], params)
            best = min(best, time.perf_counter() - start)
    return best


# ---- the memory-bandwidth bound -------------------------------------------------------------------


def weight_bytes(engine: Engine) -> int:
    """Bytes of weights one decode step reads: every linear layer and the LM head once, as our forward stores them
    (quantised ones included); on the transformers forward every parameter once (tied embeddings once)."""
    decoder = engine.runner.decoder
    if decoder is None:
        return sum(p.numel() * p.element_size() for p in engine.model.parameters())
    layers = [linear for layer in decoder.layers for linear in (layer.qkv, layer.o, layer.gate_up, layer.down)]
    return decoder.lm_head.nbytes + sum(linear.nbytes for linear in layers)


def copy_bandwidth(nbytes: int = COPY_BYTES, repeats: int = 3) -> float:
    """Bytes/s of a large tensor copy, best of `repeats`; counts read + write, as STREAM's copy does.

    Copies into a destination already touched: a fresh `clone()` each time mostly measures the kernel
    zeroing new pages (about a tenth of the copy speed here), not memory bandwidth.
    """
    source = torch.ones(nbytes, dtype=torch.uint8)
    target = source.clone()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        target.copy_(source)
        best = min(best, time.perf_counter() - start)
    return 2 * nbytes / best


# ---- reporting ------------------------------------------------------------------------------------


@dataclass
class Report:
    """Everything one run found, ready to print and to write as markdown."""

    model: str
    dtype: str
    quantize: str | None
    compile: bool
    new_tokens: int
    concurrent: int
    repeats: int
    measurements: list[Measurement]
    eos_ids: set[int]
    ttft_s: float | None
    weight_bytes: int
    bandwidth: float

    @property
    def label(self) -> str:
        """The dtype, and the llmkit engine's weight quantisation and compile if any."""
        return ", ".join([
            self.dtype, *([f"llmkit weights {self.quantize}"] if self.quantize else []),
            *(["llmkit compiled"] if self.compile else []),
        ])

    def get(self, system: str, scenario: str) -> Measurement | None:
        return next((m for m in self.measurements if (m.system, m.scenario) == (system, scenario)), None)

    def ratio(self, system: str, scenario: str, baseline: str) -> float | None:
        this, base = self.get(system, scenario), self.get(baseline, scenario)
        return this.tokens_per_s / base.tokens_per_s if this and base else None

    def rows(self) -> list[list[str]]:
        """Table rows: system, scenario, tokens, seconds, tokens/s, speed-up, greedy agreement."""
        rows = []
        for m in self.measurements:
            speedup = self.ratio(m.system, m.scenario, BASELINE)
            base = self.get(BASELINE, m.scenario)
            same = sum(same_until_eos(a, b, self.eos_ids) for a, b in zip(m.outputs, base.outputs)) if base else None
            rows.append([
                LABELS[m.system],
                m.scenario,
                str(m.tokens),
                f"{m.seconds:.2f}",
                f"{m.tokens_per_s:.1f}",
                "n/a" if speedup is None else f"{speedup:.2f}×",
                "n/a" if same is None else f"{same}/{len(m.outputs)}",
            ])
        return rows

    def findings(self) -> list[str]:
        """The ratios that matter and the bandwidth bound, one line each."""
        single, many = "single", f"{self.concurrent} concurrent"
        lines = []
        single_target = 2.5 if self.dtype == "float32" else 3.0  # the targets of issue 15
        for label, system, scenario, base, target in (
            ("llmkit single ÷ model.generate single", "llmkit", single, "hf-generate", single_target),
            (f"llmkit {many} ÷ generate_batch {many}", "llmkit", many, "hf-generate-batch", 3.0),
            (f"llmkit {many} ÷ model.generate {many}", "llmkit", many, "hf-generate", 2.0),
            ("our forward ÷ the transformers forward, single", "llmkit", single, "llmkit-transformers", None),
            ("llmkit single ÷ llama.cpp single (with --quantize int4)", "llmkit", single, "llama.cpp",
             1.0 if self.quantize == "int4" else None),
        ):
            value = self.ratio(system, scenario, base)
            shown = "not measured" if value is None else f"{value:.2f}×"
            if target is None:
                lines.append(f"{label}: {shown}")
                continue
            verdict = "" if value is None else (" — met" if value >= target else " — not met")
            lines.append(f"{label}: {shown} (target ≥ {target:g}×{verdict})")
        if self.ttft_s is not None:
            lines.append(f"llmkit time to first token, single stream: {self.ttft_s * 1000:.0f} ms")
        bound = self.bandwidth / self.weight_bytes
        lines.append(
            f"Memory-bandwidth bound: {self.weight_bytes / 1e6:.0f} MB of weights per decode step, "
            f"copy bandwidth {self.bandwidth / 1e9:.1f} GB/s (read + write) → {bound:.0f} tokens/s"
        )
        engine = self.get("llmkit", single)
        if engine:
            lines.append(f"llmkit single stream reaches {100 * engine.tokens_per_s / bound:.0f}% of that bound")
        return lines


def same_until_eos(a: list[int], b: list[int], eos_ids: set[int]) -> bool:
    """Equal up to the first EOS in either: `min_new_tokens` masks EOS, `ignore_eos` emits it and goes on."""
    cut = next((i for i, pair in enumerate(zip(a, b)) if eos_ids.intersection(pair)), len(a))
    return a[:cut] == b[:cut]


HEADERS = ["System", "Scenario", "Tokens", "Seconds", "Tokens/s", "Speed-up", "Agree"]
NOTES = [
    "Speed-up: tokens/s over `model.generate` in the same scenario.",
    "Agree: requests whose greedy tokens equal `model.generate`'s up to the first EOS "
    "(`min_new_tokens` masks EOS; the engine's `ignore_eos` and generate_batch with EOS off emit it and go on).",
]


def print_report(report: Report) -> None:
    """The table, its notes and the findings, on the console."""
    title = f"Decode speed — {report.model}, {report.label}, {report.new_tokens} new tokens per request"
    print_table(title, HEADERS, report.rows(), left=2)
    for note in NOTES:
        console.print(f"  [dim]{note}[/]")
    for line in report.findings():
        console.print(f"  {line}")


def markdown_section(report: Report, marker: str) -> str:
    """This run as a markdown section between `<!-- marker -->` and `<!-- /marker -->`."""
    lines = [
        f"## Decode speed: {report.model}, {report.label}",
        "",
        f"- Date: {utc_now()}",
        f"- Machine: {machine()}",
        f"- Model: `{report.model}` in {report.label}; greedy, {report.new_tokens} new tokens per request "
        f"(EOS ignored), best of {report.repeats} after one warm-up call per system and scenario.",
        "- Tokens/s = generated tokens ÷ wall time of the whole generate call (prefill included). "
        f"Concurrent: {report.concurrent} different alpaca prompts submitted at once "
        "(`model.generate`: one left-padded batch).",
        "",
        *markdown_table(HEADERS, report.rows(), left=2),
        "",
        *(f"- {note}" for note in NOTES),
        "",
        *(f"- {line}" for line in report.findings()),
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/generate.py', *sys.argv[1:]])}`",
    ]
    return section(marker, lines)


# ---- the run --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="Any name llmkit resolves (default: the embedded model).")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="Weights dtype.")
    parser.add_argument("--new-tokens", type=int, default=128, help="Tokens each request generates, exactly.")
    parser.add_argument("--concurrent", type=int, default=16, help="Requests in the concurrent scenario.")
    parser.add_argument("--quantize", choices=["int8", "int4"], help="Weight-only quantisation of the llmkit engine.")
    parser.add_argument("--compile", action="store_true", help="torch.compile the llmkit engine's forward.")
    parser.add_argument("--repeats", type=int, default=1, help="Timed calls per measurement; the best counts.")
    parser.add_argument("--write", type=Path, help="Markdown file whose section for this dtype is replaced.")
    parser.add_argument("--only", nargs="+", choices=SYSTEMS, default=list(SYSTEMS), help="Systems to measure.")
    args = parser.parse_args()
    if min(args.new_tokens, args.concurrent, args.repeats) < 1:
        parser.error("--new-tokens, --concurrent and --repeats must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    transformers.logging.set_verbosity_error()
    logging.getLogger("ContinuousBatchingLogger").setLevel(logging.ERROR)

    model, tokenizer = load(args.model, dtype=args.dtype, device="cpu")
    prompts = load_prompts(tokenizer, args.concurrent)
    console.print(f"[bold]{machine()}[/]")
    console.print(
        f"{args.model} ({args.dtype}); prompts of {min(map(len, prompts))}–{max(map(len, prompts))} tokens; "
        f"{args.new_tokens} new tokens; systems: {', '.join(args.only)}"
    )

    rows = max(16, args.concurrent)
    engine = Engine(model, tokenizer, max_batch_size=rows, max_seq_len=1024, runner_options={"quantize": args.quantize, "compile": args.compile})
    on_transformers = Engine(model, tokenizer, max_batch_size=rows, max_seq_len=1024,
                             runner_options={"forward": "transformers"})
    runners = {
        "llmkit": lambda: llmkit_runner(engine),
        "llmkit-transformers": lambda: llmkit_runner(on_transformers),
        "hf-generate": lambda: hf_generate_runner(model, tokenizer),
        "hf-generate-batch": lambda: hf_generate_batch_runner(model, tokenizer),
        "llama.cpp": lambda: llamacpp_runner(gguf_file(args.model)),
    }
    scenarios = {"single": prompts[:1], f"{args.concurrent} concurrent": prompts}
    measurements, ttft = [], None
    for system in args.only:
        run = runners[system]()
        for scenario, batch in scenarios.items():
            with console.status(f"{LABELS[system]}, {scenario}…"):
                m = measure(system, scenario, run, batch, args.new_tokens, args.repeats)
            console.print(f"  {LABELS[system]:<16} {scenario:<15} {m.tokens_per_s:8.1f} tokens/s")
            measurements.append(m)
            if system == "hf-generate-batch":
                # Each scenario sizes its own manager; this also restores the model for the others.
                model.destroy_cached_continuous_batching_manager()
        if system == "llmkit":
            ttft = engine_ttft(engine, prompts[0], args.repeats)

    report = Report(
        model=args.model,
        dtype=args.dtype,
        quantize=args.quantize,
        compile=args.compile,
        new_tokens=args.new_tokens,
        concurrent=args.concurrent,
        repeats=args.repeats,
        measurements=measurements,
        eos_ids=set(engine.eos_ids),
        ttft_s=ttft,
        weight_bytes=weight_bytes(engine),
        bandwidth=copy_bandwidth(),
    )
    print_report(report)
    if args.write:
        marker = "-".join(["generate.py:" + args.dtype, *filter(None, [args.quantize, args.compile and "compiled"])])
        write_section(args.write, marker, markdown_section(report, marker))
        console.print(f"wrote the {report.label} section of {args.write}")


if __name__ == "__main__":
    main()
