"""Training speed: `llmkit train` against a transformers `Trainer` + PEFT baseline, LoRA SFT, in one run.

    python benchmarks/train.py                                  # 256 alpaca records, 16 steps of 8 examples
    python benchmarks/train.py --repeats 2 --write docs/benchmarks.md    # best of 2 runs per side, taking turns
    python benchmarks/train.py --quick                          # smoke test: 3 steps, the last 2 timed

Both sides fine-tune the same model (fp32, CPU) with the same LoRA (rank 16 on every linear layer, as
`finetuning_type: lora, lora_target: all` builds it), batch size, learning rate, cutoff_len and number
of optimizer steps, on the same tokenized examples: the first `--records` alpaca records encoded by
llmkit's own pipeline (chat template, loss on the answer only). llmkit runs `llmkit.train.run.train`
itself on a temporary copy of those records. The baseline is the usual recipe on the same encoded
examples: `get_peft_model`, `DataCollatorForSeq2Seq(padding=True)` (right padding, labels padded with
-100), and a plain `Trainer` with the model's full-vocabulary causal-LM loss, no packing, no length
grouping. Both Trainers shuffle with the same seed, so step k trains on the same examples on both sides.

Each side runs in its own spawned process; its peak RSS is that process's high-water mark (model load
included). Timing runs from the end of step `--warmup` to the end of the last step, read at the
Trainer's per-step log; tokens are the real (non-padding) input tokens of the timed steps. The table
also gives the 1-minute load average as each side finished: on a shared machine the figures mean little.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import transformers
from _report import DATA_DIR, console, machine, markdown_table, print_table, report_section, write_section
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import (
    AutoModelForCausalLM, DataCollatorForSeq2Seq, PrinterCallback, Trainer, TrainerCallback, TrainingArguments,
)

from llmkit.hub import resolve
from llmkit.models.loading import load_tokenizer
from llmkit.train.config import TrainConfig
from llmkit.train.data_pipeline import build_training_data
from llmkit.train.run import train

RECORDS_FILE = DATA_DIR / "llama-factory/alpaca_en_demo.json"
SIDES = ("llmkit", "baseline")
LABELS = {"llmkit": "llmkit train", "baseline": "Trainer + PEFT"}
TARGET = 2.5  # real tokens/s over the baseline's (issue 17)
MEMORY_TARGET = 0.5  # peak RSS over the baseline's
SEED = 42


@dataclass(frozen=True)
class Settings:
    """What both sides share."""

    model: str
    records: int
    steps: int
    warmup: int
    batch_size: int
    cutoff_len: int
    lora_rank: int
    learning_rate: float
    repeats: int


@dataclass
class Measurement:
    """One side's timed steps: real and computed (padding included) input tokens, seconds, memory, losses."""

    side: str
    steps: int
    real_tokens: int
    computed_tokens: int
    seconds: float
    peak_rss_mib: float
    losses: list[float]
    load_avg: float = 0.0  # the machine's 1-minute load average as the side finished

    @property
    def tokens_per_s(self) -> float:
        """Real tokens per second of the timed steps."""
        return self.real_tokens / self.seconds

    @property
    def padding(self) -> float:
        """The share of computed tokens that were padding."""
        return 1 - self.real_tokens / self.computed_tokens


# ---- what both sides measure with -----------------------------------------------------------------


@dataclass
class StepClock:
    """When each optimizer step's log came, the input tokens counted by then, and the step's loss."""

    times: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    def __call__(self, logs: Mapping) -> None:
        """Take one per-step log (`logging_steps=1`), as `llmkit train` hands them to its `report` hook."""
        if "loss" in logs:
            self.times.append(time.perf_counter())
            self.tokens.append(logs["num_input_tokens_seen"])
            self.losses.append(logs["loss"])

    def measure(self, side: str, warmup: int, computed: Sequence[int] | None = None) -> Measurement:
        """The steps after `warmup`, and this process's peak RSS; `computed`: each step's tokens, padding included."""
        real = self.tokens[-1] - self.tokens[warmup - 1]
        return Measurement(
            side=side,
            steps=len(self.times) - warmup,
            real_tokens=real,
            computed_tokens=real if computed is None else sum(computed[warmup : len(self.times)]),
            seconds=self.times[-1] - self.times[warmup - 1],
            peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux counts KiB
            losses=self.losses,
        )


