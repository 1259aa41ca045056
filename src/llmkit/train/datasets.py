"""Training data: dataset names or paths in, canonical records (`Conversation`, `Preference`, `Feedback`, `Prompt`,
`Text`) out.

A name is looked up in `dataset_dir/datasets.yaml` (or LLaMA-Factory's `dataset_info.json`; same schema:
`file_name`, `formatting: alpaca|sharegpt`, `ranking`, `columns`, `tags`, `num_samples`, and the hub entries of
`dataset_hub`: `hf_hub_url`, `ms_hub_url`, `script_url` with `subset`, `split`, `folder`); anything else is read
as a path, its format inferred from its fields. `dataset_dir: ONLINE` takes names as hub ids, and
`dataset_dir: REMOTE:org/name` reads the registry of a cached hub dataset, as in LLaMA-Factory. Files: .json
(array), .jsonl, .csv, .parquet, .txt (one document per line), a `datasets.save_to_disk` folder, or a folder of
such files. A bad record never stops a load: it is left out and reported as a `Skipped` entry. Several datasets
are concatenated or interleaved (`mix_strategy`).

Tool turns (glaive style) become OpenAI-style roles: a `function_call` turn is an assistant message whose
content is the call's JSON text (so the model learns to write the call), an `observation` is a `tool`
message. `tools` stays the JSON text of the function schemas.
"""

from __future__ import annotations

import difflib
import itertools
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from llmkit.train.dataset_hub import HubDataset, cached_snapshot, hub_rows, hub_source, online_source
from llmkit.train.readers import DatasetError, read_rows
from llmkit.yaml_files import read_yaml_mapping

__all__ = [
    "Conversation",
    "DatasetEntry",
    "DatasetError",
    "Feedback",
    "LoadResult",
    "Preference",
    "Prompt",
    "Record",
    "Skipped",
    "Text",
    "load_dataset",
    "load_datasets",
    "registry",
    "resolve",
    "split",
]

@dataclass(frozen=True)
class Conversation:
    """One SFT example: user/assistant/tool messages (system kept apart), optional tool schemas as JSON text."""

    messages: list[dict]
    tools: str | None = None
    system: str | None = None


@dataclass(frozen=True)
class Preference:
    """One DPO / reward-model example: a prompt conversation ending on a user turn and two candidate answers."""

    prompt: list[dict]
    chosen: str
    rejected: str
    system: str | None = None


@dataclass(frozen=True)
class Feedback:
    """One KTO example: a prompt conversation ending on a user turn, an answer, and whether it is desirable."""

    prompt: list[dict]
    answer: str
    desirable: bool
    system: str | None = None


@dataclass(frozen=True)
class Prompt:
    """One prompt for the RL stages (ppo, grpo): the conversation up to its last user turn, and the dataset's own
    answer to it when the row has one (reward functions get it as `reference`)."""

    prompt: list[dict]
    system: str | None = None
    reference: str | None = None


@dataclass(frozen=True)
class Text:
    """One document for continued pre-training."""

    text: str


Record = Conversation | Preference | Feedback | Prompt | Text


@dataclass(frozen=True)
class Skipped:
    """A record left out of a load: its file, where in it ("line 7", "row 3", "index 12") and why."""

    file: str
    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file} {self.location}: {self.reason}"


@dataclass
class LoadResult:
    """The records a load produced and the ones it had to leave out."""

    records: list[Record] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class DatasetEntry:
    """One registry entry (or an inferred one for a plain path): where the data is and how to read it."""

    name: str
    path: Path | None  # None: a hub entry
    formatting: str | None = None  # None: infer from the first record
    ranking: bool = False
    columns: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    hub: HubDataset | None = None  # read with the `datasets` library instead of from `path`
    num_samples: int | None = None  # draw this many rows (LLaMA-Factory's num_samples)

    @property
    def location(self) -> str:
        """Where the records come from: the file or folder, or the hub dataset and the part of it read."""
        if self.hub is None:
            return str(self.path.resolve())
        part = (("subset", self.hub.subset), ("folder", self.hub.folder), ("split", self.hub.split))
        return f"{self.hub.source}:{self.hub.location}" + "".join(f" {key}={value}" for key, value in part if value)


