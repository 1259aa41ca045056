"""What a run reports while it trains: metrics.jsonl lines, a progress hook, and a clean stop on Ctrl-C."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

StepReport = Callable[[dict], None]


class MetricsLog(TrainerCallback):
    """Append every log (loss, learning rate, tokens/s, eval loss) to `metrics.jsonl` as it happens, and hand it on.

    Written line by line, so a crash or a Ctrl-C loses nothing already logged.
    """

    def __init__(self, path: Path, report: StepReport | None = None) -> None:
        self.path = path
        self.report = report
        self._last = (time.perf_counter(), 0)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs) -> None:
        if not state.is_world_process_zero or not logs:
            return
        now, tokens = time.perf_counter(), state.num_input_tokens_seen
        then, tokens_then = self._last
        record = {"step": state.global_step, "max_steps": state.max_steps, "epoch": round(state.epoch or 0, 4), **logs}
        if "loss" in logs and now > then and tokens > tokens_then:  # TRL's trainers do not count tokens
            record["tokens_per_second"] = round((tokens - tokens_then) / (now - then), 1)
            self._last = (now, tokens)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
        if self.report is not None:
            self.report(record)

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self._last = (time.perf_counter(), state.num_input_tokens_seen)


class StopOnInterrupt(TrainerCallback):
    """The first Ctrl-C saves a checkpoint at the end of the current step and stops; a second one aborts."""

    def __init__(self) -> None:
        self.interrupted = False
        self._previous = None

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self._previous = signal.signal(signal.SIGINT, self._handle)

    def on_train_end(self, args, state, control, **kwargs) -> None:
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def on_step_end(self, args, state, control: TrainerControl, **kwargs) -> TrainerControl:
        if self.interrupted:
            control.should_save = True
            control.should_training_stop = True
        return control

    def _handle(self, signum, frame) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
