"""Attention for padding-free training rows: each example attends only to itself, at the cost of its own length.

A packed row of n examples is one [1, T] sequence whose position ids restart per example. transformers' `sdpa`
then builds a block-diagonal T×T mask and computes all T² scores, n times the work the examples need (8
alpaca examples of ~200 tokens: 8× the attention FLOPs and saved activations). `packed_sdpa` instead runs
transformers' own `sdpa_attention_forward` once per example, causal within it, from the boundaries the
batch carries (`cu_seq_lens_q`, the cumulative lengths flash-attention's varlen kernels take). Calls without
boundaries (evaluation of TRL's padded batches, generation) are plain `sdpa` with the mask sdpa would get.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

NAME = "llmkit_packed_sdpa"


def packed_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    cu_seq_lens_q: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """[1, heads, T, dim] tensors of a packed row → [1, T, heads, dim], attention restricted to each example."""
    kwargs.pop("cu_seq_lens_k", None)
    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    lengths = cu_seq_lens_q.diff().tolist()
    # `split`, not one slice per example: its backward is one concatenation, where slices' would each add
    # into a zero tensor the size of the whole row.
    outputs = [
        sdpa_attention_forward(module, q, k, v, None, **kwargs)[0]
        for q, k, v in zip(query.split(lengths, dim=2), key.split(lengths, dim=2), value.split(lengths, dim=2))
    ]
    return torch.cat(outputs, dim=1), None


AttentionInterface.register(NAME, packed_sdpa)
AttentionMaskInterface.register(NAME, sdpa_mask)  # unpacked calls get exactly the mask sdpa would