REGISTRY_FILES = ("datasets.yaml", "dataset_info.json")
FORMATTINGS = ("alpaca", "sharegpt")
ENTRY_KEYS = (
    "file_name", "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name", "formatting", "ranking",
    "subset", "split", "folder", "num_samples", "columns", "tags",
    "file_sha1",  # a checksum older LLaMA-Factory files carry; LLaMA-Factory no longer reads it either
)
# LLaMA-Factory's mix_strategy → the stopping rule of `datasets.interleave_datasets` it stands for.
INTERLEAVE_STOPS = {
    "interleave_under": "first_exhausted",
    "interleave_over": "all_exhausted",
    "interleave_once": "all_exhausted_without_replacement",
}
SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
OPENAI_TAGS = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
    "observation_tag": "tool",
    "function_tag": "function_call",
    "system_tag": "system",
}


class BadRecord(ValueError):
    """Raised inside a converter for a record that is left out; the message becomes `Skipped.reason`."""


T = TypeVar("T")


def load_datasets(
    specs: Sequence[str],
    dataset_dir: str | Path,
    stage: str,
    max_samples: int | None = None,
    seed: int | None = 42,
    mix_strategy: str = "concat",
    interleave_probs: Sequence[float] | None = None,
) -> LoadResult:
    """Load and mix several datasets for `stage` (sft, pt, rm, dpo): concatenated and shuffled with `seed` (in
    order when it is None), or interleaved as LLaMA-Factory's `mix_strategy` says."""
    parts = [load_dataset(resolve(spec, dataset_dir), stage, max_samples, seed) for spec in specs]
    skipped = [entry for part in parts for entry in part.skipped]
    if mix_strategy == "concat":
        records = [record for part in parts for record in part.records]
        if seed is not None:
            random.Random(seed).shuffle(records)
        return LoadResult(records, skipped)
    for spec, part in zip(specs, parts):
        if not part.records:
            raise DatasetError(f"dataset {spec!r} has no usable records ({len(part.skipped)} skipped) to interleave")
    return LoadResult(_interleave([part.records for part in parts], mix_strategy, interleave_probs, seed), skipped)


def _interleave(parts: list[list[T]], mix_strategy: str, probs: Sequence[float] | None, seed: int | None) -> list[T]:
    """Records drawn from each list in turn, or at random by `probs` (normalised), until `mix_strategy`'s stopping
    rule: `datasets.interleave_datasets` run over record positions, so the draws are LLaMA-Factory's own."""
    import datasets

    records = [record for part in parts for record in part]
    starts = itertools.accumulate((len(part) for part in parts), initial=0)
    positions = [datasets.Dataset.from_dict({"i": range(at, at + len(part))}) for at, part in zip(starts, parts)]
    weights = [p / sum(probs) for p in probs] if probs else None
    mixed = datasets.interleave_datasets(
        positions, probabilities=weights, seed=seed, stopping_strategy=INTERLEAVE_STOPS[mix_strategy]
    )
    return [records[i] for i in mixed["i"]]


def split(records: list[T], val_size: float, seed: int) -> tuple[list[T], list[T]]:
    """Hold out `val_size` records for evaluation: a fraction below 1 (at least one record), a count from 1 up."""
    if val_size >= 1 and int(val_size) >= len(records):
        raise DatasetError(
            f"val_size {int(val_size)} holds out every one of the {len(records)} records; hold out fewer"
        )
    if val_size <= 0 or len(records) < 2:
        return list(records), []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_val = int(val_size) if val_size >= 1 else min(len(records) - 1, max(1, round(len(records) * val_size)))
    val = [records[i] for i in sorted(order[:n_val])]
    train = [records[i] for i in sorted(order[n_val:])]
    return train, val


