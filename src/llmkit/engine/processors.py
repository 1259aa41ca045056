"""Logits processors with per-row parameters, so one batch can mix greedy, sampled and penalised requests.

Each processor is one small class with one `__call__(logits, history)`, in the shape of transformers'
`generation/logits_process.py`, and matches the transformers processor of the same name row by row.
The difference: parameters are `[B]` tensors, and a row whose value is neutral is left bit-for-bit
untouched. `build_processors` keeps only the processors some row needs, in transformers' order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from llmkit.engine.params import SamplingParams


@dataclass
class TokenHistory:
    """Token ids seen so far by each row of a batch."""

    ids: torch.LongTensor  # [B, T]: prompt then generated ids per row; positions >= lengths[b] hold -1
    lengths: torch.LongTensor  # [B]: valid ids per row
    prompt_lengths: torch.LongTensor  # [B]: how many are prompt; generated = ids[b, prompt_lengths[b]:lengths[b]]

    @classmethod
    def from_rows(
        cls, rows: Sequence[Sequence[int]], prompt_lengths: Sequence[int], device: torch.device | str = "cpu"
    ) -> TokenHistory:
        """Pack each row's ids (prompt then generated) into a right-padded history."""
        width = max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), width), -1, dtype=torch.long)
        for b, row in enumerate(rows):
            ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        return cls(ids.to(device), lengths.to(device), torch.tensor(prompt_lengths, dtype=torch.long).to(device))

    @property
    def generated_lengths(self) -> torch.LongTensor:
        """How many ids each row has generated so far, `[B]`."""
        return self.lengths - self.prompt_lengths

    def counts(self, vocab_size: int, *, generated_only: bool = False) -> torch.Tensor:
        """How often each vocabulary id occurs in each row, `[B, V]` (padding and ids >= V ignored)."""
        positions = torch.arange(self.ids.shape[1], device=self.ids.device)
        valid = positions < self.lengths[:, None]
        if generated_only:
            valid &= positions >= self.prompt_lengths[:, None]
        # Invalid positions land in a spare column past the vocab, dropped at the end.
        index = torch.where(valid & (self.ids >= 0), self.ids.clamp(max=vocab_size), vocab_size)
        counts = torch.zeros(self.ids.shape[0], vocab_size + 1, dtype=torch.long, device=self.ids.device)
        counts.scatter_add_(1, index, torch.ones_like(index))
        return counts[:, :vocab_size]


class LogitsProcessor(Protocol):
    """Maps next-token logits `[B, V]` to new logits `[B, V]`, given what each row has seen."""

    def __call__(self, logits: torch.Tensor, history: TokenHistory) -> torch.Tensor: ...


class LogitBiasLogitsProcessor:
    """Add each row's OpenAI `logit_bias` (token id -> bias in [-100, 100]) to its logits, before anything else."""

    def __init__(self, rows: torch.Tensor, token_ids: torch.Tensor, bias: torch.Tensor):
        self.rows, self.token_ids, self.bias = rows, token_ids, bias  # one entry per (row, biased token)

    def __call__(self, logits: torch.Tensor, history: TokenHistory) -> torch.Tensor:
        return logits.index_put((self.rows, self.token_ids), self.bias.to(logits.dtype), accumulate=True)


class RepetitionPenaltyLogitsProcessor:
    """Divide positive and multiply negative logits of every id seen in prompt or output (CTRL, HF semantics)."""

    def __init__(self, penalty: torch.Tensor):
        self.penalty = penalty[:, None]  # [B, 1]; 1.0 leaves the row as it is

    def __call__(self, logits: torch.Tensor, history: TokenHistory) -> torch.Tensor:
        seen = history.counts(logits.shape[-1]) > 0
        penalty = self.penalty.to(logits.dtype)
        penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
        return torch.where(seen, penalised, logits)


class PresenceFrequencyPenaltyLogitsProcessor:
    """Subtract `frequency * count + presence * (count > 0)` over generated ids only (OpenAI semantics)."""

    def __init__(self, presence: torch.Tensor, frequency: torch.Tensor):
        self.presence = presence[:, None]
        self.frequency = frequency[:, None]

    def __call__(self, logits: torch.Tensor, history: TokenHistory) -> torch.Tensor:
        counts = history.counts(logits.shape[-1], generated_only=True)
        penalty = self.frequency * counts + self.presence * (counts > 0)
        return logits - penalty.to(logits.dtype)


