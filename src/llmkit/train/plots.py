"""The loss curve of a run (train and eval) as a PNG, from its metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path


def plot_loss(metrics_path: Path, out: Path) -> Path | None:
    """Draw train (and eval) loss against the step; None when nothing was logged yet."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    if not train and not evals:
        return None
    figure, axes = plt.subplots(figsize=(7, 4))
    for points, label in ((train, "train"), (evals, "eval")):
        if points:
            steps, losses = zip(*points)
            axes.plot(steps, losses, marker="o" if len(points) < 30 else None, label=label)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(metrics_path.parent.name)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out