def registry(dataset_dir: str | Path) -> dict[str, DatasetEntry]:
    """The datasets registered in `dataset_dir` (datasets.yaml, else dataset_info.json); empty if neither exists.

    `REMOTE:org/name` is the cached snapshot of that Hugging Face dataset, as LLaMA-Factory reads it.
    """
    remote = str(dataset_dir).removeprefix("REMOTE:")
    directory = cached_snapshot(str(dataset_dir), remote) if remote != str(dataset_dir) else Path(dataset_dir)
    for name in REGISTRY_FILES:
        path = directory / name
        if path.is_file():
            return _parse_registry(path)
    return {}


def resolve(spec: str, dataset_dir: str | Path) -> DatasetEntry:
    """A registered name's entry, or an entry for a file/folder path; `DatasetError` listing the names if neither.

    With `dataset_dir: ONLINE` (LLaMA-Factory's), every name is a hub dataset id, its format inferred.
    """
    if str(dataset_dir) == "ONLINE":
        return DatasetEntry(name=spec, path=None, hub=online_source(spec))
    entries = registry(dataset_dir)
    if spec in entries:
        return entries[spec]
    path = Path(spec).expanduser()
    if path.exists():
        return DatasetEntry(name=spec, path=path)
    names = ", ".join(sorted(entries)) or f"none (no {' or '.join(REGISTRY_FILES)} in {dataset_dir})"
    raise DatasetError(f"dataset {spec!r} is neither a registered name nor an existing path; registered: {names}")


def load_dataset(entry: DatasetEntry, stage: str, max_samples: int | None = None, seed: int | None = 42) -> LoadResult:
    """Read one dataset into `stage`'s records, keeping the first `max_samples` good ones; an entry's
    `num_samples` rows are drawn first, seeded by `seed`."""
    rows = read_rows(entry.path) if entry.hub is None else hub_rows(entry.name, entry.hub)
    if entry.num_samples is not None:
        rows = iter(_sample(list(rows), entry.num_samples, random.Random(seed)))
    head = []  # rows up to the first record that can show the format
    for row in rows:
        head.append(row)
        if isinstance(row.data, dict):
            break
    if entry.formatting is None:
        entry = _infer(entry, head[-1].data if head else None)
    convert = _converter(entry, stage)
    result = LoadResult()
    for row in itertools.chain(head, rows):
        if max_samples is not None and len(result.records) >= max_samples:
            break
        try:
            if row.error:
                raise BadRecord(row.error)
            result.records.append(convert(row.data, entry))
        except BadRecord as error:
            result.skipped.append(Skipped(str(row.file), row.location, str(error)))
    return result


def _sample(rows: list[T], count: int, rng: random.Random) -> list[T]:
    """LLaMA-Factory's `num_samples`: `count` rows in random order, each row once before any is repeated (past the
    dataset's size, the rest are drawn with replacement)."""
    if not rows:
        return []
    drawn = rng.sample(rows, min(count, len(rows)))
    return drawn + rng.choices(rows, k=count - len(drawn))