class NoRepeatNGramLogitsProcessor:
    """Forbid any token that would repeat an n-gram already in the row's prompt or output (HF semantics)."""

    def __init__(self, ngram_size: torch.Tensor):
        self.ngram_size = ngram_size  # [B]; 0 turns it off for that row

    def __call__(self, logits: torch.Tensor, history: TokenHistory) -> torch.Tensor:
        vocab_size = logits.shape[-1]
        banned = torch.zeros(logits.shape[0], vocab_size + 1, dtype=torch.bool, device=logits.device)
        # One pass per distinct n (a handful), each vectorised over the rows that use it.
        for n in self.ngram_size.unique().tolist():
            if n == 0 or n > history.ids.shape[1]:
                continue
            rows = (self.ngram_size == n).nonzero().squeeze(1)
            ids, lengths = history.ids[rows], history.lengths[rows]
            # The next token completes an n-gram whose first n-1 ids are the row's last n-1 ids.
            prefix_pos = (lengths[:, None] - (n - 1) + torch.arange(n - 1, device=ids.device)).clamp(min=0)
            prefix = ids.gather(1, prefix_pos)
            windows = ids.unfold(1, n, 1)  # [R, T-n+1, n]
            starts = torch.arange(windows.shape[1], device=ids.device)
            matches = (windows[..., :-1] == prefix[:, None, :]).all(-1) & (starts[None, :] <= (lengths - n)[:, None])
            target = torch.where(matches, windows[..., -1].clamp(max=vocab_size), vocab_size)
            banned[rows] = banned[rows].scatter(1, target, True)
        return logits.masked_fill(banned[:, :vocab_size], -float("inf"))


class MinNewTokensLogitsProcessor:
    """Mask EOS and the row's stop token ids until it has generated `min_new_tokens` (HF semantics)."""

    def __init__(self, min_new_tokens: torch.Tensor, stop_ids: torch.Tensor):
        self.min_new_tokens = min_new_tokens  # [B]
        self.stop_ids = stop_ids  # [B, S]: EOS ids plus the row's stop_token_ids, padded with -1

    def __call__(self, logits: torch.Tensor, history: TokenHistory) -> torch.Tensor:
        vocab_size = logits.shape[-1]
        active = history.generated_lengths < self.min_new_tokens
        index = torch.where(self.stop_ids >= 0, self.stop_ids.clamp(max=vocab_size), vocab_size)
        banned = torch.zeros(logits.shape[0], vocab_size + 1, dtype=torch.bool, device=logits.device)
        banned.scatter_(1, index, True)
        return logits.masked_fill(banned[:, :vocab_size] & active[:, None], -float("inf"))


class TemperatureLogitsWarper:
    """Divide each row's logits by its temperature (1.0 for rows that do not sample)."""

    def __init__(self, temperature: torch.Tensor):
        self.temperature = temperature[:, None]

    def __call__(self, logits: torch.Tensor, history: TokenHistory) -> torch.Tensor:
        return logits / self.temperature.to(logits.dtype)


class TopKLogitsWarper:
    """Keep each row's k highest logits (ties with the k-th kept, as in HF); k = 0 leaves the row alone."""

    def __init__(self, top_k: torch.Tensor):
        self.top_k = top_k

    def __call__(self, logits: torch.Tensor, history: TokenHistory) -> torch.Tensor:
        active = self.top_k > 0
        k = self.top_k.clamp(min=1, max=logits.shape[-1])
        # One top-k at the largest k serves every row: row b's threshold is its k[b]-th value.
        top = logits.topk(int(k.max()), dim=-1).values
        threshold = top.gather(1, (k - 1)[:, None])
        return logits.masked_fill((logits < threshold) & active[:, None], -float("inf"))


class TopPLogitsWarper:
    """Keep the smallest set of most likely tokens whose probability reaches top_p (the top token always stays)."""

    def __init__(self, top_p: torch.Tensor):
        self.top_p = top_p

    def __call__(self, logits: torch.Tensor, history: TokenHistory) -> torch.Tensor:
        active = self.top_p < 1.0
        # Same arithmetic as HF (ascending sort, drop cumulative mass <= 1 - p) so masks agree exactly.
        sorted_logits, sorted_indices = logits.sort(dim=-1, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - self.top_p).to(cumulative.dtype)[:, None]
        remove_sorted[:, -1] = False  # min_tokens_to_keep = 1
        remove = remove_sorted.scatter(1, sorted_indices, remove_sorted)
        return logits.masked_fill(remove & active[:, None], -float("inf"))


