"""The causal-LM loss on supervised positions only, for batches from `train.batching.collate`."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supervised_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], num_items: int | torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of the supervised next tokens, summed and divided by `num_items` (the step's count).

    `num_items` spans every micro-batch of a gradient-accumulation step, so long and short
    micro-batches weigh by their tokens, exactly as one large batch would.
    """
    outputs = model(
        input_ids=batch["input_ids"], position_ids=batch["position_ids"], logits_to_keep=batch["logits_index"]
    )
    logits = outputs.logits[0].float()
    total = F.cross_entropy(logits, batch["targets"], reduction="sum")
    return total / (num_items if num_items is not None else batch["targets"].numel())