def _parse_registry(path: Path) -> dict[str, DatasetEntry]:
    """Registry file → entries, checking each entry's keys and formatting; paths are relative to the registry's
    folder."""
    raw = read_yaml_mapping(path, "dataset registry", DatasetError)
    entries = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            raise DatasetError(f"{path}: entry {name!r} must be a mapping with at least file_name")
        for key in spec:
            if key not in ENTRY_KEYS:
                close = difflib.get_close_matches(str(key), ENTRY_KEYS, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise DatasetError(f"{path}: {name}.{key} is not a registry key ({hint}keys: {', '.join(ENTRY_KEYS)})")
        formatting = spec.get("formatting", "alpaca")
        if formatting not in FORMATTINGS:
            raise DatasetError(f"{path}: {name}.formatting is {formatting!r}; use alpaca or sharegpt")
        num_samples = spec.get("num_samples")
        if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 1):
            raise DatasetError(f"{path}: {name}.num_samples is {num_samples!r}; use a whole number from 1 up")
        hub = hub_source(spec, path.parent)
        if hub is None and (spec.get("subset") or spec.get("folder") or spec.get("split", "train") != "train"):
            raise DatasetError(
                f"{path}: {name}: subset, split and folder choose part of a hub dataset (hf_hub_url, ms_hub_url, "
                "script_url); a file_name entry is read whole"
            )
        file_name = spec.get("file_name")
        if hub is None and not file_name:
            raise DatasetError(
                f"{path}: {name} names no data; give it a file_name, hf_hub_url, ms_hub_url or script_url"
            )
        entries[str(name)] = DatasetEntry(
            name=str(name),
            path=path.parent / file_name if file_name and hub is None else None,
            formatting=formatting,
            ranking=bool(spec.get("ranking", False)),
            columns=dict(spec.get("columns") or {}),
            tags=dict(spec.get("tags") or {}),
            hub=hub,
            num_samples=num_samples,
        )
    return entries


def _infer(entry: DatasetEntry, sample: Any) -> DatasetEntry:
    """Fill in a path's formatting from its first record's fields (plain text, alpaca, sharegpt, preference)."""
    keys = set(sample) if isinstance(sample, dict) else set()
    ranking = {"chosen", "rejected"} <= keys
    if "conversations" in keys or "messages" in keys:
        column = "conversations" if "conversations" in keys else "messages"
        messages = sample[column]
        first_turn = messages[0] if isinstance(messages, list) and messages else None
        openai = isinstance(first_turn, dict) and "role" in first_turn
        tags = OPENAI_TAGS if openai else SHAREGPT_TAGS
        return replace(entry, formatting="sharegpt", ranking=ranking, columns={"messages": column}, tags=dict(tags))
    if "text" in keys and "instruction" not in keys:
        return replace(entry, formatting="text")
    return replace(entry, formatting="alpaca", ranking=ranking)


def _converter(entry: DatasetEntry, stage: str) -> Callable[[Any, DatasetEntry], Record]:
    """The function that turns one row of `entry` into a record for `stage`, or a `DatasetError` if none fits."""
    if stage == "pt":
        return _text
    if entry.formatting == "text":
        raise DatasetError(f"dataset {entry.name!r} is plain text; it can only train stage pt")
    if stage == "sft":
        if entry.ranking:
            raise DatasetError(f"dataset {entry.name!r} holds preference pairs (ranking: true); use stage dpo or rm")
        return _alpaca_conversation if entry.formatting == "alpaca" else _sharegpt_conversation
    if stage in ("dpo", "rm"):
        if not entry.ranking:
            raise DatasetError(
                f"dataset {entry.name!r} has no chosen/rejected pairs (set ranking: true in the registry if it does)"
            )
        return _alpaca_preference if entry.formatting == "alpaca" else _sharegpt_preference
    if stage == "kto":
        if entry.ranking:
            raise DatasetError(
                f"dataset {entry.name!r} holds preference pairs (ranking: true); stage kto reads single answers "
                "tagged desirable or not (columns: {kto_tag: label})"
            )
        return _alpaca_feedback if entry.formatting == "alpaca" else _sharegpt_feedback
    if stage in ("ppo", "grpo"):
        return _alpaca_prompt_only if entry.formatting == "alpaca" else _sharegpt_prompt_only
    raise DatasetError(f"stage {stage!r}: use sft, pt, rm, dpo, kto, ppo or grpo")


def _field(row: Any, column: str, required: bool = True) -> str | None:
    """A string field of a row (None when optional and absent/empty); `BadRecord` if missing or not a string."""
    if not isinstance(row, dict):
        raise BadRecord(f"expected an object with fields, got {type(row).__name__}")
    value = row.get(column)
    if value is None or value == "":
        if required:
            raise BadRecord(f"missing or empty {column!r}")
        return None
    if not isinstance(value, str):
        raise BadRecord(f"{column!r} must be a string, got {type(value).__name__}")
    return value


