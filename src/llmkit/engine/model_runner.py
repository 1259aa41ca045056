"""Runs the model forward for the engine: batched prefill of new prompts, batched decode.

`Runner` is what the engine needs from a backend; `ModelRunner` is the torch one. For the architectures
`Decoder` knows (the Llama family, Gemma 3) it runs our own compact forward, optionally on weight-only int8 /
int4 weights; for the rest, and for batches with LoRA rows, the transformers forward. That one prefills with
transformers' own `DynamicCache` (exactly what `model.generate` does) and copies the result into the engine's
`SlotKVCache` row; decode feeds one token per row, each at its own position, with an explicit mask per row.
Rows may run different LoRA adapters in one forward (PEFT's mixed-adapter batches), so many fine-tunes share
one base model in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import torch
from transformers import DynamicCache, PreTrainedModel

from llmkit.engine.adapters import check_adapter_name
from llmkit.engine.decoder import Decoder, unsupported_reason
from llmkit.engine.kv_cache import SlotKVCache
from llmkit.engine.linear import Quantization
from llmkit.engine.prefix_cache import PrefixCache
from llmkit.errors import InvalidRequestError, ModelNotFoundError

Adapters = Sequence[str | None] | None
"""The LoRA adapter of each row (None: the base model); None for the whole batch: no adapters at all."""
DEFAULT_PREFIX_CACHE_BYTES = 128 * 2**20
Forward = Literal["auto", "llmkit", "transformers"]
"""Whose forward runs the base model: ours where it knows the architecture (auto), ours or an error, or transformers'."""


class Runner(Protocol):
    """A backend: next-token logits for new prompts and for one more token per row, rows in its own cache."""

    device: torch.device
    max_len: int
    vocab_size: int
    eos_token_ids: list[int]
    prefix_cache: PrefixCache | None
    backend_name: str  # what runs the model, in words for banners and `/v1/models`

    def prefill(self, prompts: list[list[int]], rows: list[int], adapters: Adapters = None) -> torch.Tensor: ...

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, adapters: Adapters = None) -> torch.Tensor: ...

    def copy_rows(self, src: list[int], dst: list[int], length: int) -> None: ...

    def prompt_logprobs(self, token_ids: list[int], adapter: str | None = None, *, start: int = 0) -> list[float]: ...

    @property
    def adapters(self) -> dict[str, Path]: ...

    def load_adapter(self, name: str, path: Path) -> None: ...

    def unload_adapter(self, name: str) -> None: ...


