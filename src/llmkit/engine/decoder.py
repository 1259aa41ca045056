"""Our own forward for the decoders people run locally (the Llama family and Gemma 3), in the spirit of gpt-fast.

The weights come from the loaded transformers model, laid out once for the fastest CPU kernel (`PackedLinear`):
q, k, v fused into one matmul and gate, up into another. Keys and values are written straight into the engine's
per-row `SlotKVCache`, attention is SDPA with each row's own mask, and the LM head runs only on the positions that
sample. Per step this is about a dozen ops a layer instead of the ~70 of the transformers modules, which is where
a 135M model's decode time goes on a CPU. The transformers forward (`ModelRunner`) stays for every other
architecture, for LoRA adapters, and as the reference the tests compare against.

`Decoder.of(..., compile=True)` runs the blocks through `torch.compile` (dynamic shapes: one graph for every batch
size and length). Inductor's compiled artefacts are cached on disk under llmkit's home, so only the first start on a
machine pays for the compile.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from llmkit.engine.kv_cache import SlotKVCache
from llmkit.engine.linear import PackedLinear, Quantization, fused
from llmkit.hub.paths import compile_cache_dir

SUPPORTED = {"llama", "mistral", "qwen2", "qwen3", "gemma3_text"}
ROPE_POSITIONS = 32768
_DECODERS: weakref.WeakKeyDictionary[PreTrainedModel, dict[Quantization | None, Decoder]] = weakref.WeakKeyDictionary()
ACTIVATIONS = {"silu": F.silu, "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh")}


def unsupported_reason(model: PreTrainedModel) -> str | None:
    """Why `Decoder` cannot run `model` (None when it can)."""
    config = model.config.get_text_config()
    if config.model_type not in SUPPORTED:
        return f"architecture {config.model_type!r} (ours: {', '.join(sorted(SUPPORTED))})"
    if type(model).__module__.startswith("peft."):
        return "a LoRA adapter is attached"
    if getattr(config, "attn_logit_softcapping", None):
        return "attention logit soft-capping"
    activation = getattr(config, "hidden_activation", None) or config.hidden_act
    if activation not in ACTIVATIONS:
        return f"activation {activation!r}"
    return None


@dataclass
class Norm:
    """RMSNorm over the last dimension as the family writes it: Llama multiplies by `w` after casting back to the
    activations' dtype, Gemma by `1 + w` in float32 before. `weight` may hold one row per head (`[heads, D]`), so q
    and k are normed in one call."""

    weight: torch.Tensor
    eps: float
    gemma: bool

    @classmethod
    def of(cls, modules: list[torch.nn.Module], gemma: bool, repeats: list[int] | None = None) -> Norm:
        """The norm of `modules` (one, or q_norm and k_norm repeated over their heads)."""
        weights = [m.weight.detach().float() + 1.0 if gemma else m.weight.detach() for m in modules]
        if repeats is not None:
            weights = [w.expand(n, -1) for w, n in zip(weights, repeats)]
        eps = getattr(modules[0], "variance_epsilon", None) or modules[0].eps
        return cls(torch.cat(weights) if repeats is not None else weights[0].clone(), eps, gemma)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        if self.gemma:
            return (normed * self.weight).type_as(x)
        return self.weight * normed.to(x.dtype)


@dataclass
class Layer:
    """One decoder block's weights and attention settings (`post_*` norms: Gemma's sandwich norms)."""

    attn_norm: Norm
    qkv: PackedLinear
    qk_norm: Norm | None
    o: PackedLinear
    post_attn_norm: Norm | None
    mlp_norm: Norm
    gate_up: PackedLinear
    down: PackedLinear
    post_mlp_norm: Norm | None
    rope: str
    window: int | None
    scale: float


class Decoder:
    """The forward of a supported decoder over a `SlotKVCache`: prefill one prompt into a row, or decode one token
    for rows 0..B-1."""

    @classmethod
    def of(
        cls, model: PreTrainedModel, max_len: int, quantize: Quantization | None = None, compile: bool = False
    ) -> Decoder:
        """The decoder of `model` with these weights, built once per model and quantisation and shared by every
        engine on it (it holds weights, never a request's state), so a second engine costs only its cache. Once one
        engine asks for `compile`, every engine on the decoder runs compiled."""
        built = _DECODERS.setdefault(model, {})
        decoder = built.get(quantize)
        if decoder is None or decoder.max_len < max_len:
            decoder = built[quantize] = cls(model, max_len, quantize)
        if compile:
            decoder.compile()
        return decoder

    def __init__(self, model: PreTrainedModel, max_len: int, quantize: Quantization | None = None) -> None:
        config = model.config.get_text_config()
        base = model.get_decoder()
        gemma = config.model_type.startswith("gemma")
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.embedding = base.embed_tokens.weight.detach()
        self.embed_scale = float(getattr(base.embed_tokens, "scalar_embed_scale", 1.0))
        self.activation = ACTIVATIONS[getattr(config, "hidden_activation", None) or config.hidden_act]
        self.layer_types = getattr(config, "layer_types", None)
        self.layers = [self._layer(layer, i, gemma, quantize) for i, layer in enumerate(base.layers)]
        self.norm = Norm.of([base.norm], gemma)
        self.lm_head = PackedLinear(model.get_output_embeddings().weight, None, quantize)
        self.softcap = getattr(config, "final_logit_softcapping", None)
        # RoPE tables for the model's whole window (up to 32k positions): engines with other contexts share them.
        self.max_len = max(max_len, min(getattr(config, "max_position_embeddings", 0) or 0, ROPE_POSITIONS))
        self.rope = self._rope_tables(base, self.max_len, model.dtype)
        self.blocks = self._blocks
        self.compiled = False

    def compile(self) -> None:
        """Run the blocks through `torch.compile` from now on; the compiled code is cached on disk (inductor's FX
        graph cache in `compile_cache_dir()`, unless `TORCHINDUCTOR_CACHE_DIR` says otherwise)."""
        if self.compiled:
            return
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir()))
        self.blocks = torch.compile(self._blocks, dynamic=True)
        self.compiled = True

    def _layer(self, layer: torch.nn.Module, index: int, gemma: bool, quantize: Quantization | None) -> Layer:
        attn, mlp = layer.self_attn, layer.mlp
        heads = [self.num_heads, self.num_kv_heads]
        return Layer(
            attn_norm=Norm.of([layer.input_layernorm], gemma),
            qkv=fused([attn.q_proj, attn.k_proj, attn.v_proj], quantize),
            qk_norm=Norm.of([attn.q_norm, attn.k_norm], gemma, heads) if hasattr(attn, "q_norm") else None,
            o=PackedLinear(attn.o_proj.weight, attn.o_proj.bias, quantize),
            post_attn_norm=Norm.of([layer.post_attention_layernorm], gemma) if gemma else None,
            mlp_norm=Norm.of([layer.pre_feedforward_layernorm if gemma else layer.post_attention_layernorm], gemma),
            gate_up=fused([mlp.gate_proj, mlp.up_proj], quantize),
            down=PackedLinear(mlp.down_proj.weight, mlp.down_proj.bias, quantize),
            post_mlp_norm=Norm.of([layer.post_feedforward_layernorm], gemma) if gemma else None,
            rope=self.layer_types[index] if self.layer_types else "default",
            window=getattr(attn, "sliding_window", None),
            scale=attn.scaling,
        )

    def _rope_tables(self, base: torch.nn.Module, max_len: int, dtype: torch.dtype) -> dict[str, tuple[torch.Tensor, ...]]:
        """cos and sin for every position, per rope kind, from the model's own rotary module (so any scaling it
        applies, Llama 3's included, is the same)."""
        positions = torch.arange(max_len, device=self.embedding.device)[None]
        probe = torch.zeros(1, dtype=dtype, device=self.embedding.device)
        if self.layer_types is None:
            return {"default": tuple(t[0] for t in base.rotary_emb(probe, positions))}
        return {kind: tuple(t[0] for t in base.rotary_emb(probe, positions, kind)) for kind in set(self.layer_types)}

    @torch.inference_mode()
    def prefill(self, prompt: list[int], row: int, cache: SlotKVCache, start: int = 0) -> torch.Tensor:
        """Write `prompt`'s keys and values into cache `row` (from position `start` on: the row already holds the
        ones before it); the logits after its last token, `[V]`."""
        cache.reserve(len(prompt))
        tokens = torch.tensor([prompt[start:]], device=self.embedding.device)
        positions = torch.arange(start, len(prompt), device=tokens.device)[None]
        hidden = self.blocks(tokens, positions, slice(row, row + 1), cache, len(prompt))
        return self._logits(hidden[:, -1])[0]

    def scratch_cache(self, length: int) -> SlotKVCache:
        """A one-row cache for `length` tokens, for scoring text outside the engine's rows."""
        return SlotKVCache(
            len(self.layers), 1, self.num_kv_heads, self.head_dim, length, dtype=self.embedding.dtype,
            device=self.embedding.device, initial_capacity=length,
        )

    @torch.inference_mode()
    def prompt_logits(self, prompt: list[int], cache: SlotKVCache, start: int = 0) -> torch.Tensor:
        """The logits after each token of `prompt` from position `start` on, `[T - start, V]`, in row 0 of `cache`
        (which already holds the keys and values before `start`)."""
        tokens = torch.tensor([prompt[start:]], device=self.embedding.device)
        positions = torch.arange(start, len(prompt), device=tokens.device)[None]
        return self._logits(self.blocks(tokens, positions, slice(0, 1), cache, len(prompt))[0])

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, cache: SlotKVCache) -> torch.Tensor:
        """One token for each of rows 0..B-1, `tokens[b]` at `positions[b]`; next-token logits `[B, V]`."""
        kv_len = int(positions.max()) + 1
        cache.reserve(kv_len)
        hidden = self.blocks(tokens[:, None], positions[:, None], slice(0, len(tokens)), cache, kv_len)
        return self._logits(hidden[:, 0])

    def _blocks(
        self, tokens: torch.Tensor, positions: torch.Tensor, rows: slice, cache: SlotKVCache, kv_len: int
    ) -> torch.Tensor:
        """Every decoder block over `tokens` `[B, T]` at `positions` `[B, T]` in cache `rows`; hidden `[B, T, H]`."""
        x = F.embedding(tokens, self.embedding)
        if self.embed_scale != 1.0:
            x = x * torch.tensor(self.embed_scale, dtype=x.dtype)
        batch, length = tokens.shape
        row_index = torch.arange(rows.start, rows.stop, device=tokens.device)[:, None]
        masks = {window: _mask(positions, kv_len, window) for window in {layer.window for layer in self.layers}}
        ropes = {kind: (cos[positions][:, None], sin[positions][:, None]) for kind, (cos, sin) in self.rope.items()}
        query_heads = self.num_heads + self.num_kv_heads
        for index, layer in enumerate(self.layers):
            qkv = layer.qkv(layer.attn_norm(x)).view(batch, length, query_heads + self.num_kv_heads, self.head_dim)
            qk, v = qkv[:, :, :query_heads], qkv[:, :, query_heads:]
            if layer.qk_norm is not None:
                qk = layer.qk_norm(qk)
            qk = _rotate(qk.transpose(1, 2), *ropes[layer.rope])  # q and k in one go: [B, heads, T, D]
            q, k = qk[:, : self.num_heads], qk[:, self.num_heads :]
            keys, values = cache.keys[index], cache.values[index]
            keys[row_index, :, positions] = k.transpose(1, 2)
            values[row_index, :, positions] = v
            attended = F.scaled_dot_product_attention(
                q, keys[rows, :, :kv_len], values[rows, :, :kv_len], attn_mask=masks[layer.window],
                scale=layer.scale, enable_gqa=self.num_heads != self.num_kv_heads,
            )
            out = layer.o(attended.transpose(1, 2).reshape(batch, length, -1))
            x = x + (layer.post_attn_norm(out) if layer.post_attn_norm is not None else out)
            gate, up = layer.gate_up(layer.mlp_norm(x)).chunk(2, dim=-1)
            out = layer.down(self.activation(gate) * up)
            x = x + (layer.post_mlp_norm(out) if layer.post_mlp_norm is not None else out)
        return x

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits (float32) of the positions that sample, `[N, H]` -> `[N, V]`."""
        logits = self.lm_head(self.norm(hidden)).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding, transformers' `apply_rotary_pos_emb` for one of q or k (`[B, heads, T, D]`)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _mask(positions: torch.Tensor, kv_len: int, window: int | None) -> torch.Tensor:
    """`[B, 1, T, kv_len]`: query t of row b sees keys up to its own position (and within the window, if any)."""
    keys = torch.arange(kv_len, device=positions.device)[None, None, :]
    query = positions[:, :, None]
    visible = keys <= query
    if window is not None:
        visible &= keys > query - window
    return visible[:, None]
