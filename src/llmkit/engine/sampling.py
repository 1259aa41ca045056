"""Choosing the next token from processed logits: argmax for greedy rows, a seeded draw for sampling rows."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from llmkit.engine.params import SamplingParams


def make_generator(seed: int | None, device: torch.device | str) -> torch.Generator | None:
    """A request's own random generator, or None to draw from torch's global one."""
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(seed)


def select_tokens(
    logits: torch.Tensor, params: Sequence[SamplingParams], generators: Sequence[torch.Generator | None]
) -> torch.LongTensor:
    """Next token per row `[B]`: argmax where the row is greedy, a multinomial draw where it samples."""
    tokens = logits.argmax(dim=-1)
    sampling = [b for b, p in enumerate(params) if p.sampling]
    if not sampling:
        return tokens
    probs = logits[sampling].float().softmax(dim=-1)
    # Each seeded row draws from its own generator, so its tokens do not depend on its batch mates.
    unseeded = [i for i, b in enumerate(sampling) if generators[b] is None]
    for i, b in enumerate(sampling):
        if generators[b] is not None:
            tokens[b] = torch.multinomial(probs[i : i + 1], 1, generator=generators[b]).squeeze()
    if unseeded:
        drawn = torch.multinomial(probs[unseeded], 1).squeeze(1)
        tokens[[sampling[i] for i in unseeded]] = drawn
    return tokens


def token_logprobs(
    logprobs: torch.Tensor, chosen: torch.LongTensor, top_n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From a `[B, V]` log-softmax: the chosen ids' logprobs `[B]`, and the top-n logprobs `[B, n]` with their ids."""
    chosen_logprobs = logprobs.gather(1, chosen[:, None]).squeeze(1)
    top = logprobs.topk(top_n, dim=-1)
    return chosen_logprobs, top.values, top.indices
