"""A key/value cache with one row ("slot") per running sequence, each at its own length.

transformers' `DynamicCache` and `StaticCache` hold a batch whose rows share one length. Continuous
batching needs rows that joined at different times, so here every row writes its new key/value at its
own position and the attention mask hides the unused tail. The cache is plain data you can see: two
tensors of shape [layers, slots, kv_heads, capacity, head_dim]. It grows its capacity by doubling.
"""

from __future__ import annotations

import torch
from transformers import Cache


class SlotKVCache:
    """Per-row key/value storage that the model's attention layers update through `update()`."""

    def __init__(
        self,
        num_layers: int,
        num_slots: int,
        num_kv_heads: int,
        head_dim: int,
        max_len: int,
        *,
        dtype: torch.dtype,
        device: torch.device,
        initial_capacity: int = 256,
    ) -> None:
        self.max_len = max_len
        shape = (num_layers, num_slots, num_kv_heads, min(initial_capacity, max_len), head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self._positions = torch.zeros(0, dtype=torch.long, device=device)
        self._rows = torch.zeros(0, dtype=torch.long, device=device)
        self._kv_len = 0

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]

    def reserve(self, length: int) -> None:
        """Make room for `length` positions per row, doubling the capacity as needed."""
        if length <= self.capacity:
            return
        new_capacity = min(max(length, 2 * self.capacity), self.max_len)
        grown_shape = (*self.keys.shape[:3], new_capacity, self.keys.shape[4])
        for name in ("keys", "values"):
            old = getattr(self, name)
            new = old.new_zeros(grown_shape)
            new[:, :, :, : old.shape[3]] = old
            setattr(self, name, new)

    def write_prefix(self, row: int, prefix: Cache, length: int, batch_index: int = 0) -> None:
        """Copy one sequence of `length` tokens from a prefilled, left-padded `DynamicCache` into `row`.

        The sequence is the last `length` positions of its batch row; sliding-window layers keep only
        their last tokens, which land at the end of [0, length).
        """
        self.reserve(length)
        for layer_idx, layer in enumerate(prefix.layers):
            n = min(layer.keys.shape[2], length)
            self.keys[layer_idx, row, :, length - n : length] = layer.keys[batch_index, :, -n:]
            self.values[layer_idx, row, :, length - n : length] = layer.values[batch_index, :, -n:]

    def copy_rows(self, src: list[int], dst: list[int], length: int) -> None:
        """Overwrite the first `length` positions of rows `dst` with rows `src` (beams, forks, compaction)."""
        src_index = torch.tensor(src, device=self.keys.device)
        dst_index = torch.tensor(dst, device=self.keys.device)
        for cache in (self.keys, self.values):
            cache[:, dst_index, :, :length] = cache[:, src_index, :, :length]

    def begin_decode(self, positions: torch.Tensor) -> int:
        """Set where rows 0..B-1 write their next key/value; returns the key length to attend over."""
        self._positions = positions
        self._rows = torch.arange(positions.shape[0], device=positions.device)
        self._kv_len = int(positions.max()) + 1
        self.reserve(self._kv_len)
        return self._kv_len

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Called by each attention layer: store one new token per row, return keys/values to attend to."""
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys[self._rows, :, self._positions] = key_states[:, :, 0]
        values[self._rows, :, self._positions] = value_states[:, :, 0]
        batch = self._rows.shape[0]
        return keys[:batch, :, : self._kv_len], values[:batch, :, : self._kv_len]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._kv_len
