"""A pipeline file: the model to ask, and the tasks a record is routed to (first match wins, a catch-all last).

`load_pipeline("pipeline.yaml")` reads the YAML, resolves every step, tool, template and metric it
names (user code included, relative paths against the file's folder) and raises `PipelineError`
naming each bad key, so a mistake shows before the first record, not on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from re import Pattern
from typing import Annotated, Any, Literal

import jinja2
from pydantic import Field, PlainValidator, ValidationInfo, model_validator

from llmkit.errors import LLMKitError
from llmkit.pipeline.metrics import Metric, resolve_metric
from llmkit.pipeline.postprocess import POSTPROCESSORS
from llmkit.pipeline.steps import Step, load_function, parse_step
from llmkit.pipeline.schema import function_schema
from llmkit.pipeline.transforms import TRANSFORMS, compile_template
from llmkit.yaml_files import ConfigSection, load_yaml_model


class PipelineError(LLMKitError):
    """A pipeline that cannot run: unreadable file, bad YAML, unknown key, wrong value, unloadable code."""


def _base_dir(info: ValidationInfo) -> Path:
    return (info.context or {}).get("base_dir", Path("."))


TransformStep = Annotated[
    Step, PlainValidator(lambda value, info: parse_step(value, TRANSFORMS, "transform", 1, _base_dir(info)))
]
PostprocessStep = Annotated[
    Step, PlainValidator(lambda value, info: parse_step(value, POSTPROCESSORS, "post-processor", 2, _base_dir(info)))
]
FinalizeStep = Annotated[
    Step, PlainValidator(lambda value, info: parse_step(value, {}, "finalize step", 1, _base_dir(info)))
]
Template = Annotated[jinja2.Template, PlainValidator(compile_template)]
MetricName = Annotated[Metric, PlainValidator(lambda value, info: resolve_metric(value, _base_dir(info)))]
UserFunction = Annotated[
    Callable[..., Any], PlainValidator(lambda value, info: load_function(value, "tool", _base_dir(info)))
]


IN_PROCESS_KEYS = ("name", "max_batch_size", "max_seq_len", "dtype", "device", "backend", "quantize", "compile")


class ModelConfig(ConfigSection):
    """The model a pipeline asks: one loaded in this process (`name`), or any OpenAI-compatible server (`base_url`)."""

    name: str = Field("default", description="In-process: the model to load (a name, path or hub id).")
    base_url: str | None = Field(None, description="API root of an OpenAI-compatible server, e.g. http://host:8000/v1.")
    model: str | None = Field(None, description="With base_url: the model id to ask (default: the first it lists).")
    api_key_env: str | None = Field(None, description="With base_url: the environment variable holding the API key.")
    timeout: float = Field(600.0, gt=0, description="Seconds to wait for one answer.")
    max_batch_size: int = Field(8, ge=1, description="In-process: sequences decoded together.")
    max_seq_len: int = Field(2048, ge=16, description="In-process: context length in tokens.")
    dtype: str = Field("auto", description="In-process: auto, float32, bfloat16 or float16.")
    device: str = Field("auto", description="In-process: auto, cpu, cuda or cuda:N.")
    backend: Literal["auto", "torch", "llamacpp"] = Field(
        "auto", description="In-process: what runs the model (auto: llamacpp for a GGUF model when installed, else torch)."
    )
    quantize: Literal["int8", "int4"] | None = Field(None, description="In-process: weight-only quantised layers.")
    compile: bool = Field(False, description="In-process: torch.compile the forward (cached on disk).")

    @model_validator(mode="after")
    def _one_kind(self) -> ModelConfig:
        given = self.model_fields_set
        if self.base_url is None and given & {"model", "api_key_env"}:
            raise ValueError("model and api_key_env go with base_url; an in-process model is chosen by name")
        wrong = sorted(given & set(IN_PROCESS_KEYS))
        if self.base_url is not None and wrong:
            raise ValueError(f"{', '.join(wrong)} apply to an in-process model; with base_url the server decides them")
        return self


class Sampling(ConfigSection):
    """Decoding settings sent with each request; a task's own override the pipeline's key by key."""

    temperature: float | None = Field(
        None, ge=0, le=2, description="Randomness; 0 is greedy. Default: the model's (its generation config)."
    )
    top_p: float | None = Field(
        None, gt=0, le=1, description="Nucleus sampling: keep this much probability mass. Default: the model's."
    )
    max_tokens: int = Field(256, ge=1, description="Longest answer in tokens.")
    stop: list[str] | None = Field(None, description="Strings that end the answer.")
    seed: int | None = Field(None, description="Sampling seed, for answers that repeat.")
    response_format: dict[str, Any] | None = Field(
        None, description="OpenAI's response_format (json_object / json_schema)."
    )
    extra_body: dict[str, Any] | None = Field(
        None, description="Other parameters sent as they are, e.g. top_k or repetition_penalty for llmkit and vLLM."
    )


class Match(ConfigSection):
    """Which records a task takes: a field's truth, a value, or a substring / regex of a text field."""

    field: str | None = Field(None, description="The record field tested (contains/regex: default the prompt field).")
    contains: str | None = Field(None, description="The text must contain this.")
    regex: Pattern[str] | None = Field(None, description="The text must match this regular expression (search).")
    equals: str | int | float | bool | None = Field(None, description="The field must equal this.")
    one_of: list[Any] | None = Field(None, description="The field must be one of these.")

    @model_validator(mode="after")
    def _one_test(self) -> Match:
        tests = [name for name in ("contains", "regex", "equals", "one_of") if name in self.model_fields_set]
        if len(tests) > 1:
            raise ValueError(f"give one test, not {' and '.join(tests)}")
        if not tests and self.field is None:
            raise ValueError("give a field (true when the field is), or one of contains, regex, equals, one_of")
        if tests and tests[0] in ("equals", "one_of") and self.field is None:
            raise ValueError(f"{tests[0]} needs the field it tests")
        return self


