"""The README.md model card of an exported model: YAML front matter for the Hub, then a readable summary.

When the adapter directory holds `llmkit train` outputs, the card records the training config and the
final metrics, so the exported folder still says how it was made once it is copied away from the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

TRAIN_CONFIG = "train_config.yaml"
METRICS = "metrics.jsonl"
TRAINER_STATE = "trainer_state.json"

# The settings a reader looks for first; the full config follows them in a YAML block.
HEADLINE_SETTINGS = (
    "stage",
    "finetuning_type",
    "dataset",
    "lora_rank",
    "lora_alpha",
    "lora_target",
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "cutoff_len",
)


@dataclass(frozen=True)
class TrainingRecord:
    """What a training run left in its output folder: its config and the last value of each metric."""

    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


def read_training_record(directory: Path) -> TrainingRecord | None:
    """The training config and final metrics found in `directory`, or None when it holds neither."""
    config_file = directory / TRAIN_CONFIG
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    metrics = final_metrics(metric_records(directory))
    if not config and not metrics:
        return None
    return TrainingRecord(config=config or {}, metrics=metrics)


def metric_records(directory: Path) -> list[dict]:
    """Logged metric rows, oldest first: metrics.jsonl when present, else the Trainer's log history."""
    metrics_file, state_file = directory / METRICS, directory / TRAINER_STATE
    if metrics_file.is_file():
        lines = metrics_file.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    if state_file.is_file():
        return json.loads(state_file.read_text()).get("log_history", [])
    return []


def final_metrics(records: list[dict]) -> dict:
    """The last logged value of every numeric metric (train loss, eval loss, step, runtime …)."""
    final: dict = {}
    for record in records:
        final.update({key: value for key, value in record.items() if isinstance(value, (int, float))})
    return final


def render_model_card(
    *,
    title: str,
    base_model: str,
    adapter: Path | None,
    dtype: str,
    files: dict[str, int],
    training: TrainingRecord | None = None,
    front_matter: dict | None = None,
) -> str:
    """The card's Markdown: front matter (base_model, library_name, tags, plus `front_matter`) and sections."""
    meta = {"base_model": base_model, "library_name": "transformers", "tags": card_tags(adapter, training, files)}
    meta.update(front_matter or {})
    made = f"`{base_model}` with the LoRA adapter `{adapter.name}` merged in" if adapter else f"`{base_model}`"
    sections = [
        f"---\n{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)}---",
        f"# {title}",
        f"{made}, exported by `llmkit export` as {dtype} safetensors.",
        _files_section(files),
        _usage_section(files),
    ]
    if training is not None:
        sections += [_training_section(training.config), _metrics_section(training.metrics)]
    return "\n\n".join(section for section in sections if section) + "\n"


def card_tags(adapter: Path | None, training: TrainingRecord | None, files: dict[str, int]) -> list[str]:
    """Hub tags: llmkit, how the weights were made (lora, the training stage), gguf when one is included."""
    tags = ["llmkit"]
    if adapter is not None:
        tags += ["lora", "merged"]
    stage = training.config.get("stage") if training else None
    if stage:
        tags.append(str(stage))
    if any(name.endswith(".gguf") for name in files):
        tags.append("gguf")
    return tags


def _files_section(files: dict[str, int]) -> str:
    rows = "\n".join(f"| `{name}` | {_size(size)} |" for name, size in files.items())
    return f"## Files\n\n| file | size |\n| --- | ---: |\n{rows}"


def _usage_section(files: dict[str, int]) -> str:
    usage = (
        "## Use\n\n```bash\nllmkit chat --model path/to/this/folder\n```\n\n"
        "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")\n'
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")\n```'
    )
    gguf = next((name for name in files if name.endswith(".gguf")), None)
    if gguf is not None:
        usage += f"\n\nllama.cpp: `llama-cli -m path/to/this/folder/{gguf}`"
    return usage


def _training_section(config: dict) -> str:
    if not config:
        return ""
    rows = "\n".join(f"| {key} | {_cell(config[key])} |" for key in HEADLINE_SETTINGS if config.get(key) is not None)
    table = f"| setting | value |\n| --- | --- |\n{rows}\n\n" if rows else ""
    full = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    return f"## Training\n\n{table}<details><summary>Full training config</summary>\n\n```yaml\n{full}```\n\n</details>"


def _metrics_section(metrics: dict) -> str:
    if not metrics:
        return ""
    rows = "\n".join(f"| {key} | {_cell(value)} |" for key, value in metrics.items())
    return f"## Final metrics\n\n| metric | value |\n| --- | ---: |\n{rows}"


def _size(size: int) -> str:
    return f"{size / 1e6:,.1f} MB" if size >= 1e6 else f"{size / 1e3:,.1f} kB"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)
