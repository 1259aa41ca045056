"""A run's training and evaluation examples: load the configured datasets, hold out `val_size`, tokenize, pack."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from llmkit.train.config import ConfigError, TrainConfig
from llmkit.train.datasets import Conversation, Skipped, Text, load_datasets, split
from llmkit.train.encoding import Encoded, Packed, encode_conversation, encode_text, pack


@dataclass
class TrainingData:
    """Tokenized examples for the Trainer (plain lists: the collator builds each batch)."""

    train: list[Encoded | Packed]
    eval: list[Encoded | Packed]
    skipped: list[Skipped] = field(default_factory=list)


def build_training_data(config: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> TrainingData:
    """Everything `config.dataset` names, encoded for `config.stage` (sft or pt); bad records are skipped, listed."""
    loaded = load_datasets(config.dataset, config.dataset_dir, config.stage, config.max_samples, config.seed)
    if not loaded.records:
        raise ConfigError(f"dataset: no usable records in {', '.join(config.dataset)} ({len(loaded.skipped)} skipped)")
    train_records, eval_records = split(loaded.records, config.val_size, config.seed)
    train, evaluation = (encode_records(records, tokenizer, config) for records in (train_records, eval_records))
    if config.packing:
        train, evaluation = pack(train, config.cutoff_len), pack(evaluation, config.cutoff_len)
    return TrainingData(train, evaluation, loaded.skipped)


def encode_records(records: list, tokenizer: PreTrainedTokenizerBase, config: TrainConfig) -> list[Encoded]:
    """Token ids and labels of each record; pt documents longer than cutoff_len become several examples."""
    encoded: list[Encoded] = []
    for record in records:
        if isinstance(record, Conversation):
            encoded.append(encode_conversation(record, tokenizer, config.cutoff_len))
        elif isinstance(record, Text):
            encoded.extend(encode_text(record.text, tokenizer, config.cutoff_len))
        else:
            raise ConfigError(f"stage {config.stage}: cannot train on {type(record).__name__} records")
    return [e for e in encoded if any(label != -100 for label in e.labels)]
