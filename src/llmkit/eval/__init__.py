"""Evaluate models: metrics, side-by-side comparisons of a base and a tuned model, and reports."""

from llmkit.eval.compare import Comparison, compare
from llmkit.eval.metrics import MetricError, exact_match, resolve_metric, rouge_l
from llmkit.eval.report import Report, Sample, write_report

__all__ = [
    "Comparison",
    "MetricError",
    "Report",
    "Sample",
    "compare",
    "exact_match",
    "resolve_metric",
    "rouge_l",
    "write_report",
]
