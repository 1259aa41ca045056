"""Automatic prefix caching (vLLM's APC idea) for the engine's per-row KV cache.

A prompt is cut into blocks of `BLOCK` tokens; each full block's keys and values are kept under the hash of
every token up to its end, so a block is found only after the very same prefix. A request whose prompt starts
with blocks already here (a shared system prompt, a few-shot block, a RAG context) copies their keys and values
into its row and prefills only the rest. Memory is bounded: blocks are evicted least recently used first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from llmkit.engine.kv_cache import SlotKVCache

BLOCK = 16


@dataclass
class PrefixStats:
    """Prompt tokens looked up and found, since the start: what `/metrics` and run summaries report."""

    queried_tokens: int = 0
    hit_tokens: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / self.queried_tokens if self.queried_tokens else 0.0


class PrefixCache:
    """Keys and values of prompt blocks, by prefix hash, within `budget_bytes` (least recently used go first)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.blocks: OrderedDict[int, torch.Tensor] = OrderedDict()  # hash -> [2, layers, kv_heads, BLOCK, dim]
        self.nbytes = 0
        self.stats = PrefixStats()

    def load(self, prompt: list[int], row: int, cache: SlotKVCache) -> int:
        """Copy the longest cached prefix of `prompt` into cache `row`; how many tokens it covers.

        At least the last token is left to prefill: its logits are what the request samples from.
        """
        self.stats.queried_tokens += len(prompt)
        found = []
        for key in _block_keys(prompt[:-1]):
            if key not in self.blocks:
                break
            found.append(key)
        if not found:
            return 0
        self._touch(found)
        found = [self.blocks[key] for key in found]
        length = len(found) * BLOCK
        cache.reserve(length)
        stacked = torch.cat(found, dim=3)  # [2, layers, kv_heads, length, dim]
        cache.keys[:, row, :, :length] = stacked[0]
        cache.values[:, row, :, :length] = stacked[1]
        self.stats.hit_tokens += length
        return length

    def store(self, prompt: list[int], row: int, cache: SlotKVCache) -> None:
        """Keep the full blocks of `prompt` (prefilled into cache `row`) that are not kept yet."""
        keys = _block_keys(prompt)
        for index, key in enumerate(keys):
            if key in self.blocks:
                continue
            span = slice(index * BLOCK, (index + 1) * BLOCK)
            block = torch.stack([cache.keys[:, row, :, span], cache.values[:, row, :, span]]).clone()
            if block.nbytes > self.budget_bytes:
                return
            self.blocks[key] = block
            self.nbytes += block.nbytes
        self._touch(keys)
        while self.nbytes > self.budget_bytes:
            _, evicted = self.blocks.popitem(last=False)
            self.nbytes -= evicted.nbytes

    def _touch(self, keys: list[int]) -> None:
        """Mark a chain of blocks used, its first block last: eviction then takes a chain's tail before its head,
        which every later block needs."""
        for key in reversed(keys):
            self.blocks.move_to_end(key)


def _block_keys(tokens: list[int]) -> list[int]:
    """The hash of each full block's whole prefix (so equal keys mean equal tokens from the start)."""
    keys, running = [], 0
    for end in range(BLOCK, len(tokens) + 1, BLOCK):
        running = hash((running, tuple(tokens[end - BLOCK : end])))
        keys.append(running)
    return keys