def _text(row: Any, entry: DatasetEntry) -> Text:
    """A plain-text row: the `columns.prompt` field (LLaMA-Factory's convention for pt), else `text`."""
    return Text(_field(row, entry.columns.get("prompt", "text")))


def _alpaca_prompt(row: Any, entry: DatasetEntry) -> tuple[list[dict], str | None]:
    """Alpaca history + instruction/input → the messages up to the last user turn, and the system prompt."""
    columns = {"prompt": "instruction", "query": "input", "history": "history", "system": "system", **entry.columns}
    instruction = _field(row, columns["prompt"], required=False)
    query = _field(row, columns["query"], required=False)
    question = "\n".join(part for part in (instruction, query) if part)
    if not question:
        raise BadRecord(f"missing or empty {columns['prompt']!r}")
    messages = []
    history = row.get(columns["history"]) or []
    if not isinstance(history, list):
        raise BadRecord(f"{columns['history']!r} must be a list of [question, answer] pairs")
    for turn in history:
        if not (isinstance(turn, list | tuple) and len(turn) == 2 and all(isinstance(x, str) for x in turn)):
            raise BadRecord(f"{columns['history']!r} must be a list of [question, answer] pairs of strings")
        messages += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    messages.append({"role": "user", "content": question})
    return messages, _field(row, columns["system"], required=False)


def _alpaca_conversation(row: Any, entry: DatasetEntry) -> Conversation:
    """An alpaca row (instruction, input, output, system, history) as a conversation."""
    messages, system = _alpaca_prompt(row, entry)
    answer = _field(row, entry.columns.get("response", "output"))
    return Conversation(messages + [{"role": "assistant", "content": answer}], system=system)


def _alpaca_preference(row: Any, entry: DatasetEntry) -> Preference:
    """An alpaca row with `chosen` / `rejected` answers as a preference pair."""
    prompt, system = _alpaca_prompt(row, entry)
    chosen = _answer(row, entry.columns.get("chosen", "chosen"), entry)
    rejected = _answer(row, entry.columns.get("rejected", "rejected"), entry)
    return Preference(prompt, chosen, rejected, system=system)


def _alpaca_feedback(row: Any, entry: DatasetEntry) -> Feedback:
    """An alpaca row with its KTO tag: the answer (`output`) and whether it is desirable."""
    prompt, system = _alpaca_prompt(row, entry)
    answer = _field(row, entry.columns.get("response", "output"))
    return Feedback(prompt, answer, _kto_tag(row, entry), system=system)


def _alpaca_prompt_only(row: Any, entry: DatasetEntry) -> Prompt:
    """An alpaca row's prompt; its `output`, when present, is the reference answer."""
    prompt, system = _alpaca_prompt(row, entry)
    return Prompt(prompt, system, reference=_field(row, entry.columns.get("response", "output"), required=False))


def _kto_tag(row: Any, entry: DatasetEntry) -> bool:
    """The row's KTO tag (LLaMA-Factory's `columns.kto_tag`, else TRL's `label`): true for a desirable answer."""
    column = entry.columns.get("kto_tag", "label")
    value = row.get(column)
    if not isinstance(value, bool):
        raise BadRecord(f"{column!r} must be true or false (the KTO tag: is the answer desirable?)")
    return value


