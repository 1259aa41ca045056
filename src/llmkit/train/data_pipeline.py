"""A run's training and evaluation examples: load and mix the configured datasets, hold out `val_size` (or load
`eval_dataset`), tokenize, pack. Every stage's records come through `load_records`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from transformers import PreTrainedTokenizerBase

from llmkit.train.config import ConfigError, TrainConfig
from llmkit.train.datasets import Conversation, LoadResult, Record, Skipped, Text, load_datasets, split
from llmkit.train.encoding import Encoded, Packed, encode_conversation, encode_text, pack


@dataclass
class RunRecords:
    """A run's training and evaluation records, before tokenization, and the ones left out while loading."""

    train: list[Record]
    eval: list[Record]
    skipped: list[Skipped] = field(default_factory=list)


@dataclass
class TrainingData:
    """Tokenized examples for the Trainer (plain lists: the collator builds each batch)."""

    train: list[Encoded | Packed]
    eval: list[Encoded | Packed]
    skipped: list[Skipped] = field(default_factory=list)


def build_training_data(config: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> TrainingData:
    """Everything `config.dataset` names, encoded for `config.stage` (sft or pt); bad records are skipped, listed."""
    records = load_records(config)
    train, evaluation = (encode_records(part, tokenizer, config) for part in (records.train, records.eval))
    if config.packing:
        train, evaluation = pack(train, config.cutoff_len), pack(evaluation, config.cutoff_len)
    return TrainingData(train, evaluation, records.skipped)


def load_records(config: TrainConfig) -> RunRecords:
    """`config.dataset` for `config.stage`, mixed by `mix_strategy`, less `val_size` held out for evaluation; or
    with `eval_dataset`'s records (mixed the same way) as the eval set."""
    train = _load(config, "dataset")
    if config.eval_dataset:
        evaluation = _load(config, "eval_dataset")
        return RunRecords(train.records, evaluation.records, train.skipped + evaluation.skipped)
    train_records, eval_records = split(train.records, config.val_size, config.seed)
    return RunRecords(train_records, eval_records, train.skipped)


def _load(config: TrainConfig, key: str) -> LoadResult:
    """The records of the datasets config `key` names; a `ConfigError` naming the key when none is usable."""
    names = getattr(config, key)
    loaded = load_datasets(
        names, config.dataset_dir, config.stage, config.max_samples, config.seed, config.mix_strategy,
        config.interleave_probs,
    )
    if not loaded.records:
        raise ConfigError(f"{key}: no usable records in {', '.join(names)} ({len(loaded.skipped)} skipped)")
    if config.default_system is not None:
        loaded.records = [
            replace(record, system=config.default_system) if getattr(record, "system", "") is None else record
            for record in loaded.records
        ]
    return loaded


def encode_records(records: list, tokenizer: PreTrainedTokenizerBase, config: TrainConfig) -> list[Encoded]:
    """Token ids and labels of each record; pt documents longer than cutoff_len become several examples."""
    encoded: list[Encoded] = []
    for record in records:
        if isinstance(record, Conversation):
            supervise = "all" if config.train_on_prompt else "last" if config.mask_history else "answers"
            encoded.append(encode_conversation(record, tokenizer, config.cutoff_len, supervise))
        elif isinstance(record, Text):
            encoded.extend(encode_text(record.text, tokenizer, config.cutoff_len))
        else:
            raise ConfigError(f"stage {config.stage}: cannot train on {type(record).__name__} records")
    return [e for e in encoded if any(label != -100 for label in e.labels)]
