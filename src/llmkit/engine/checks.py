"""What every backend checks before it accepts a request: the prompt fits the context, and every number the
request gives that indexes the vocabulary or the context is inside it.

Done once, here, for our engine and vLLM's alike, so an out-of-range value is the caller's error (a 400 on the
server) before it can reach a tensor: a token id past the vocabulary, or an int past int64, would otherwise
fail inside a batched step shared with other requests.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmkit.engine.params import SamplingParams
from llmkit.errors import InvalidRequestError


def check_prompt(prompt_token_ids: Sequence[int], max_seq_len: int, vocab_size: int) -> list[int]:
    """The prompt as a list of ints, if it is not empty, leaves room to generate and names only vocabulary ids."""
    prompt = [int(t) for t in prompt_token_ids]
    if not prompt:
        raise InvalidRequestError("the prompt is empty: give at least one token", param="prompt")
    if len(prompt) >= max_seq_len:
        raise InvalidRequestError(
            f"the prompt has {len(prompt)} tokens but the context holds {max_seq_len}: shorten it or raise max_seq_len",
            param="prompt",
        )
    check_token_ids(prompt, vocab_size, "prompt")
    return prompt


def check_token_ids(token_ids: Sequence[int], vocab_size: int, param: str) -> None:
    """Refuse ids outside `[0, vocab_size)`, naming the request field `param` they came in."""
    bad = [t for t in token_ids if not 0 <= t < vocab_size]
    if bad:
        raise InvalidRequestError(
            f"{param}: token ids outside the vocabulary (0..{vocab_size - 1}): {bad[:5]}", param=param
        )


def check_params(params: SamplingParams, prompt_len: int, max_seq_len: int, vocab_size: int) -> None:
    """Refuse parameters that index past the vocabulary or the context this prompt leaves."""
    if params.top_k > vocab_size:
        raise InvalidRequestError(
            f"top_k: at most the vocabulary size, {vocab_size} (got {params.top_k}); 0 turns it off", param="top_k"
        )
    check_token_ids(params.stop_token_ids, vocab_size, "stop_token_ids")
    check_token_ids(list(params.logit_bias), vocab_size, "logit_bias")
    room = max_seq_len - prompt_len
    if params.min_new_tokens > room:
        raise InvalidRequestError(
            f"min_new_tokens: the context leaves room for {room} new tokens after the prompt "
            f"(got {params.min_new_tokens})",
            param="min_new_tokens",
        )
    if params.no_repeat_ngram_size > max_seq_len:
        raise InvalidRequestError(
            f"no_repeat_ngram_size: at most the context length, {max_seq_len} (got {params.no_repeat_ngram_size})",
            param="no_repeat_ngram_size",
        )