class ToolConfig(ConfigSection):
    """A tool the model may call: a Python function (`function`) or an HTTP endpoint (`url`)."""

    function: UserFunction | None = Field(None, description="package.module:function or path/to/file.py:function.")
    url: str | None = Field(None, description="HTTP endpoint answering the call's arguments.")
    method: Literal["GET", "POST"] = Field("POST", description="With url: POST sends JSON, GET query parameters.")
    name: str | None = Field(None, description="The name the model calls (default: the function's).")
    description: str | None = Field(None, description="What the tool does (default: the function's docstring).")
    parameters: dict[str, Any] | None = Field(
        None, description="JSON schema of the arguments (default: from the function's signature)."
    )
    api_key_env: str | None = Field(
        None, description="With url: the environment variable holding a key sent as `Authorization: Bearer KEY`."
    )
    timeout: float = Field(30.0, gt=0, description="Seconds one call may take.")

    @model_validator(mode="after")
    def _complete(self) -> ToolConfig:
        if (self.function is None) == (self.url is None):
            raise ValueError("give a tool either function (Python) or url (HTTP)")
        if self.api_key_env is not None and not os.environ.get(self.api_key_env):
            raise ValueError(f"api_key_env: the environment variable {self.api_key_env} is not set")
        if self.function is not None:
            wrong = sorted(self.model_fields_set & {"method", "api_key_env"})
            if wrong:
                raise ValueError(f"{', '.join(wrong)}: only for HTTP tools (url)")
            summary, parameters = function_schema(self.function)
            self.name = self.name or self.function.__name__
            self.description = self.description if self.description is not None else summary
            self.parameters = self.parameters if self.parameters is not None else parameters
        elif self.name is None:
            raise ValueError("an HTTP tool needs a name (and a description and parameters, for the model)")
        else:
            self.parameters = self.parameters if self.parameters is not None else {"type": "object", "properties": {}}
        return self


class Task(ConfigSection):
    """One kind of record: how to recognise it, the messages to send, how to turn the answer into a value."""

    name: str = Field(description="The task's name in traces, outputs and the eval table.")
    match: Match | None = Field(None, description="Which records it takes; none: every record (the last task only).")
    transforms: list[TransformStep] = Field(
        default_factory=list, description="Steps preparing the record: split, or package.module:function."
    )
    system: Template | None = Field(None, description="System message, a Jinja template over the record's fields.")
    user: Template | None = Field(None, description="User message template (default: the prompt field as it is).")
    sampling: Sampling | None = Field(None, description="Overrides of the pipeline's sampling for this task.")
    tools: list[ToolConfig] = Field(default_factory=list, description="Tools the model may call.")
    tool_choice: Literal["auto", "required"] = Field("auto", description="Whether the model must call a tool.")
    max_tool_rounds: int = Field(3, ge=0, description="Rounds of tool calls before the model must answer.")
    postprocess: list[PostprocessStep] = Field(
        default_factory=list, description="Steps turning the answer into the prediction, e.g. strip, first_digit."
    )
    metric: MetricName | None = Field(None, description="How --eval scores it: accuracy, ndcg, hit@3, rouge_l, …")

    @model_validator(mode="after")
    def _unique_tools(self) -> Task:
        _check_unique("tool", [tool.name for tool in self.tools])
        return self


class PipelineConfig(ConfigSection):
    """Everything one `llmkit run` needs, read from the pipeline YAML."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="The model to ask.")
    prompt_field: str = Field("prompt", description="The record field holding the prompt text.")
    prediction_field: str = Field("prediction", description="The output field the post-processed answer goes to.")
    reference_field: str = Field("reference", description="The record field --eval scores against.")
    sampling: Sampling = Field(default_factory=Sampling, description="Decoding settings for every task.")
    concurrency: int = Field(4, ge=1, le=256, description="Records in flight at once.")
    tasks: list[Task] = Field(min_length=1, description="The tasks, tried in order; the first that matches runs.")
    finalize: list[FinalizeStep] = Field(
        default_factory=list, description="Steps run once after each run, `function(output_path, **options)` over "
        "the whole output (e.g. a map or a report from all predictions), returning the paths of the files they wrote."
    )

    @model_validator(mode="after")
    def _routable(self) -> PipelineConfig:
        _check_unique("task", [task.name for task in self.tasks])
        for task in self.tasks[:-1]:
            if task.match is None:
                raise ValueError(f"task {task.name!r} has no match, so it takes every record and the tasks after "
                                 "it never run; give it a match or move it last")
        return self

    def sampling_for(self, task: Task) -> Sampling:
        """The pipeline's sampling with the keys the task sets replaced."""
        if task.sampling is None:
            return self.sampling
        overrides = {key: getattr(task.sampling, key) for key in task.sampling.model_fields_set}
        return self.sampling.model_copy(update=overrides)

    def task(self, name: str) -> Task | None:
        return next((task for task in self.tasks if task.name == name), None)


def _check_unique(kind: str, names: list[str | None]) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{kind} names must differ: {', '.join(repeated)} given twice")


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Read and check a pipeline YAML file; `PipelineError` names every bad key and what it allows."""
    return load_yaml_model(path, PipelineConfig, "pipeline", PipelineError)
