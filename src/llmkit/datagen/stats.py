"""What a dataset holds: how many records, how often each field is filled, how long records are in tokens."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmkit.datagen.records import META, read_inputs, record_text


@dataclass(frozen=True)
class TokenLengths:
    """Summary of per-record token counts."""

    min: int
    mean: float
    p50: float
    p90: float
    max: int


@dataclass(frozen=True)
class DataStats:
    """A dataset's numbers: records read, rows unusable, field coverage (0..1 by dotted path), token lengths."""

    records: int
    unusable: int
    coverage: dict[str, float]
    tokens: TokenLengths
    histogram: Path | None = None


def dataset_stats(
    inputs: Sequence[Path], tokenizer: Any, fields: Sequence[str] | None = None, histogram: Path | None = None
) -> DataStats:
    """Count, measure coverage and token lengths of the records in `inputs`; draw the lengths to `histogram`."""
    rows = read_inputs(inputs)
    records = [row.data for row in rows.records]
    lengths = token_lengths([record_text(record, fields) for record in records], tokenizer)
    if histogram is not None:
        plot_lengths(lengths, histogram)
    return DataStats(len(records), len(rows.bad), coverage(records), summarise(lengths), histogram)


def coverage(records: Sequence[dict]) -> dict[str, float]:
    """The share of records in which each field (nested ones as `a.b`; `_meta` left out) is present and filled."""
    filled = Counter()
    for record in records:
        filled.update({path: _filled(value) for path, value in _leaves(record)})
    return {path: count / len(records) for path, count in filled.items()}


def token_lengths(texts: Sequence[str], tokenizer: Any) -> list[int]:
    """Tokens per text, without special tokens: what the text itself costs."""
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def summarise(lengths: Sequence[int]) -> TokenLengths:
    """Min, mean, median, 90th percentile and max of some lengths."""
    values = np.asarray(lengths)
    p50, p90 = np.percentile(values, [50, 90])
    return TokenLengths(int(values.min()), float(values.mean()), float(p50), float(p90), int(values.max()))


def plot_lengths(lengths: Sequence[int], out: Path) -> Path:
    """A histogram of token lengths, with the median and 90th percentile marked, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    axes.hist(lengths, bins=min(50, max(1, len(set(lengths)))), color="tab:blue", alpha=0.8)
    for quantile, style in ((50, "--"), (90, ":")):
        axes.axvline(np.percentile(lengths, quantile), color="black", linestyle=style, label=f"p{quantile}")
    axes.set_xlabel("tokens per record")
    axes.set_ylabel("records")
    axes.set_title(f"token lengths of {len(lengths)} records")
    axes.legend()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def write_report(stats: DataStats, out: Path) -> Path:
    """The stats as JSON (a `.json` path) or as a markdown page (anything else), Chinese field names as written."""
    if out.suffix.lower() == ".json":
        text = json.dumps(asdict(stats), ensure_ascii=False, indent=2, default=str) + "\n"
    else:
        text = to_markdown(stats, relative_to=out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


def to_markdown(stats: DataStats, relative_to: Path | None = None) -> str:
    """The stats as a short markdown page: counts, token lengths, a coverage table and the histogram
    (linked relative to `relative_to`, the page's folder, when given)."""
    tokens = stats.tokens
    lines = [
        "# Dataset stats",
        "",
        f"{stats.records} records, {stats.unusable} unusable rows.",
        "",
        f"Tokens per record: min {tokens.min}, mean {tokens.mean:.1f}, p50 {tokens.p50:.0f}, "
        f"p90 {tokens.p90:.0f}, max {tokens.max}.",
        "",
        "| field | coverage |",
        "|---|---|",
        *(f"| `{path}` | {share:.1%} |" for path, share in stats.coverage.items()),
    ]
    if stats.histogram is not None:
        image = os.path.relpath(stats.histogram, relative_to) if relative_to else stats.histogram
        lines += ["", f"![token lengths]({image})"]
    return "\n".join(lines) + "\n"


def _leaves(record: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) for every field that is not itself a non-empty object; top-level `_meta` skipped."""
    for key, value in record.items():
        if prefix or key != META:
            if isinstance(value, dict) and value:
                yield from _leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value


def _filled(value: Any) -> bool:
    """Present with content: not null, not blank text, not an empty list or object."""
    if isinstance(value, str):
        return bool(value.strip())
    return value is not None and value != [] and value != {}