class ModelRunner:
    """The transformers backend: owns the KV cache and turns token ids into next-token logits."""

    def __init__(
        self, model: PreTrainedModel, *, num_slots: int, max_len: int, forward: Forward = "auto",
        quantize: Quantization | None = None, compile: bool = False,
        prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
    ) -> None:
        self.model = model
        config = model.config.get_text_config()
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.device = next(model.parameters()).device
        self.max_len = min(max_len, getattr(config, "max_position_embeddings", None) or max_len)
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        eos = getattr(model.generation_config, "eos_token_id", None)
        self.eos_token_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        self.cache = SlotKVCache(
            num_layers=config.num_hidden_layers,
            num_slots=num_slots,
            num_kv_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
            head_dim=head_dim,
            max_len=self.max_len,
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
        self._named_adapters: dict[str, Path] = {}
        self._fixed_adapter = _is_peft(model)  # loaded with `--adapter PATH`: always on, no named ones
        self.decoder = self._decoder(forward, quantize, compile)
        # Prompts that start alike reuse each other's keys and values (our forward only; 0 turns it off).
        self.prefix_cache = PrefixCache(prefix_cache_bytes) if self.decoder is not None and prefix_cache_bytes else None

    def _decoder(self, forward: Forward, quantize: Quantization | None, compile: bool) -> Decoder | None:
        """Our compact forward for this model, or None where transformers' runs it."""
        reason = unsupported_reason(self.model)
        needs_ours = "--quantize" if quantize else "--compile" if compile else "the llmkit forward"
        if reason is not None and (forward == "llmkit" or quantize is not None or compile):
            raise InvalidRequestError(f"{needs_ours} cannot run this model: {reason}")
        if compile and forward == "transformers":
            raise InvalidRequestError("--compile compiles the llmkit forward: leave the forward on auto or llmkit")
        if quantize is not None and self.device.type != "cpu":
            raise InvalidRequestError(
                f"--quantize runs torch's CPU kernels, not on {self.device.type}: on a GPU serve with --backend vllm"
            )
        if reason is not None or forward == "transformers":
            return None
        return Decoder.of(self.model, self.max_len, quantize, compile)

    @property
    def backend_name(self) -> str:
        return f"torch, {self.forward_name} forward"

    @property
    def forward_name(self) -> str:
        """Which forward runs base-model rows, for logs and banners."""
        if self.decoder is None:
            return "transformers"
        quantized = {linear.quantize for layer in self.decoder.layers for linear in (layer.qkv, layer.down)} - {None}
        details = [*quantized, *(["compiled"] if self.decoder.compiled else [])]
        return f"llmkit ({', '.join(details)})" if details else "llmkit"

    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]], rows: list[int], adapters: Adapters = None) -> torch.Tensor:
        """Process whole prompts into cache `rows`, in one left-padded forward; returns next-token logits [N, V].

        A single prompt runs unpadded, exactly as `model.generate` runs it; with our own forward every prompt does.
        """
        if self.decoder is not None and adapters is None:
            return torch.stack([self._prefill_reusing(prompt, row) for prompt, row in zip(prompts, rows)])
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
            **self._adapter_kwargs(adapters, len(prompts)),
        )
        for i, (prompt, row) in enumerate(zip(prompts, rows)):
            self.cache.write_prefix(row, prefix, len(prompt), batch_index=i)
        return out.logits[:, -1].float()

    def _prefill_reusing(self, prompt: list[int], row: int) -> torch.Tensor:
        """Our forward's prefill of one prompt, starting after the longest prefix the prefix cache holds."""
        start = self.prefix_cache.load(prompt, row, self.cache) if self.prefix_cache else 0
        logits = self.decoder.prefill(prompt, row, self.cache, start)
        if self.prefix_cache:
            self.prefix_cache.store(prompt, row, self.cache)
        return logits

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, adapters: Adapters = None) -> torch.Tensor:
        """One step for rows 0..B-1: `tokens[b]` sits at `positions[b]`; returns next-token logits [B, V]."""
        if self.decoder is not None and adapters is None:
            return self.decoder.decode(tokens, positions, self.cache)
        kv_len = self.cache.begin_decode(positions)
        out = self.model(
            input_ids=tokens[:, None],
            position_ids=positions[:, None],
            attention_mask=self._decode_mask(positions, kv_len),
            past_key_values=self.cache,
            use_cache=True,
            **self._adapter_kwargs(adapters, len(tokens)),
        )
        return out.logits[:, -1].float()

    @torch.inference_mode()  # the cache is an inference tensor once it has grown inside prefill
    def copy_rows(self, src: list[int], dst: list[int], length: int) -> None:
        """Overwrite the first `length` cache positions of rows `dst` with rows `src` (beams, forks, compaction)."""
        self.cache.copy_rows(src, dst, length)

    @torch.inference_mode()
    def prompt_logprobs(self, token_ids: list[int], adapter: str | None = None, *, start: int = 0) -> list[float]:
        """Log-probability of each token from `start` on given the ones before it (the first token's is 0.0).

        Our forward computes only from the longest prefix the prefix cache holds, and keeps the blocks before
        `start`: options scored after one question (`eval mc`) compute the question once.
        """
        first = max(start, 1)
        ids = torch.tensor(token_ids, device=self.device)
        if self.decoder is not None and adapter is None:
            logits = self._scoring_logits(token_ids, first)
        else:
            logits = self.model(input_ids=ids[None], **self._adapter_kwargs([adapter], 1)).logits[0, first - 1 : -1]
        chosen = torch.log_softmax(logits.float(), dim=-1).gather(1, ids[first:, None])[:, 0]
        return ([0.0] if start == 0 else []) + chosen.tolist()

    def _scoring_logits(self, token_ids: list[int], first: int) -> torch.Tensor:
        """Our forward's logits at positions `first - 1` .. `T - 2` (those that score tokens `first` ..), reusing
        and then keeping the prefix cache's blocks of `token_ids[:first]`."""
        cache = self.decoder.scratch_cache(len(token_ids))
        reused = self.prefix_cache.load(token_ids[:first], 0, cache) if self.prefix_cache else 0
        logits = self.decoder.prompt_logits(token_ids, cache, reused)
        if self.prefix_cache:
            self.prefix_cache.store(token_ids[:first], 0, cache)
        return logits[first - 1 - reused : -1]

    # ---- LoRA adapters served by name ----------------------------------------------------------

    @property
    def adapters(self) -> dict[str, Path]:
        """The adapters loaded with `load_adapter`: name -> directory, in load order."""
        return dict(self._named_adapters)

    def load_adapter(self, name: str, path: Path) -> None:
        """Add the PEFT LoRA adapter at `path` under `name`; the base model's weights stay shared."""
        from peft import PeftModel

        check_adapter_name(name)
        if self._fixed_adapter:
            raise InvalidRequestError("this model was loaded with a fixed adapter; named adapters cannot join it")
        if name in self._named_adapters:
            raise InvalidRequestError(f"an adapter named {name!r} is already loaded")
        try:
            is_adapter = (Path(path) / "adapter_config.json").is_file()
        except OSError:  # e.g. a name too long for the file system
            is_adapter = False
        if not is_adapter:
            raise ModelNotFoundError(f"{path} is not a LoRA adapter directory (no adapter_config.json)")
        try:
            if _is_peft(self.model):
                self.model.load_adapter(str(path), adapter_name=_peft_name(name))
            else:
                self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=_peft_name(name))
        except (ValueError, KeyError, RuntimeError, OSError) as error:  # PEFT: wrong base, bad or unreadable weights
            raise InvalidRequestError(f"cannot load the adapter at {path} onto this model: {error}") from None
        self.model.eval()
        self._named_adapters[name] = Path(path)

    def unload_adapter(self, name: str) -> None:
        """Drop adapter `name` and free its weights."""
        if name not in self._named_adapters:
            raise ModelNotFoundError(f"no adapter named {name!r} is loaded")
        del self._named_adapters[name]
        if self._named_adapters:
            self.model.delete_adapter(_peft_name(name))
        else:  # the last one: back to the plain base model (PEFT keeps no adapter-less state)
            self.model = self.model.unload()

    def _adapter_kwargs(self, adapters: Adapters, batch: int) -> dict[str, list[str]]:
        """PEFT's per-row `adapter_names` once named adapters are loaded (the base model rows: "__base__")."""
        if not self._named_adapters:
            if adapters is not None and any(adapters):
                raise InvalidRequestError(f"no adapters are loaded, but rows asked for {sorted(set(filter(None, adapters)))}")
            return {}
        names = list(adapters) if adapters is not None else [None] * batch
        return {"adapter_names": [_peft_name(name) if name else "__base__" for name in names]}

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


def _is_peft(model: object) -> bool:
    """True for a PEFT-wrapped model (checked without importing PEFT when it is not in use)."""
    return type(model).__module__.startswith("peft.")


def _peft_name(name: str) -> str:
    """The key PEFT stores adapter `name` under: its `nn.ModuleDict`s refuse '.', which adapter names may hold
    (and ':', which they may not, takes its place, so two names never share a key)."""
    return name.replace(".", ":")
