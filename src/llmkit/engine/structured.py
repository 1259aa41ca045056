"""Structured output: decoding held to a grammar (any JSON object, or JSON matching a schema).

A request's `response_format` compiles once, when the request is created, into a grammar over the
model's vocabulary; each of its sequences then owns a `GrammarConstraint` that masks the logits to
the tokens the grammar allows next and ends the sequence when the grammar is complete.

Why xgrammar: it is maintained by the MLC team and is the default structured-output backend of
vLLM, SGLang and TensorRT-LLM; it ships CPU wheels for Python 3.11 that work with torch's CPU build;
most of a grammar's token masks are precomputed at compile time, so a step costs about 0.1 ms per
constrained row on CPU; and it covers the JSON-schema features OpenAI's strict mode needs. outlines-core,
llguidance and lm-format-enforcer were the fallbacks; none was needed.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Sequence

import torch
import xgrammar as xgr
from transformers import PreTrainedTokenizerBase

from llmkit.engine.params import ResponseFormat
from llmkit.errors import InvalidRequestError

Grammar = xgr.CompiledGrammar  # the only name other modules need: xgrammar stays inside this one

COMPILED_GRAMMARS = 64  # schemas kept compiled (LRU); a service sees the same few again and again


def compile_response_format(
    response_format: ResponseFormat, tokenizer: PreTrainedTokenizerBase, vocab_size: int, stop_ids: Iterable[int]
) -> Grammar:
    """The grammar for a constrained `response_format`; `InvalidRequestError` if its schema cannot be compiled.

    `stop_ids` are the tokens that may end the grammar (the model's EOS); `vocab_size` is the width
    of the model's logits, which may exceed the tokenizer's vocabulary.
    """
    stop_ids = tuple(sorted(stop_ids))
    if response_format.type == "json_object":
        return _compile(tokenizer, vocab_size, stop_ids, None)
    schema = json.dumps(response_format.json_schema["schema"], ensure_ascii=False)
    try:
        return _compile(tokenizer, vocab_size, stop_ids, schema)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise InvalidRequestError(f"response_format.json_schema.schema cannot be used: {_reason(exc)}") from None


class GrammarConstraint:
    """One sequence's place in its grammar: which tokens may come next, and whether the output is complete."""

    def __init__(self, grammar: Grammar) -> None:
        self.matcher = xgr.GrammarMatcher(grammar)

    def accept(self, token: int) -> None:
        """Advance past `token`, which the mask allowed."""
        if not self.matcher.accept_token(token):
            raise RuntimeError(f"token {token} was chosen but the grammar forbids it: its logits were not masked")

    @property
    def complete(self) -> bool:
        """True once the grammar has matched in full, ending on a stop token."""
        return self.matcher.is_terminated()


def mask_logits(logits: torch.Tensor, constraints: Sequence[GrammarConstraint | None]) -> torch.Tensor:
    """`[B, V]` logits with every token a row's grammar forbids set to -inf; rows without one are untouched.

    Returns `logits` itself when no row is constrained, else a masked copy (the raw logits still serve logprobs).
    """
    rows = [i for i, c in enumerate(constraints) if c is not None]
    if not rows:
        return logits
    bitmask = xgr.allocate_token_bitmask(len(constraints), logits.shape[-1])
    for i in rows:
        constraints[i].matcher.fill_next_token_bitmask(bitmask, i)
    masked = logits.clone()
    xgr.apply_token_bitmask_inplace(masked, bitmask.to(logits.device), indices=rows)
    return masked


@functools.lru_cache(maxsize=4)
def _compiler(tokenizer: PreTrainedTokenizerBase, vocab_size: int, stop_ids: tuple[int, ...]) -> xgr.GrammarCompiler:
    """One compiler per tokenizer: building its token table takes a fraction of a second."""
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_ids) or None)
    # Our LRU below bounds what is kept; xgrammar's own cache would keep every schema ever seen.
    return xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)


@functools.lru_cache(maxsize=COMPILED_GRAMMARS)
def _compile(
    tokenizer: PreTrainedTokenizerBase, vocab_size: int, stop_ids: tuple[int, ...], schema: str | None
) -> Grammar:
    """The grammar of a JSON schema given as JSON text, or of any JSON object when `schema` is None.

    The text keeps the caller's property order (no sort_keys): the output lists properties in that order.
    """
    compiler = _compiler(tokenizer, vocab_size, stop_ids)
    # Compact JSON (no free whitespace): small models otherwise tend to pad with newlines until max_new_tokens.
    if schema is None:
        return compiler.compile_json_schema('{"type": "object"}', any_whitespace=False, strict_mode=False)
    # strict_mode, as in vLLM: an object has only the properties its schema lists, unless it allows more.
    return compiler.compile_json_schema(schema, any_whitespace=False, strict_mode=True)


def _reason(exc: Exception) -> str:
    """xgrammar's message without its timestamp, C++ source location and check expression."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    message = lines[-1] if lines else type(exc).__name__
    message = re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", message)
    return re.sub(r"^Check failed: .*? is false: ", "", message)
