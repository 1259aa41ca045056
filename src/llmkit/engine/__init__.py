"""The inference core: sampling parameters, logits processors, the batched decode loop."""