class LogHook(TrainerCallback):
    """Hands the baseline Trainer's logs to a `StepClock`, as `llmkit train` hands them to its `report` hook."""

    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        self.clock(logs or {})


def train_config(settings: Settings, data_file: Path, output_dir: Path) -> TrainConfig:
    """The `llmkit train` config of the run: LoRA SFT on `data_file`, a log every step, no checkpoints."""
    return TrainConfig(
        stage="sft",
        model_name_or_path=settings.model,
        finetuning_type="lora",
        lora_rank=settings.lora_rank,
        lora_target="all",
        dataset=[str(data_file)],
        dataset_dir=str(data_file.parent),
        cutoff_len=settings.cutoff_len,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        max_steps=settings.steps,
        logging_steps=1,
        save_steps=settings.steps + 1,
        seed=SEED,
        output_dir=str(output_dir),
        overwrite_output_dir=True,
    )


# ---- the two sides, each run in a process of its own ----------------------------------------------


def quiet() -> None:
    """No per-step chatter from a side's process: loading bars, transformers' info and PEFT's offline warnings."""
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", module="peft")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


def run_llmkit(settings: Settings, data_file: Path, output_dir: Path) -> Measurement:
    """`llmkit.train.run.train` itself, timed through its per-step `report` hook."""
    quiet()
    clock = StepClock()
    train(train_config(settings, data_file, output_dir), report=clock)
    return clock.measure("llmkit", settings.warmup)


class CountingCollator:
    """A collator that records the size of every batch it builds (`input_ids` elements, padding included)."""

    def __init__(self, collate: Callable[[list[dict]], dict]) -> None:
        self.collate = collate
        self.sizes: list[int] = []

    def __call__(self, features: list[dict]) -> dict:
        batch = self.collate(features)
        self.sizes.append(batch["input_ids"].numel())
        return batch


def run_baseline(settings: Settings, data_file: Path, output_dir: Path) -> Measurement:
    """The usual transformers + PEFT recipe on llmkit's encoded examples: right padding, full-vocabulary loss."""
    quiet()
    directory = resolve(settings.model)
    tokenizer = load_tokenizer(directory)
    encoded = build_training_data(train_config(settings, data_file, output_dir), tokenizer).train
    clock, collator = StepClock(), CountingCollator(DataCollatorForSeq2Seq(tokenizer, padding=True))
    trainer = Trainer(
        model=lora_model(directory, settings),
        args=baseline_arguments(settings, output_dir),
        train_dataset=[{"input_ids": e.input_ids, "labels": e.labels} for e in encoded],
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[LogHook(clock)],
    )
    trainer.remove_callback(PrinterCallback)  # as `llmkit train` does: no log dict printed per step
    trainer.train()
    return clock.measure("baseline", settings.warmup, computed=collator.sizes)


def lora_model(directory: Path, settings: Settings) -> PeftModel:
    """The base in fp32 with the LoRA that `finetuning_type: lora, lora_target: all` adds."""
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    model.config.use_cache = False
    lora = LoraConfig(
        r=settings.lora_rank, lora_alpha=2 * settings.lora_rank, lora_dropout=0.0, target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def baseline_arguments(settings: Settings, output_dir: Path) -> TrainingArguments:
    """Trainer defaults except what both sides share; counts non-padding tokens, logs every step, saves nothing."""
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        max_steps=settings.steps,
        logging_steps=1,
        save_strategy="no",
        seed=SEED,
        data_seed=SEED,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
    )


RUNNERS = {"llmkit": run_llmkit, "baseline": run_baseline}


