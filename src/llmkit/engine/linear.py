"""Linear layers laid out once for the fastest CPU kernel: floats as the kernel reads them, or weight-only int8 / int4.

Measured on these 2-core machines, one 49,152 x 576 GEMV (the default model's LM head): fp32 `F.linear` 8.8 ms,
fp32 `x @ W^T` with W^T stored contiguous 5.5 ms; bf16 `F.linear` 4.2 ms (and `x @ W^T` 148 ms: bf16 keeps the
`[out, in]` layout); int8 through `aten._weight_int8pack_mm` 2.3 ms and int4 through
`aten._weight_int4pack_mm_for_cpu` 2.1 ms, both with bf16 activations (with fp32 ones they take 14 and 29 ms, so
fp32 inputs are cast). Quantised weights are symmetric per output channel (int8) or asymmetric per group of 32
input columns (int4), as torchao's weight-only recipes do.
"""

from __future__ import annotations

import torch

from llmkit.engine.backends import Quantization

INT4_GROUP = 32
INT4_INNER_K_TILES = 2


class PackedLinear:
    """`y = x W^T + b` for a `[out, in]` weight, in the layout its kernel reads fastest.

    Float weights are used as they are (not copied); fp32 ones also get a transposed copy, which one-row inputs
    (a single stream's decode step) read faster, while batches are faster through `F.linear` on `W` itself.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, quantize: Quantization | None = None) -> None:
        self.out_features, self.in_features = weight.shape
        self.bias = bias.detach() if bias is not None else None
        self.quantize = quantize if _quantizable(weight, quantize) else None
        weight = weight.detach()
        self.weight_t = None
        if self.quantize == "int8":
            self.weight, self.scales = _int8(weight)
        elif self.quantize == "int4":
            self.weight, self.scales = _int4(weight)
        else:
            self.weight = weight
            if weight.dtype == torch.float32:
                self.weight_t = weight.t().contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        if self.quantize is not None:
            y = self._quantized(x.to(self.scales.dtype)).to(x.dtype)
        elif self.weight_t is not None and x.shape[0] == 1:
            y = x @ self.weight_t
        else:
            y = torch.nn.functional.linear(x, self.weight)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape, self.out_features)

    def _quantized(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantize == "int8":
            return torch.ops.aten._weight_int8pack_mm(x, self.weight, self.scales)
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.weight, INT4_GROUP, self.scales)

    @property
    def nbytes(self) -> int:
        """Bytes one step reads: the weights in the layout used (and scales, bias)."""
        extra = self.scales.nbytes if self.quantize else 0
        return self.weight.nbytes + extra + (self.bias.nbytes if self.bias is not None else 0)


def fused(linears: list[torch.nn.Linear], quantize: Quantization | None = None) -> PackedLinear:
    """One layer computing several that read the same input (q, k, v; gate, up): their outputs side by side.

    Unquantised, the modules' own weights become row slices of the fused one, so both share one copy.
    """
    weight = torch.cat([linear.weight.detach() for linear in linears])
    biases = [linear.bias for linear in linears]
    bias = None
    if any(b is not None for b in biases):
        bias = torch.cat([b.detach() if b is not None else weight.new_zeros(l.out_features) for b, l in zip(biases, linears)])
    layer = PackedLinear(weight, bias, quantize)
    if layer.quantize is None:
        start = 0
        for linear in linears:
            linear.weight.data = weight[start : start + linear.out_features]
            start += linear.out_features
    return layer


def _quantizable(weight: torch.Tensor, quantize: Quantization | None) -> bool:
    """int4 packing needs input columns in whole groups and output rows in multiples of 8 (else floats stay)."""
    if quantize == "int4":
        return weight.shape[1] % INT4_GROUP == 0 and weight.shape[0] % 8 == 0
    return quantize is not None


def _int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: the weight `[out, in]` as int8 and its bf16 scales `[out]` (the kernel's
    fast path takes bf16 activations)."""
    w = weight.float()
    scales = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    return torch.round(w / scales[:, None]).clamp(-128, 127).to(torch.int8), scales.to(torch.bfloat16)


def _int4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric int4 per group of input columns, packed for the CPU kernel, with its `[groups, out, 2]` scales and
    zero points (torchao's layout: `w = (q - 8) * scale + zero`)."""
    w = weight.float()
    out_features, in_features = w.shape
    groups = w.reshape(out_features, in_features // INT4_GROUP, INT4_GROUP)
    low, high = groups.amin(dim=-1, keepdim=True), groups.amax(dim=-1, keepdim=True)
    scales = ((high - low) / 15).clamp(min=1e-6)
    zeros = low + scales * 8
    q = torch.round((groups - low) / scales).clamp(0, 15).to(torch.int32).reshape(out_features, in_features)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, INT4_INNER_K_TILES)
    scales_and_zeros = torch.cat([scales, zeros], dim=-1).permute(1, 0, 2).contiguous()  # [groups, out, 2]
    return packed, scales_and_zeros.to(torch.bfloat16)
