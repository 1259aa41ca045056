"""Padding-free batches: a step's examples laid end to end in one row, each attending only to itself.

Position ids restart at 0 for every example, and transformers turns that into a block-diagonal causal
mask (`masking_utils.find_packed_sequence_indices`), so no token sees another example and no compute
is spent on padding. The LM head runs only where the next token is supervised (`logits_to_keep` with
explicit indices): with a 49k-token vocabulary, logits for every prompt position would cost more than
the rest of the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from llmkit.train.encoding import Encoded, Packed

IGNORE = -100


def collate(examples: Sequence[Encoded | Packed]) -> dict[str, torch.Tensor]:
    """Concatenate `examples` (single or already packed) into one [1, T] row with restarting position ids.

    Returns `labels` (the Trainer counts their supervised tokens to normalise the loss over accumulation
    steps), `logits_index` (positions whose next token is supervised) and `targets` (those next tokens).
    """
    input_ids, labels, positions = [], [], []
    for example in examples:
        input_ids += example.input_ids
        labels += example.labels
        positions += getattr(example, "position_ids", None) or range(len(example.input_ids))
    positions_t, labels_t = torch.tensor(positions), torch.tensor(labels)
    labels_t[positions_t == 0] = IGNORE  # an example's first token is not predicted from the one before it
    predicted = (labels_t[1:] != IGNORE).nonzero()[:, 0]  # position i predicts token i + 1
    return {
        "input_ids": torch.tensor([input_ids]),
        "position_ids": positions_t[None],
        "labels": labels_t[None],
        "logits_index": predicted,
        "targets": labels_t[predicted + 1],
    }