def measure_side(side: str, settings: Settings, data_file: Path, output_dir: Path) -> Measurement:
    """Run one side in a fresh spawned process, so neither its memory nor its threads touch the other's."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        measurement = pool.submit(RUNNERS[side], settings, data_file, output_dir).result()
    return replace(measurement, load_avg=os.getloadavg()[0])


def write_records(count: int, directory: Path) -> Path:
    """The first `count` alpaca records as a JSON file of their own, the dataset both sides load."""
    records = json.loads(RECORDS_FILE.read_text())[:count]
    if len(records) < count:
        raise SystemExit(f"{RECORDS_FILE} has only {len(records)} records; --records asks for {count}")
    path = directory / "alpaca.json"
    path.write_text(json.dumps(records, ensure_ascii=False))
    return path


# ---- reporting ------------------------------------------------------------------------------------


HEADERS = [
    "Side", "Steps", "Real tokens", "Computed tokens", "Padding", "Seconds", "Real tok/s", "Speed-up", "Peak RSS MiB",
    "Loss first → last", "Load",
]
NOTES = [
    "Steps: optimizer steps timed (after the warm-up steps). Real tokens: non-padding input tokens of those steps. "
    "Computed tokens: input positions the model ran, padding included; Padding: their share that was padding.",
    "Real tok/s: real tokens ÷ seconds of the timed steps; Speed-up: over the baseline's. Peak RSS: the side's "
    "process high-water mark (the highest of its runs), model load included. Loss: the logged loss of the first "
    "and the last step.",
    f"Load: the 1-minute load average as the side finished ({os.cpu_count()} cores); about "
    f"{torch.get_num_threads()} of it is the side's own threads, much more means other work shared the machine.",
]


def rows(measurements: list[Measurement]) -> list[list[str]]:
    """Table rows, one per side."""
    base = next((m for m in measurements if m.side == "baseline"), None)
    return [
        [
            LABELS[m.side],
            str(m.steps),
            str(m.real_tokens),
            str(m.computed_tokens),
            f"{100 * m.padding:.0f}%",
            f"{m.seconds:.1f}",
            f"{m.tokens_per_s:.0f}",
            f"{m.tokens_per_s / base.tokens_per_s:.2f}×" if base else "n/a",
            f"{m.peak_rss_mib:.0f}",
            f"{m.losses[0]:.4f} → {m.losses[-1]:.4f}",
            f"{m.load_avg:.1f}",
        ]
        for m in measurements
    ]


def findings(measurements: list[Measurement]) -> list[str]:
    """The target, and whether both sides trained on the same tokens."""
    by_side = {m.side: m for m in measurements}
    ours, base = by_side.get("llmkit"), by_side.get("baseline")
    if not (ours and base):
        return []
    ratio = ours.tokens_per_s / base.tokens_per_s
    memory = ours.peak_rss_mib / base.peak_rss_mib
    same = "the same" if ours.real_tokens == base.real_tokens else "DIFFERENT"
    first = "identical" if f"{ours.losses[0]:.4f}" == f"{base.losses[0]:.4f}" else "DIFFERENT"
    return [
        f"llmkit ÷ baseline, real tokens/s: {ratio:.2f}× (target ≥ {TARGET:g}×) — {verdict(ratio >= TARGET)}",
        f"llmkit ÷ baseline, peak RSS: {memory:.2f} (target ≤ {MEMORY_TARGET:g}) — {verdict(memory <= MEMORY_TARGET)}",
        f"Timed steps trained on {same} real tokens on both sides ({ours.real_tokens} vs {base.real_tokens}); "
        f"first-step loss {first} to 4 decimals ({ours.losses[0]:.4f} vs {base.losses[0]:.4f}).",
    ]


def verdict(met: bool) -> str:
    return "met" if met else "not met"


def setup(settings: Settings) -> list[str]:
    """How both sides ran, one line each."""
    return [
        f"Model `{settings.model}`, fp32, CPU; LoRA rank {settings.lora_rank}, alpha {2 * settings.lora_rank}, "
        f"every linear layer; batch {settings.batch_size}, learning rate {settings.learning_rate:g} (constant), "
        f"cutoff_len {settings.cutoff_len}, {settings.steps} optimizer steps, the first {settings.warmup} untimed; "
        f"each side's best of {settings.repeats} runs, the sides taking turns.",
        f"Data: the first {settings.records} records of LLaMA-Factory's alpaca_en_demo.json, encoded once by "
        "llmkit's pipeline (chat template, loss on the answer); both Trainers shuffle with the same seed.",
        "llmkit: `llmkit.train.run.train` (padding-free batches: a step's examples in one row, attention "
        "example by example, LM head only at supervised positions and in chunks). Baseline: `get_peft_model` + `DataCollatorForSeq2Seq(padding=True)` (right "
        "padding) + plain `Trainer`, full-vocabulary causal-LM loss.",
    ]


def print_report(settings: Settings, measurements: list[Measurement]) -> None:
    """The table, the setup, the notes and the findings, on the console."""
    print_table(f"Training — LoRA SFT, {settings.model}, fp32", HEADERS, rows(measurements), left=1)
    for line in setup(settings):
        console.print(f"  {line}")
    for note in NOTES:
        console.print(f"  [dim]{note}[/]")
    for line in findings(measurements):
        console.print(f"  {line}")


# ---- the run --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    """The command line, checked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="Any name llmkit resolves (default: the embedded model).")
    parser.add_argument("--records", type=int, default=256, help="Alpaca records to train on (the first N).")
    parser.add_argument("--steps", type=int, default=16, help="Optimizer steps per side.")
    parser.add_argument("--warmup", type=int, default=2, help="Leading steps left out of the timing (at least 1).")
    parser.add_argument("--batch-size", type=int, default=8, help="Examples per step.")
    parser.add_argument("--cutoff-len", type=int, default=512, help="Longest example in tokens.")
    parser.add_argument("--lora-rank", type=int, default=16, help="LoRA rank (alpha is twice that).")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="Constant learning rate.")
    parser.add_argument("--repeats", type=int, default=1, help="Runs per side, taking turns; the fastest counts.")
    parser.add_argument("--only", nargs="+", choices=SIDES, default=list(SIDES), help="Sides to measure.")
    parser.add_argument("--quick", action="store_true", help="Smoke test: 32 records, 3 steps, 1 warm-up step.")
    parser.add_argument("--write", type=Path, help="Markdown file whose train.py section is replaced.")
    args = parser.parse_args()
    if args.quick:
        args.records, args.steps, args.warmup = 32, 3, 1
    if min(args.records, args.batch_size, args.lora_rank, args.warmup, args.repeats) < 1 or args.steps <= args.warmup:
        parser.error("--records, --batch-size, --lora-rank, --warmup, --repeats: at least 1; --steps: above --warmup")
    return args


