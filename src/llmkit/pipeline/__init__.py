"""Task pipelines: route each record to a task, ask a model (tools included), post-process, trace, evaluate."""

from llmkit.pipeline.config import PipelineConfig, PipelineError, load_pipeline
from llmkit.pipeline.evaluation import EvalReport, evaluate
from llmkit.pipeline.runner import RunProgress, RunSummary, run_pipeline

__all__ = [
    "EvalReport", "PipelineConfig", "PipelineError", "RunProgress", "RunSummary", "evaluate", "load_pipeline",
    "run_pipeline",
]
