"""Beam search for one request, step for step the algorithm of transformers' `_beam_search`.

Each step takes the processed log-probabilities of the request's `num_beams` rows and returns, for
each row, which old beam it continues and with which token; the engine reorders the KV cache to
match. Finished hypotheses are kept with transformers' length penalty and early-stopping rules, so
with the same model the chosen token ids equal `model.generate(num_beams=...)`'s.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

from llmkit.engine.outputs import CompletionOutput, RequestOutput
from llmkit.engine.params import SamplingParams
from llmkit.engine.stop_strings import StopStrings

_NEG = -1.0e9  # transformers' "impossible" score


class BeamSearch:
    """The beam state of one request: running beams, the best finished hypotheses, the stop rule."""

    def __init__(
        self, params: SamplingParams, *, prompt_len: int, stop_ids: frozenset[int], stop_strings: StopStrings,
        tokenizer: PreTrainedTokenizerBase,
    ) -> None:
        self.num_beams = params.num_beams
        self.length_penalty = params.length_penalty
        self.early_stopping = params.early_stopping
        self.num_return_sequences = params.num_return_sequences
        self.max_new_tokens = params.max_new_tokens
        self.stop_id_set = stop_ids
        self.stop_ids = torch.tensor(sorted(stop_ids), dtype=torch.long)
        self.stop_strings = stop_strings
        self.tokenizer = tokenizer
        self.skip_special_tokens = params.skip_special_tokens
        self.beams_to_keep = max(2, 1 + len(stop_ids)) * self.num_beams
        self.prompt_len = prompt_len
        self.running: list[list[int]] = [[] for _ in range(self.num_beams)]
        self.running_scores = torch.full((self.num_beams,), _NEG)
        self.running_scores[0] = 0.0
        self.finished: list[list[int]] = [[] for _ in range(self.num_beams)]
        self.finished_scores = torch.full((self.num_beams,), _NEG)
        self.is_finished = torch.zeros(self.num_beams, dtype=torch.bool)
        self.improvement_possible = True
        self.done = False

    @property
    def num_generated(self) -> int:
        return len(self.running[0])

    def step(self, log_probs: torch.Tensor) -> tuple[list[int], list[int]]:
        """Advance by one token given [num_beams, V] log-probs; returns (source beam, token) per new beam."""
        vocab = log_probs.shape[-1]
        scores = (log_probs + self.running_scores[:, None]).reshape(-1)
        top_scores, top_index = torch.topk(scores, k=self.beams_to_keep)
        source = top_index // vocab
        tokens = top_index % vocab
        generated = self.num_generated + 1
        hits = torch.isin(tokens, self.stop_ids) | (generated >= self.max_new_tokens)
        candidates = [self.running[b] + [t] for b, t in zip(source.tolist(), tokens.tolist())]

        keep = torch.topk(top_scores + hits.float() * _NEG, k=self.num_beams)[1]
        self.running = [candidates[i] for i in keep.tolist()]
        self.running_scores = (top_scores + hits.float() * _NEG)[keep]
        self._update_finished(candidates, top_scores, hits, generated)

        self.improvement_possible = self.improvement_possible and self._can_improve(generated)
        all_full = bool(self.is_finished.all()) and self.early_stopping is True
        self.done = not self.improvement_possible or all_full or bool(hits.all())
        return source[keep].tolist(), tokens[keep].tolist()

    def _update_finished(
        self, candidates: list[list[int]], top_scores: torch.Tensor, hits: torch.Tensor, generated: int
    ) -> None:
        just_finished = hits.clone()
        just_finished[self.num_beams :] = False  # only the top num_beams candidates may finish
        penalised = top_scores / (generated**self.length_penalty)
        if bool(self.is_finished.all()) and self.early_stopping is True:
            penalised = penalised + _NEG
        if not self.improvement_possible:
            penalised = penalised + _NEG
        penalised = penalised + (~just_finished).float() * _NEG
        merged_scores = torch.cat((self.finished_scores, penalised))
        merged = self.finished + candidates
        merged_is_finished = torch.cat((self.is_finished, just_finished))
        best = torch.topk(merged_scores, k=self.num_beams)[1]
        self.finished = [merged[i] for i in best.tolist()]
        self.finished_scores = merged_scores[best]
        self.is_finished = merged_is_finished[best]

    def _can_improve(self, generated: int) -> bool:
        """transformers' early-stop heuristic: can the best running beam still beat the worst finished one?"""
        if self.early_stopping == "never" and self.length_penalty > 0.0:
            best_length = self.max_new_tokens
        else:
            best_length = generated
        best_running = float(self.running_scores[0]) / (best_length**self.length_penalty)
        if not bool(self.is_finished.all()):
            return best_running > _NEG
        return best_running > float(self.finished_scores.min())

    def output(self, request_id: str, prompt_ids: list[int]) -> RequestOutput:
        """Empty outputs while searching; the best `num_return_sequences` hypotheses once done."""
        if not self.done:
            outputs = [CompletionOutput(index=i, text="", token_ids=[]) for i in range(self.num_return_sequences)]
            return RequestOutput(request_id, prompt_ids, outputs, finished=False)
        outputs = []
        for i in range(self.num_return_sequences):
            tokens = self.finished[i]
            reason = "stop" if tokens and tokens[-1] in self.stop_id_set else "length"
            text_tokens = tokens[:-1] if reason == "stop" else tokens
            text = self.tokenizer.decode(text_tokens, skip_special_tokens=self.skip_special_tokens)
            stop_at = self.stop_strings.cut(text, 0)
            if stop_at is not None:
                text, reason = text[:stop_at], "stop"
            outputs.append(
                CompletionOutput(
                    index=i,
                    text=text,
                    token_ids=tokens,
                    finish_reason=reason,
                    cumulative_logprob=float(self.finished_scores[i]),
                    delta=text,
                )
            )
        return RequestOutput(request_id, prompt_ids, outputs, finished=True)