def measure_all(sides: list[str], settings: Settings) -> list[Measurement]:
    """Each side `settings.repeats` times, the sides taking turns, on one copy of the records; the fastest run each."""
    best: dict[str, Measurement] = {}
    with tempfile.TemporaryDirectory(prefix="llmkit-train-bench-") as tmp:
        data_file = write_records(settings.records, Path(tmp))
        for side in [side for _ in range(settings.repeats) for side in sides]:
            with console.status(f"{LABELS[side]}: {settings.steps} steps…"):
                m = measure_side(side, settings, data_file, Path(tmp) / side)
            line = f"{m.tokens_per_s:6.0f} real tok/s, {m.peak_rss_mib:.0f} MiB, load {m.load_avg:.1f}"
            console.print(f"  {LABELS[side]:<16} {line}")
            best[side] = m if side not in best else faster(best[side], m)
    return list(best.values())


def faster(one: Measurement, other: Measurement) -> Measurement:
    """The faster of two runs of a side, with the higher peak RSS of the two (memory is not best-of)."""
    fast = max(one, other, key=lambda m: m.tokens_per_s)
    return replace(fast, peak_rss_mib=max(one.peak_rss_mib, other.peak_rss_mib))


def main() -> None:
    args = parse_args()
    settings = Settings(
        args.model, args.records, args.steps, args.warmup, args.batch_size, args.cutoff_len, args.lora_rank,
        args.learning_rate, args.repeats,
    )
    console.print(f"[bold]{machine()}[/]")
    measurements = measure_all(args.only, settings)
    print_report(settings, measurements)
    if args.write:
        table = markdown_table(HEADERS, rows(measurements), left=1)
        text = report_section("train.py", "Training", setup(settings), table, NOTES, findings(measurements))
        write_section(args.write, "train.py", text)
        console.print(f"wrote the train.py section of {args.write}")


if __name__ == "__main__":
    main()
