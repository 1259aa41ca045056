"""Padding-free batches: the loss of examples laid end to end equals the loss of each run alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llmkit.train.batching import IGNORE, collate
from llmkit.train.encoding import Encoded, Packed
from llmkit.train.loss import supervised_loss


def solo_loss_sum(model, example: Encoded) -> tuple[float, int]:
    """Summed next-token loss of one example run by itself, and its number of supervised targets."""
    ids = torch.tensor([example.input_ids])
    labels = torch.tensor(example.labels)
    logits = model(input_ids=ids).logits[0, :-1].float()
    targets = labels[1:]
    keep = targets != IGNORE
    return F.cross_entropy(logits[keep], targets[keep], reduction="sum").item(), int(keep.sum())


def test_collate_targets_and_positions():
    a = Encoded(input_ids=[1, 2, 3, 4], labels=[IGNORE, IGNORE, 3, 4])
    b = Encoded(input_ids=[5, 6, 7], labels=[5, 6, 7])  # pt: all supervised, the first is not predictable
    batch = collate([a, b])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6, 7]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2]]
    assert batch["logits_index"].tolist() == [1, 2, 4, 5]  # never position 3 predicting example b's first token
    assert batch["targets"].tolist() == [3, 4, 6, 7]
    assert int((batch["labels"] != IGNORE).sum()) == len(batch["targets"])


def test_packed_rows_keep_their_restarting_positions():
    packed = Packed(input_ids=[1, 2, 3, 4, 5], labels=[IGNORE, 2, 3, IGNORE, 5], position_ids=[0, 1, 2, 0, 1])
    batch = collate([packed])
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["targets"].tolist() == [2, 3, 5]


@torch.no_grad()
def test_padding_free_loss_equals_separate_runs(fresh_smollm):
    model = fresh_smollm.model
    model.config.use_cache = False  # as training runs it: the packed-sequence mask needs no cache
    tokenizer = fresh_smollm.tokenizer
    texts = [("Question: what is two plus two?", " Four."), ("Name a colour.", " Blue, like the sky at noon.")]
    examples = []
    for prompt, answer in texts:
        p, a = tokenizer.encode(prompt), tokenizer.encode(answer)
        examples.append(Encoded(input_ids=p + a, labels=[IGNORE] * len(p) + a))
    solo = [solo_loss_sum(model, e) for e in examples]
    total = sum(s for s, _ in solo)
    count = sum(n for _, n in solo)
    loss = supervised_loss(model, collate(examples), count)
    assert abs(loss.item() - total / count) < 1e-4
