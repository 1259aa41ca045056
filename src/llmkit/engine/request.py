"""The engine's bookkeeping for one request and each of its sequences (one KV-cache row apiece)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from llmkit.engine.beam import BeamSearch
from llmkit.engine.detokenize import IncrementalDetokenizer
from llmkit.engine.outputs import CompletionOutput, FinishReason, RequestOutput, TokenLogprob
from llmkit.engine.params import SamplingParams
from llmkit.engine.stop_strings import StopStrings
from llmkit.engine.structured import Grammar, GrammarConstraint


@dataclass
class Row:
    """One row of the batch: its token ids, its text so far and why it ended."""

    index: int
    tokens: list[int]
    prompt_len: int
    detokenizer: IncrementalDetokenizer
    row: int = -1
    text: str = ""
    emitted: int = 0
    finish_reason: FinishReason | None = None
    logprobs: list[TokenLogprob] | None = None
    logprobs_top: int = 0
    grammar: GrammarConstraint | None = None
    adapter: str | None = None

    @property
    def generated(self) -> list[int]:
        return self.tokens[self.prompt_len :]

    @property
    def num_generated(self) -> int:
        return len(self.tokens) - self.prompt_len

    def take_delta(self, stops: StopStrings) -> str:
        """Text that became final since the last call; holds back what may still turn into a stop string."""
        end = len(self.text) if self.finish_reason else len(self.text) - stops.holdback(self.text)
        delta = self.text[self.emitted : end] if end > self.emitted else ""
        self.emitted = max(self.emitted, end)
        return delta


@dataclass
class Request:
    """A prompt with its parameters, the sequences decoding it, and (for beam search) the beam state."""

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    sequences: list[Row]
    stop_strings: StopStrings
    stop_ids: frozenset[int]
    generator: torch.Generator | None = None
    beam: BeamSearch | None = None
    aborted: bool = False
    error: Exception | None = None

    @classmethod
    def create(
        cls,
        request_id: str,
        prompt_ids: list[int],
        params: SamplingParams,
        tokenizer: PreTrainedTokenizerBase,
        eos_ids: frozenset[int],
        generator: torch.Generator | None,
        grammar: Grammar | None = None,
        adapter: str | None = None,
    ) -> Request:
        rows = params.num_beams if params.beam_search else params.num_return_sequences
        stop_ids = frozenset(params.stop_token_ids) | (frozenset() if params.ignore_eos else eos_ids)
        sequences = [
            Row(
                index=i,
                tokens=list(prompt_ids),
                prompt_len=len(prompt_ids),
                detokenizer=IncrementalDetokenizer(
                    tokenizer, skip_special_tokens=params.skip_special_tokens, prompt_ids=prompt_ids
                ),
                logprobs=[] if params.logprobs is not None else None,
                logprobs_top=params.logprobs or 0,
                grammar=GrammarConstraint(grammar) if grammar is not None else None,
                adapter=adapter,
            )
            for i in range(rows)
        ]
        stop_strings = StopStrings(params.stop, params.include_stop_str_in_output)
        beam = None
        if params.beam_search:
            beam = BeamSearch(
                params, prompt_len=len(prompt_ids), stop_ids=stop_ids, stop_strings=stop_strings, tokenizer=tokenizer
            )
        return cls(request_id, prompt_ids, params, sequences, stop_strings, stop_ids, generator, beam)

    @property
    def finished(self) -> bool:
        return all(seq.finish_reason for seq in self.sequences)

    def fail(self, error: Exception) -> None:
        """End this request because preparing or stepping it raised `error`; the caller gets the error."""
        self.error = error
        for seq in self.sequences:
            seq.finish_reason = seq.finish_reason or "abort"

    def append_token(self, seq: Row, token: int, max_len: int) -> None:
        """Add a sampled token to `seq`: update its text and decide whether it has finished."""
        seq.tokens.append(token)
        if seq.grammar is not None:
            seq.grammar.accept(token)
        # A complete grammar ends on the EOS that closed it, which stays out of the text even with ignore_eos.
        if token in self.stop_ids or (seq.grammar is not None and seq.grammar.complete):
            seq.finish_reason = "stop"
            return
        delta = seq.detokenizer.push(token)
        seq.text += delta
        stop_at = self.stop_strings.cut(seq.text, len(seq.text) - len(delta))
        if stop_at is not None:
            seq.text = seq.text[:stop_at]
            seq.finish_reason = "stop"
        elif seq.num_generated >= self.params.max_new_tokens or len(seq.tokens) >= max_len:
            seq.finish_reason = "length"
            seq.text += seq.detokenizer.flush()

    def output(self) -> RequestOutput:
        """Snapshot for the caller; consumes each sequence's pending text delta."""
        if self.error is not None:
            return RequestOutput(self.request_id, self.prompt_ids, [], True, self.error)
        if self.beam is not None and not self.aborted:
            return self.beam.output(self.request_id, self.prompt_ids)
        outputs = []
        for seq in self.sequences[: self.params.num_return_sequences if self.beam else None]:
            delta = seq.take_delta(self.stop_strings)
            outputs.append(
                CompletionOutput(
                    index=seq.index,
                    text=seq.text[: seq.emitted],
                    token_ids=list(seq.generated),
                    finish_reason=seq.finish_reason,
                    logprobs=seq.logprobs,
                    delta=delta,
                )
            )
        return RequestOutput(self.request_id, self.prompt_ids, outputs, self.finished)
