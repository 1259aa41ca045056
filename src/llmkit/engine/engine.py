"""The engine: continuous batching of many requests, each with its own sampling parameters.

`add_request` queues a prompt; each `step` admits waiting requests that fit (prefill), runs one
batched decode for every running row, picks each row's next token with that row's processors, and
returns the outputs that changed. Requests may join or leave (finish, `abort`) between any two steps.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import PreTrainedTokenizerBase

from llmkit.engine.checks import check_params, check_prompt
from llmkit.engine.model_runner import ModelRunner, Runner
from llmkit.engine.outputs import RequestOutput, TokenLogprob
from llmkit.engine.params import SamplingParams
from llmkit.engine.sampling_defaults import NEUTRAL
from llmkit.engine.processors import TokenHistory, apply_processors, build_processors
from llmkit.engine.sampling import make_generator, select_tokens, token_logprobs
from llmkit.engine.request import Request, Row
from llmkit.engine.structured import Grammar, compile_response_format, mask_logits
from llmkit.errors import InvalidRequestError, ModelNotFoundError

T = TypeVar("T")
R = TypeVar("R")


class Engine:
    """Batched decoding over a transformers causal LM with a per-row KV cache."""

    def __init__(
        self,
        model: Any,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_batch_size: int = 8,
        max_seq_len: int = 2048,
        prefill_token_budget: int = 2048,
        runner_class: type[Runner] = ModelRunner,
        runner_options: Mapping[str, Any] | None = None,
        sampling_defaults: Mapping[str, float] = NEUTRAL,
    ) -> None:
        """`runner_class(model, num_slots=, max_len=, **runner_options)` builds the backend: by default the torch
        one (`ModelRunner`, whose options choose the forward and a weight-only quantisation). `sampling_defaults`
        are the model's (`sampling_defaults.generation_defaults`), for every entry point that builds requests."""
        self.model = model
        self.sampling_defaults = dict(sampling_defaults)
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.prefill_token_budget = prefill_token_budget
        self.runner: Runner = runner_class(
            model, num_slots=max_batch_size, max_len=max_seq_len, **(runner_options or {})
        )
        self.max_seq_len = self.runner.max_len
        self.vocab_size = self.runner.vocab_size
        eos = self.runner.eos_token_ids or ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])
        self.eos_ids = frozenset(eos)
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.rows: list[Row] = []
        self._ids = itertools.count()

    # ---- requests in and out -------------------------------------------------------------------

    def add_request(
        self,
        prompt_token_ids: Sequence[int],
        params: SamplingParams,
        request_id: str | None = None,
        adapter: str | None = None,
    ) -> str:
        """Queue a prompt (run through LoRA `adapter` if given); returns its request id.

        Raises `InvalidRequestError` for input that cannot run.
        """
        prompt = self.check_request(prompt_token_ids, params, adapter)
        request_id = request_id or f"req-{next(self._ids)}"
        if any(r.request_id == request_id for r in itertools.chain(self.waiting, self.running)):
            raise InvalidRequestError(f"request id {request_id!r} is already in use")
        generator = make_generator(params.seed, self.runner.device) if params.seed is not None else None
        grammar = self._grammar(params)
        request = Request.create(
            request_id, prompt, params, self.tokenizer, self.eos_ids, generator, grammar, adapter=adapter
        )
        self.waiting.append(request)
        return request_id

    def abort(self, request_id: str) -> None:
        """Stop a request now (e.g. its client went away); its rows are freed at the next step."""
        for request in itertools.chain(self.waiting, self.running):
            if request.request_id == request_id:
                request.aborted = True
                for seq in request.sequences:
                    seq.finish_reason = seq.finish_reason or "abort"

    @property
    def adapters(self) -> dict[str, Path]:
        """The LoRA adapters requests may name: name -> directory."""
        return self.runner.adapters

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Make the LoRA adapter at `path` available to requests as `name`."""
        self.runner.load_adapter(name, Path(path))

    def unload_adapter(self, name: str) -> None:
        """Drop adapter `name`; refused while a request still uses it."""
        users = [r.request_id for r in itertools.chain(self.waiting, self.running) if r.sequences[0].adapter == name]
        if users:
            raise InvalidRequestError(f"adapter {name!r} is in use by {len(users)} request(s): retry when they finish")
        self.runner.unload_adapter(name)

    def reset(self) -> None:
        """Drop every waiting and running request at once (after a failed step: the state is suspect)."""
        self.waiting.clear()
        self.running = []
        self.rows = []

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    # ---- the loop ------------------------------------------------------------------------------

    def step(self) -> list[RequestOutput]:
        """Admit what fits, decode one token for every running row, return the changed requests.

        A request whose prefill, sampling or bookkeeping raises fails alone: its output carries the error and its
        batch mates go on. A batched decode that raises fails the requests it was decoding; waiting ones still run.
        """
        outputs = [r.output() for r in self._take_aborted_waiting()]
        decoding = self.rows[:]
        logits = self._admit()
        if decoding:
            logits.update(self._decode(decoding))
        self._advance_sampled([r for r in self.running if r.beam is None], logits)
        for request in self.running:
            if request.beam is not None and not request.finished:
                try:
                    self._advance_beams(request, torch.stack([logits[id(seq)] for seq in request.sequences]))
                except Exception as error:  # this request's own failure; its batch mates go on
                    request.fail(error)
        outputs += [r.output() for r in self.running]
        self._release_finished()
        return outputs

    def generate(
        self, prompts: Iterable[Sequence[int]], params: SamplingParams | Sequence[SamplingParams]
    ) -> list[RequestOutput]:
        """Run prompts to completion (one batch, continuous scheduling); results in prompt order.

        This drives the engine itself: use it when nothing else is feeding the same engine.
        """
        prompts = list(prompts)
        per_prompt = [params] * len(prompts) if isinstance(params, SamplingParams) else list(params)
        if len(per_prompt) != len(prompts):
            raise InvalidRequestError(f"got {len(prompts)} prompts but {len(per_prompt)} parameter sets")
        for prompt, prompt_params in zip(prompts, per_prompt):
            self.check_request(prompt, prompt_params)  # all or nothing: no half-queued batch
        ids = [self.add_request(p, sp) for p, sp in zip(prompts, per_prompt)]
        final = {}
        while self.has_unfinished():
            for out in self.step():
                if out.finished:
                    final[out.request_id] = out
        failed = [final[i].error for i in ids if final[i].error is not None]
        if failed:
            raise failed[0]
        return [final[i] for i in ids]

    def stream(self, prompt_token_ids: Sequence[int], params: SamplingParams) -> Iterator[RequestOutput]:
        """Yield one request's outputs as they grow; closing the iterator aborts the request."""
        request_id = self.add_request(prompt_token_ids, params)
        try:
            while True:
                for out in self.step():
                    if out.request_id == request_id:
                        if out.error is not None:
                            raise out.error
                        yield out
                        if out.finished:
                            return
        finally:
            self.abort(request_id)

    # ---- internals -----------------------------------------------------------------------------

    def check_request(self, prompt_token_ids: Sequence[int], params: SamplingParams, adapter: str | None = None) -> list[int]:
        """The prompt as a list of ints, if it, `params` and `adapter` can run on this engine."""
        if adapter is not None and adapter not in self.runner.adapters:
            raise ModelNotFoundError(f"no adapter named {adapter!r} is loaded")
        rows = params.num_beams if params.beam_search else params.num_return_sequences
        if rows > self.max_batch_size:
            raise InvalidRequestError(
                f"this request needs {rows} sequences at once but max_batch_size is {self.max_batch_size}"
            )
        prompt = check_prompt(prompt_token_ids, self.max_seq_len, self.vocab_size)
        check_params(params, len(prompt), self.max_seq_len, self.vocab_size)
        self._grammar(params)  # a schema that cannot compile is the caller's error, found before decoding
        return prompt

    def _grammar(self, params: SamplingParams) -> Grammar | None:
        """The compiled grammar of a constrained `response_format` (cached per schema), else None."""
        if not params.constrained:
            return None
        return compile_response_format(params.response_format, self.tokenizer, self.vocab_size, self.eos_ids)

    def _take_aborted_waiting(self) -> list[Request]:
        aborted = [r for r in self.waiting if r.aborted]
        self.waiting = deque(r for r in self.waiting if not r.aborted)
        return aborted

    def _admit(self) -> dict[int, torch.Tensor]:
        """Prefill waiting requests while rows and the token budget allow; returns their first logits."""
        admitted: list[Request] = []
        free = self.max_batch_size - len(self.rows)
        budget = self.prefill_token_budget
        while self.waiting:
            request = self.waiting[0]
            if len(request.sequences) > free or (admitted and len(request.prompt_ids) > budget):
                break
            admitted.append(self.waiting.popleft())
            free -= len(request.sequences)
            budget -= len(request.prompt_ids)
        for request in admitted:
            for seq in request.sequences:
                seq.row = len(self.rows)
                self.rows.append(seq)
        self.running.extend(admitted)
        logits = {}
        for request, request_logits in _isolated(admitted, lambda request: request, self._prefill):
            logits.update({id(seq): request_logits for seq in request.sequences})
        return logits

    def _prefill(self, requests: list[Request]) -> list[torch.Tensor]:
        """Process the prompts into their requests' first cache rows, copied to every fork; each one's first logits."""
        prompt_logits = self.runner.prefill(
            [r.prompt_ids for r in requests],
            [r.sequences[0].row for r in requests],
            _adapters([r.sequences[0].adapter for r in requests]),
        )
        for request in requests:
            first, *forks = request.sequences
            if forks:
                self.runner.copy_rows([first.row] * len(forks), [s.row for s in forks], len(request.prompt_ids))
        return list(prompt_logits)

    def _decode(self, rows: list[Row]) -> dict[int, torch.Tensor]:
        """One batched forward for `rows`; if it raises, every request decoding in it fails with that error."""
        try:
            step_logits = self.runner.decode(
                torch.tensor([seq.tokens[-1] for seq in rows], device=self.runner.device),
                torch.tensor([len(seq.tokens) - 1 for seq in rows], device=self.runner.device),
                _adapters([seq.adapter for seq in rows]),
            )
        except Exception as error:  # not any one row's fault: the rows in it fail, the waiting queue still runs
            decoding = {id(seq) for seq in rows}
            for request in self.running:
                if any(id(seq) in decoding for seq in request.sequences):
                    request.fail(error)
            return {}
        return {id(seq): step_logits[i] for i, seq in enumerate(rows)}

    def _advance_sampled(self, requests: list[Request], logits: dict[int, torch.Tensor]) -> None:
        """Pick the next token of every live non-beam row in one pass, each row with its own parameters."""
        live = [(r, seq) for r in requests for seq in r.sequences if seq.finish_reason is None]
        for (request, seq), (token, logprob) in _isolated(live, lambda pair: pair[0], lambda rows: self._sample(rows, logits)):
            if request.error is not None:
                continue
            try:
                if logprob is not None:
                    seq.logprobs.append(logprob)
                request.append_token(seq, token, self.max_seq_len)
            except Exception as error:  # e.g. the detokenizer or grammar on this row's token: this request alone
                request.fail(error)

    def _sample(
        self, live: list[tuple[Request, Row]], logits: dict[int, torch.Tensor]
    ) -> list[tuple[int, TokenLogprob | None]]:
        """Each row's next token (and its logprob entry, where asked for), without changing any row."""
        seqs = [seq for _, seq in live]
        params = [r.params for r, _ in live]
        raw = torch.stack([logits[id(seq)] for seq in seqs])
        processed = self._process(seqs, params, mask_logits(raw, [seq.grammar for seq in seqs]), warpers=True)
        chosen = select_tokens(processed, params, [r.generator for r, _ in live])
        return list(zip(chosen.tolist(), self._logprobs(seqs, raw, chosen)))

    def _advance_beams(self, request: Request, raw: torch.Tensor) -> None:
        """One beam-search step for `request`: score, reorder the cache rows, extend the beams."""
        beam, seqs = request.beam, request.sequences
        # As in transformers, beam scores are processed log-probabilities, not processed logits.
        log_probs = self._process(seqs, [request.params] * len(seqs), torch.log_softmax(raw, dim=-1), warpers=False)
        sources, _ = beam.step(log_probs)
        rows = [seq.row for seq in seqs]
        self.runner.copy_rows([rows[s] for s in sources], rows, len(seqs[0].tokens))
        for seq, running in zip(seqs, beam.running):
            seq.tokens = request.prompt_ids + running
        if len(seqs[0].tokens) >= self.max_seq_len:
            beam.done = True
        if beam.done:
            for seq in seqs:
                seq.finish_reason = "stop"

    def _process(
        self, seqs: list[Row], params: list[SamplingParams], logits: torch.Tensor, *, warpers: bool
    ) -> torch.Tensor:
        """Apply the logits processors these rows' parameters call for (none: logits unchanged)."""
        processors = build_processors(params, sorted(self.eos_ids), warpers=warpers, device=logits.device)
        if not processors:
            return logits
        history = TokenHistory.from_rows(
            [seq.tokens for seq in seqs], [seq.prompt_len for seq in seqs], device=logits.device
        )
        return apply_processors(processors, logits, history)

    def _logprobs(self, seqs: list[Row], raw: torch.Tensor, chosen: torch.Tensor) -> list[TokenLogprob | None]:
        """Each row's chosen-token logprob entry under the model itself (before penalties and warpers), as OpenAI
        reports them; None for rows that did not ask."""
        wanted = [i for i, seq in enumerate(seqs) if seq.logprobs is not None]
        entries: list[TokenLogprob | None] = [None] * len(seqs)
        if not wanted:
            return entries
        top_n = max(seqs[i].logprobs_top for i in wanted)
        chosen_lp, top_lp, top_ids = token_logprobs(torch.log_softmax(raw[wanted], dim=-1), chosen[wanted], top_n)
        for j, i in enumerate(wanted):
            k = seqs[i].logprobs_top
            top = dict(zip(top_ids[j, :k].tolist(), top_lp[j, :k].tolist()))
            entries[i] = TokenLogprob(int(chosen[i]), float(chosen_lp[j]), top)
        return entries

    def _release_finished(self) -> None:
        """Drop finished requests and compact the surviving rows to the front of the cache."""
        self.running = [r for r in self.running if not r.finished]
        survivors = [seq for r in self.running for seq in r.sequences if seq.finish_reason is None]
        moves = [(seq.row, new_row) for new_row, seq in enumerate(survivors) if seq.row != new_row]
        if moves:
            longest = max(len(seq.tokens) for seq in survivors)
            self.runner.copy_rows([src for src, _ in moves], [dst for _, dst in moves], longest)
        for new_row, seq in enumerate(survivors):
            seq.row = new_row
        self.rows = survivors


def _isolated(items: list[T], owner: Callable[[T], Request], run: Callable[[list[T]], list[R]]) -> list[tuple[T, R]]:
    """`run(items)` as one batch; if it raises, item by item, failing the request (`owner`) of each item that raises.

    Returns each item whose request has not failed, with its result: one bad request never fails its batch mates.
    """
    if not items:
        return []
    try:
        return list(zip(items, run(items), strict=True))
    except Exception as error:
        if len(items) == 1:
            owner(items[0]).fail(error)
            return []
    results = []
    for item in items:
        try:
            (result,) = run([item])
        except Exception as error:
            owner(item).fail(error)
        else:
            results.append((item, result))
    return [(item, result) for item, result in results if owner(item).error is None]


def _adapters(names: list[str | None]) -> list[str | None] | None:
    """Per-row adapter names for the runner; None when every row runs the base model."""
    return names if any(names) else None