def _sharegpt_messages(row: Any, entry: DatasetEntry) -> tuple[list[dict], str | None]:
    """A sharegpt row's turns as OpenAI-style messages (system turn split off), checked turn by turn."""
    tags = {**SHAREGPT_TAGS, **entry.tags}
    column = entry.columns.get("messages", "conversations")
    turns = row.get(column) if isinstance(row, dict) else None
    if not isinstance(turns, list) or not turns:
        raise BadRecord(f"{column!r} must be a non-empty list of turns")
    roles = {
        tags["user_tag"]: "user",
        tags["assistant_tag"]: "assistant",
        tags["function_tag"]: "assistant",
        tags["observation_tag"]: "tool",
        tags["system_tag"]: "system",
    }
    messages = []
    for index, turn in enumerate(turns):
        role = turn.get(tags["role_tag"]) if isinstance(turn, dict) else None
        content = turn.get(tags["content_tag"]) if isinstance(turn, dict) else None
        if role not in roles:
            raise BadRecord(f"{column}[{index}] has role {role!r}; expected one of {', '.join(roles)}")
        if not isinstance(content, str):
            raise BadRecord(f"{column}[{index}].{tags['content_tag']} must be a string")
        messages.append({"role": roles[role], "content": content})
    system = _field(row, entry.columns.get("system", "system"), required=False)
    if messages[0]["role"] == "system":
        system = messages.pop(0)["content"] or system
    if any(message["role"] == "system" for message in messages):
        raise BadRecord("a system turn may only come first")
    if not messages or messages[0]["role"] != "user":
        raise BadRecord("the conversation must start with a user turn")
    return messages, system


def _tools(row: Any, entry: DatasetEntry) -> str | None:
    """The row's tool schemas as JSON text (None when absent or an empty list); `BadRecord` if not valid JSON."""
    value = row.get(entry.columns.get("tools", "tools"))
    if isinstance(value, list):
        value = json.dumps(value, ensure_ascii=False)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRecord(f"tools must be JSON text or a list, got {type(value).__name__}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise BadRecord(f"tools is not valid JSON: {error}") from None
    if not isinstance(parsed, list):
        raise BadRecord("tools must be a JSON list of function schemas")
    return value if parsed else None


def _sharegpt_conversation(row: Any, entry: DatasetEntry) -> Conversation:
    """A sharegpt row as a conversation that ends with an assistant turn."""
    messages, system = _sharegpt_messages(row, entry)
    if messages[-1]["role"] != "assistant":
        raise BadRecord("the conversation must end with an assistant turn")
    return Conversation(messages, tools=_tools(row, entry), system=system)


def _sharegpt_preference(row: Any, entry: DatasetEntry) -> Preference:
    """A sharegpt row (prompt turns ending on a user turn) with `chosen` / `rejected` answer turns."""
    prompt, system = _sharegpt_messages(row, entry)
    if prompt[-1]["role"] != "user":
        raise BadRecord("the prompt turns must end with a user turn")
    chosen = _answer(row, entry.columns.get("chosen", "chosen"), entry)
    rejected = _answer(row, entry.columns.get("rejected", "rejected"), entry)
    return Preference(prompt, chosen, rejected, system=system)


def _sharegpt_feedback(row: Any, entry: DatasetEntry) -> Feedback:
    """A sharegpt row with its KTO tag: the prompt turns, then the assistant answer that is (or is not) desirable."""
    conversation = _sharegpt_conversation(row, entry)
    return Feedback(
        conversation.messages[:-1], conversation.messages[-1]["content"], _kto_tag(row, entry), conversation.system
    )


def _sharegpt_prompt_only(row: Any, entry: DatasetEntry) -> Prompt:
    """A sharegpt row's turns up to its last user turn; a final assistant turn, when present, is the reference."""
    messages, system = _sharegpt_messages(row, entry)
    reference = messages.pop()["content"] if messages[-1]["role"] == "assistant" else None
    if not messages or messages[-1]["role"] != "user":
        raise BadRecord("the prompt turns must end with a user turn")
    return Prompt(messages, system, reference)


def _answer(row: Any, column: str, entry: DatasetEntry) -> str:
    """A preference answer: a string, or a sharegpt turn ({from, value}) whose content is taken."""
    value = row.get(column) if isinstance(row, dict) else None
    if isinstance(value, dict):
        value = value.get({**SHAREGPT_TAGS, **entry.tags}["content_tag"])
    if not isinstance(value, str) or not value:
        raise BadRecord(f"missing or empty {column!r} answer")
    return value
