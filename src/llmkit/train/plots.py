"""A run's curves as PNGs from its metrics.jsonl, named as LLaMA-Factory names them (`training_loss.png`,
`training_eval_loss.png`, `training_rewards_accuracies.png`, …): the logged values and a smoothed line."""

from __future__ import annotations

import json
import math
from pathlib import Path

# What a run may log that is worth a curve, in LLaMA-Factory's plot order.
PLOTTED = ("loss", "eval_loss", "eval_accuracy", "rewards/accuracies", "rewards/margins", "reward", "kl")


def smooth(values: list[float]) -> list[float]:
    """TensorBoard's exponential moving average, its weight growing with the number of points (as LLaMA-Factory)."""
    weight = 1.8 * (1 / (1 + math.exp(-0.05 * len(values))) - 0.5)
    smoothed, last = [], values[0] if values else 0.0
    for value in values:
        last = last * weight + (1 - weight) * value
        smoothed.append(last)
    return smoothed


def plot_metrics(metrics_path: Path, out_dir: Path) -> list[Path]:
    """Draw every `PLOTTED` key the run logged against the step; the PNGs written (none before the first log)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    written = []
    for key in PLOTTED:
        points = [(record["step"], record[key]) for record in records if isinstance(record.get(key), int | float)]
        if not points:
            continue
        steps, values = zip(*points)
        figure, axes = plt.subplots(figsize=(7, 4))
        axes.plot(steps, values, color="#1f77b4", alpha=0.4, label="original")
        axes.plot(steps, smooth(list(values)), color="#1f77b4", label="smoothed")
        axes.set(xlabel="step", ylabel=key, title=f"training {key} of {out_dir.name}")
        axes.legend()
        axes.grid(alpha=0.3)
        figure.tight_layout()
        path = out_dir / f"training_{key.replace('/', '_')}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written
