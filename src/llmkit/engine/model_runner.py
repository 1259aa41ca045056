"""Runs the transformers model forward for the engine: batched prefill of new prompts, batched decode.

Prefill uses transformers' own `DynamicCache` (so prompt processing is exactly what `model.generate`
does) and then copies the result into the engine's `SlotKVCache` row. Decode feeds one token per row,
each at its own position, with an explicit attention mask per row.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, PreTrainedModel

from llmkit.engine.kv_cache import SlotKVCache


class ModelRunner:
    """Owns the KV cache and turns token ids into next-token logits."""

    def __init__(self, model: PreTrainedModel, *, num_slots: int, max_len: int) -> None:
        self.model = model
        config = model.config.get_text_config()
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.device = next(model.parameters()).device
        self.cache = SlotKVCache(
            num_layers=config.num_hidden_layers,
            num_slots=num_slots,
            num_kv_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
            head_dim=head_dim,
            max_len=max_len,
            dtype=model.dtype,
            device=self.device,
        )
        # Models with per-layer attention types (e.g. Gemma 3's sliding-window layers) take one mask per type.
        layer_types = getattr(config, "layer_types", None)
        window = getattr(config, "sliding_window", None)
        self.mask_windows: dict[str, int | None] | None = (
            {kind: window if kind == "sliding_attention" else None for kind in set(layer_types)}
            if layer_types
            else None
        )

    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]], rows: list[int]) -> torch.Tensor:
        """Process whole prompts into cache `rows`, in one left-padded forward; returns next-token logits [N, V].

        A single prompt runs unpadded, exactly as `model.generate` runs it.
        """
        longest = max(len(p) for p in prompts)
        input_ids = torch.zeros((len(prompts), longest), dtype=torch.long, device=self.device)
        attention = torch.zeros_like(input_ids)
        for i, prompt in enumerate(prompts):
            input_ids[i, longest - len(prompt) :] = torch.tensor(prompt, device=self.device)
            attention[i, longest - len(prompt) :] = 1
        padded = len(prompts) > 1 and not bool(attention.all())
        prefix = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention if padded else None,
            position_ids=(attention.cumsum(-1) - 1).clamp(min=0) if padded else None,
            past_key_values=prefix,
            use_cache=True,
            logits_to_keep=1,
        )
        for i, (prompt, row) in enumerate(zip(prompts, rows)):
            self.cache.write_prefix(row, prefix, len(prompt), batch_index=i)
        return out.logits[:, -1].float()

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One step for rows 0..B-1: `tokens[b]` sits at `positions[b]`; returns next-token logits [B, V]."""
        kv_len = self.cache.begin_decode(positions)
        out = self.model(
            input_ids=tokens[:, None],
            position_ids=positions[:, None],
            attention_mask=self._decode_mask(positions, kv_len),
            past_key_values=self.cache,
            use_cache=True,
        )
        return out.logits[:, -1].float()

    def _decode_mask(self, positions: torch.Tensor, kv_len: int) -> torch.Tensor | dict[str, torch.Tensor]:
        """Boolean [B, 1, 1, kv_len] masks: row b sees keys 0..positions[b] (within the window, if any)."""
        keys = torch.arange(kv_len, device=positions.device)[None, :]
        query = positions[:, None]
        causal = keys <= query
        if self.mask_windows is None:
            return causal[:, None, None, :]
        return {
            kind: (causal if window is None else causal & (keys > query - window))[:, None, None, :]
            for kind, window in self.mask_windows.items()
        }
