"""Padding-free batches: a step's examples laid end to end in one row, each attending only to itself.

Position ids restart at 0 for every example, and the row carries each example's boundaries, so attention
runs example by example (`train.packed_attention`): no token sees another example, and no compute is spent
on padding or on scores across examples. The LM head runs only where the next token is supervised
(`train.loss`): with a 49k-token vocabulary, logits for every prompt position would cost more than the
rest of the model."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from llmkit.train.encoding import Encoded, Packed

IGNORE = -100


def collate(examples: Sequence[Encoded | Packed]) -> dict[str, torch.Tensor]:
    """Concatenate `examples` (single or already packed) into one [1, T] row with restarting position ids.

    Returns `labels` (the Trainer counts their supervised tokens to normalise the loss over accumulation
    steps), `cu_seq_lens_q` (where each example starts, and the row's length: see `packed_attention`), `logits_index` (positions whose next token is supervised) and `targets` (those next tokens).
    """
    input_ids, labels, positions = [], [], []
    for example in examples:
        input_ids += example.input_ids
        labels += example.labels
        positions += getattr(example, "position_ids", None) or range(len(example.input_ids))
    positions_t, labels_t = torch.tensor(positions), torch.tensor(labels)
    labels_t[positions_t == 0] = IGNORE  # an example's first token is not predicted from the one before it
    predicted = (labels_t[1:] != IGNORE).nonzero()[:, 0]  # position i predicts token i + 1
    starts = (positions_t == 0).nonzero()[:, 0]
    return {
        "input_ids": torch.tensor([input_ids]),
        "position_ids": positions_t[None],
        "cu_seq_lens_q": torch.cat([starts, torch.tensor([len(input_ids)])]).int(),  # example boundaries
        "labels": labels_t[None],
        "logits_index": predicted,
        "targets": labels_t[predicted + 1],
    }
