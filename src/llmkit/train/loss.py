"""The causal-LM loss on supervised positions only, for batches from `train.batching.collate`.

The LM head runs only where the next token is supervised, and there in chunks: each chunk's logits
(chunk × vocabulary, float32) are turned into its loss and gradients at once and freed, so the full
[supervised tokens × 49,152] logits of the default model never exist, neither in the forward nor saved
for the backward. The head's matmuls are the same three an ordinary loss runs (logits, grad of the
hidden states, grad of the head when it trains), so nothing is recomputed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK = 512  # positions per chunk: 512 × 49,152 float32 logits is 100 MB


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """sum over rows of cross_entropy(hidden @ weight.T, targets), gradients computed chunk by chunk in the forward."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        total = hidden.new_zeros((), dtype=torch.float32)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        weight32 = weight.float()
        for start in range(0, hidden.shape[0], CHUNK):
            rows = hidden[start : start + CHUNK].float()
            chosen = targets[start : start + CHUNK]
            logits = rows @ weight32.T
            log_normaliser = torch.logsumexp(logits, dim=-1)
            total += (log_normaliser - logits.gather(1, chosen[:, None])[:, 0]).sum()
            grad_logits = logits.sub_(log_normaliser[:, None]).exp_()  # softmax, in place: d(sum of CE)/d logits
            grad_logits[torch.arange(len(rows)), chosen] -= 1  # ... is softmax - one_hot(target)
            grad_hidden[start : start + CHUNK] = (grad_logits @ weight32).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight += grad_logits.T @ rows
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        scaled_weight = None if grad_weight is None else (grad_weight * grad_output).to(ctx.weight_dtype)
        return grad_hidden * grad_output.to(grad_hidden.dtype), scaled_weight, None


def head_loss(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of `head(hidden)` against `targets`: chunked for a plain bias-free linear head (every
    causal LM's) whose whole weight is here, the ordinary way for anything else (a PEFT-wrapped head,
    `additional_target: lm_head`, a weight DeepSpeed ZeRO-3 or FSDP has sharded away)."""
    whole = tuple(head.weight.shape) == (head.out_features, head.in_features) and not hasattr(head.weight, "device_mesh")
    if type(head) is torch.nn.Linear and head.bias is None and whole:
        return ChunkedLinearCrossEntropy.apply(hidden, head.weight, targets)
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def supervised_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], num_items: int | torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of the supervised next tokens, summed and divided by `num_items` (the step's count).

    `num_items` spans every micro-batch of a gradient-accumulation step, so long and short
    micro-batches weigh by their tokens, exactly as one large batch would.
    """
    # The model's own forward (so DDP, DeepSpeed and FSDP see it), with no logits: the head runs in `head_loss`.
    outputs = model(
        input_ids=batch["input_ids"], position_ids=batch["position_ids"], cu_seq_lens_q=batch["cu_seq_lens_q"],
        logits_to_keep=batch["logits_index"][:0], output_hidden_states=True,
    )
    hidden = outputs.hidden_states[-1][0]  # after the final norm
    head = unwrapped(model).get_output_embeddings()
    total = head_loss(head, hidden[batch["logits_index"]], batch["targets"])
    return total / (num_items if num_items is not None else batch["targets"].numel())


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside DDP / DeepSpeed (`.module`) and PEFT (`get_base_model`) wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model
