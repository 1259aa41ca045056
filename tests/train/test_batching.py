"""Padding-free batches: the loss of examples laid end to end equals the loss of each run alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmkit.train import loss as loss_module
from llmkit.train import packed_attention
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
    assert batch["cu_seq_lens_q"].tolist() == [0, 4, 7]
    assert int((batch["labels"] != IGNORE).sum()) == len(batch["targets"])


def test_packed_rows_keep_their_restarting_positions():
    packed = Packed(input_ids=[1, 2, 3, 4, 5], labels=[IGNORE, 2, 3, IGNORE, 5], position_ids=[0, 1, 2, 0, 1])
    batch = collate([packed])
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["targets"].tolist() == [2, 3, 5]


@pytest.mark.parametrize("attention", ["sdpa", packed_attention.NAME])
@torch.no_grad()
def test_padding_free_loss_equals_separate_runs(fresh_smollm, attention):
    model = fresh_smollm.model
    model.config.use_cache = False  # as training runs it: the packed-sequence mask needs no cache
    model.set_attn_implementation(attention)  # transformers' block-diagonal mask, or attention example by example
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


@pytest.mark.parametrize("head_trains", [False, True])
def test_chunked_head_loss_equals_full_logits(monkeypatch, head_trains):
    monkeypatch.setattr(loss_module, "CHUNK", 3)  # 10 rows: chunks of 3, 3, 3 and 1
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False).requires_grad_(head_trains)
    hidden = torch.randn(10, 8, requires_grad=True)
    targets = torch.randint(0, 50, (10,))
    expected = F.cross_entropy(head(hidden), targets, reduction="sum") * 0.5
    expected.backward()
    want = hidden.grad.clone(), head.weight.grad.clone() if head_trains else None
    hidden.grad, head.weight.grad = None, None
    chunked = loss_module.head_loss(head, hidden, targets) * 0.5
    chunked.backward()
    assert torch.allclose(chunked, expected, atol=1e-5)
    assert torch.allclose(hidden.grad, want[0], atol=1e-6)
    assert head.weight.grad is None if not head_trains else torch.allclose(head.weight.grad, want[1], atol=1e-6)
