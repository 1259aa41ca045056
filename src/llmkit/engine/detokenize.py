"""Incremental detokenization: turn a stream of token ids into a stream of valid text deltas.

Byte-level BPE splits multi-byte characters across tokens, and SentencePiece decoders drop or keep a
leading space depending on what came before, so decoding token by token is wrong. We use the
prefix/read offset technique of TGI and vLLM: decode a short window ending at the newest token,
compare it with the window's decode before that token, and emit the difference once it is complete.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

# Prompt ids kept as context, so the first generated token decodes as it would mid-sentence.
PROMPT_CONTEXT = 5


class IncrementalDetokenizer:
    """Decode one token at a time in O(1) per token; `push` returns only text that is final."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, *, skip_special_tokens: bool = True, prompt_ids: Sequence[int] = ()
    ):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        # The window: ids whose text is already emitted (up to read_offset), then ids still pending.
        self.window: list[int] = list(prompt_ids[max(0, len(prompt_ids) - PROMPT_CONTEXT) :])
        self.read_offset = len(self.window)
        self.text = ""

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(
            ids, skip_special_tokens=self.skip_special_tokens, clean_up_tokenization_spaces=False
        )

    def push(self, token_id: int) -> str:
        """Add one generated token; return the new text it makes stable (often "", e.g. mid-character)."""
        self.window.append(token_id)
        return self._advance(final=False)

    def flush(self) -> str:
        """At the end of generation, return whatever is still withheld (a cut-off character decodes as U+FFFD)."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        prefix = self._decode(self.window[: self.read_offset])
        full = self._decode(self.window)
        # A trailing U+FFFD means the last token ended inside a multi-byte character: wait for the rest.
        if not final and (len(full) <= len(prefix) or full.endswith("\ufffd")):
            return ""
        delta = full[len(prefix) :]
        # The emitted ids now serve as the context for the next ones; older ids are no longer needed.
        self.window = self.window[self.read_offset :]
        self.read_offset = len(self.window)
        self.text += delta
        return delta