class MinPLogitsWarper:
    """Drop tokens whose probability is below min_p times the top token's (the top token always stays)."""

    def __init__(self, min_p: torch.Tensor):
        self.min_p = min_p

    def __call__(self, logits: torch.Tensor, history: TokenHistory) -> torch.Tensor:
        active = self.min_p > 0.0
        probs = logits.softmax(dim=-1)
        top = probs.amax(dim=-1, keepdim=True)
        remove = probs < self.min_p.to(probs.dtype)[:, None] * top
        remove.scatter_(1, probs.argmax(dim=-1, keepdim=True), False)  # min_tokens_to_keep = 1
        return logits.masked_fill(remove & active[:, None], -float("inf"))


def build_processors(
    params: Sequence[SamplingParams],
    eos_token_ids: Sequence[int],
    *,
    warpers: bool = True,
    device: torch.device | str = "cpu",
) -> list[LogitsProcessor]:
    """The processors this batch needs, in transformers' order; `warpers=False` leaves out sampling warpers.

    Logit bias comes first (as in vLLM). Bias, penalties and masks apply to every row; warpers (temperature,
    top-k, top-p, min-p) only to rows that sample, so greedy rows keep their exact logits.
    """

    def column(name: str, neutral: float, dtype: torch.dtype, sampling_only: bool = False) -> torch.Tensor | None:
        """Each row's value of `name` (neutral where a warper skips the row), or None if every row is neutral."""
        values = [getattr(p, name) if p.sampling or not sampling_only else neutral for p in params]
        if all(v == neutral for v in values):
            return None
        return torch.tensor(values, dtype=dtype, device=device)

    processors: list[LogitsProcessor] = []
    if any(p.logit_bias for p in params):
        processors.append(_logit_bias(params, device))
    if (penalty := column("repetition_penalty", 1.0, torch.float32)) is not None:
        processors.append(RepetitionPenaltyLogitsProcessor(penalty))
    presence = column("presence_penalty", 0.0, torch.float32)
    frequency = column("frequency_penalty", 0.0, torch.float32)
    if presence is not None or frequency is not None:
        zeros = torch.zeros(len(params), device=device)
        processors.append(
            PresenceFrequencyPenaltyLogitsProcessor(
                zeros if presence is None else presence, zeros if frequency is None else frequency
            )
        )
    if (ngram_size := column("no_repeat_ngram_size", 0, torch.long)) is not None:
        processors.append(NoRepeatNGramLogitsProcessor(ngram_size))
    if (min_new_tokens := column("min_new_tokens", 0, torch.long)) is not None:
        stops = [list(eos_token_ids) + list(p.stop_token_ids) for p in params]
        width = max(len(s) for s in stops)
        padded = torch.tensor([s + [-1] * (width - len(s)) for s in stops], dtype=torch.long, device=device)
        processors.append(MinNewTokensLogitsProcessor(min_new_tokens, padded))
    if not warpers:
        return processors

    # transformers' warper order: temperature, top-k, top-p, min-p.
    if (temperature := column("temperature", 1.0, torch.float32, sampling_only=True)) is not None:
        processors.append(TemperatureLogitsWarper(temperature))
    if (top_k := column("top_k", 0, torch.long, sampling_only=True)) is not None:
        processors.append(TopKLogitsWarper(top_k))
    # float64 so that `1 - top_p` is rounded once, as transformers does with a Python float.
    if (top_p := column("top_p", 1.0, torch.float64, sampling_only=True)) is not None:
        processors.append(TopPLogitsWarper(top_p))
    if (min_p := column("min_p", 0.0, torch.float32, sampling_only=True)) is not None:
        processors.append(MinPLogitsWarper(min_p))
    return processors


def _logit_bias(params: Sequence[SamplingParams], device: torch.device | str) -> LogitBiasLogitsProcessor:
    """The batch's biases as flat (row, token id, bias) coordinates."""
    entries = [(row, token, bias) for row, p in enumerate(params) for token, bias in p.logit_bias.items()]
    rows, token_ids, bias = zip(*entries)
    return LogitBiasLogitsProcessor(
        torch.tensor(rows, device=device), torch.tensor(token_ids, device=device), torch.tensor(bias, device=device)
    )


def apply_processors(
    processors: Sequence[LogitsProcessor], logits: torch.Tensor, history: TokenHistory
) -> torch.Tensor:
    """Run the processors in order."""
    for processor in processors:
        logits = processor(logits, history)
    return logits
