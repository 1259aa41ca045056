"""`/v1/completions`: one or more prompts (text or token ids) -> engine -> a response or a chunk stream.

With a safety policy, each prompt is checked as user input and each continuation as an answer (see
`serve/moderation.py`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from llmkit.engine.checks import check_token_ids
from llmkit.engine.outputs import CompletionOutput, RequestOutput
from llmkit.serve import moderation
from llmkit.serve.errors import invalid
from llmkit.serve.protocol import (
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    UsageInfo,
)
from llmkit.serve.serving import SamplingPlan, ServingContext
from llmkit.serve.streaming import RequestLog, event_stream, final_outputs, sse, usage


async def create_completion(ctx: ServingContext, request: CompletionRequest) -> CompletionResponse | AsyncIterator[str]:
    """Continue every prompt `n` times: a whole response, or (with `stream`) the SSE events of its chunks."""
    served = ctx.resolve(request.model)
    if request.echo and request.logprobs is not None:
        raise invalid("echo with logprobs needs the prompt's logprobs, which llmkit does not compute: leave out one "
                      "of them", "echo")
    if request.suffix:
        raise invalid("suffix (fill-in-the-middle) is not supported: leave it out", "suffix")
    prompts = prompt_ids(ctx, request.prompt)
    echoes = _echoes(ctx, request.prompt, prompts) if request.echo else [""] * len(prompts)
    moderation.refuse_streamed_logprobs(ctx, request.stream, request.logprobs is not None)
    for prompt in prompts:
        await moderation.check_input(ctx, ctx.tokenizer.decode(prompt, skip_special_tokens=True), [], "prompt")
    sampling = ctx.sampling(request, prompts, request.max_tokens, request.logprobs)
    stream, log = await ctx.start(prompts, sampling.params, "cmpl", served, request.logged_fields())
    if request.stream:
        chunks = _chunks(ctx, request, prompts, echoes, stream, sampling, log)
        return event_stream(chunks, stream, log)
    results = await final_outputs(stream, len(prompts), log)
    blocked = {
        (i, out.index): await moderation.answer_blocked(ctx, out.text, _context(ctx, prompts[i]))
        for i, result in enumerate(results)
        for out in result.outputs
    }
    choices = [
        CompletionChoice(index=index, text="", finish_reason="content_filter")
        if blocked[i, out.index] else CompletionChoice(
            index=index,
            text=echoes[i] + out.text,
            logprobs=_logprobs(ctx, out, 0) if request.logprobs is not None else None,
            finish_reason=out.finish_reason,
        )
        for i, result in enumerate(results)
        for out in result.outputs
        for index in sampling.choice_indices(i, out.index)
    ]
    log.usage = usage(prompts, [out for r in results for out in r.outputs], sampling.copies)
    log.done()
    return CompletionResponse(id=log.request_id, model=log.model, choices=choices, usage=log.usage)


def prompt_ids(ctx: ServingContext, prompt: str | list[str] | list[int] | list[list[int]]) -> list[list[int]]:
    """Every prompt as token ids: text is encoded (with the tokenizer's own special tokens), ids pass through
    once they are known to be the tokenizer's (400 otherwise: they are decoded for checks and logprobs)."""
    if isinstance(prompt, str):
        prompt = [prompt]
    if not prompt:
        raise invalid("prompt is empty: give a string, a list of strings or a list of token ids", "prompt")
    if all(isinstance(p, int) for p in prompt):
        prompt = [prompt]
    prompts = [ctx.tokenizer.encode(p) if isinstance(p, str) else list(p) for p in prompt]
    for ids in prompts:
        check_token_ids(ids, len(ctx.tokenizer), "prompt")
    return prompts


def _echoes(
    ctx: ServingContext, prompt: str | list[str] | list[int] | list[list[int]], ids: list[list[int]]
) -> list[str]:
    """Each prompt as `echo` returns it before its choices' text: as sent, or its token ids decoded."""
    if isinstance(prompt, str):
        return [prompt]
    if all(isinstance(p, str) for p in prompt):
        return list(prompt)
    return [ctx.tokenizer.decode(p) for p in ids]


def _context(ctx: ServingContext, prompt: list[int]) -> list[dict[str, str]]:
    """A prompt as the user turn its continuation answers (what output checkers read as context)."""
    return [{"role": "user", "content": ctx.tokenizer.decode(prompt, skip_special_tokens=True)}]


async def _chunks(
    ctx: ServingContext, request: CompletionRequest, prompts: list[list[int]], echoes: list[str],
    stream: AsyncIterator[tuple[int, RequestOutput]], sampling: SamplingPlan, log: RequestLog,
) -> AsyncIterator[str]:
    """`text_completion` chunks: text deltas (the first after its prompt's echo), the last one of each choice with
    its finish reason, then usage.

    When answers are checked, text goes out a sentence at a time; a blocked choice ends with "content_filter".
    """
    created, request_id = int(time.time()), log.request_id
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    guards: dict[tuple[int, int], moderation.AnswerGuard] = {}

    def chunk(choices: list[CompletionChoice], usage: UsageInfo | None = None) -> str:
        return sse(CompletionResponse(id=request_id, created=created, model=log.model, choices=choices, usage=usage))

    sent_logprobs: dict[tuple[int, int], int] = {}
    finished: set[tuple[int, int]] = set()
    echoed: set[tuple[int, int]] = set()
    last: dict[int, RequestOutput] = {}
    async for i, output in stream:
        last[i] = output
        log.usage = usage(prompts, [out for r in last.values() for out in r.outputs], sampling.copies)
        for out in output.outputs:
            key = (i, out.index)
            if key in finished:
                continue
            logprobs = None
            if request.logprobs is not None and out.logprobs:
                logprobs = _logprobs(ctx, out, sent_logprobs.get(key, 0))
                sent_logprobs[key] = len(out.logprobs)
            delta, blocked = out.delta, False
            if moderation.checks_output(ctx):
                if key not in guards:
                    guards[key] = moderation.AnswerGuard(ctx.safety, _context(ctx, prompts[i]))
                delta, blocked = await guards[key].feed(out.delta, out.finish_reason is not None)
            finish_reason = "content_filter" if blocked else out.finish_reason
            if key not in echoed and not blocked:
                echoed.add(key)
                delta = echoes[i] + delta
            if delta or finish_reason is not None or (logprobs and logprobs.tokens):
                if finish_reason is not None:
                    finished.add(key)
                yield chunk([
                    CompletionChoice(
                        index=index, text=delta, logprobs=logprobs, finish_reason=finish_reason,
                    )
                    for index in sampling.choice_indices(i, out.index)
                ])
        if len(finished) == sampling.outputs(len(prompts)):
            break  # every choice has ended (a blocked one before its generation did: leaving aborts it)
    if include_usage:
        yield chunk([], log.usage)


def _logprobs(ctx: ServingContext, out: CompletionOutput, start: int) -> CompletionLogprobs:
    """OpenAI's legacy completion logprobs for the tokens of `out` from `start` on.

    `text_offset` counts from the start of the completion, across stream chunks (as vLLM does).
    """
    result = CompletionLogprobs()
    logprobs = out.logprobs or []
    offset = sum(len(ctx.token_text(lp.token_id)) for lp in logprobs[:start])
    for lp in logprobs[start:]:
        text = ctx.token_text(lp.token_id)
        result.tokens.append(text)
        result.token_logprobs.append(lp.logprob)
        result.top_logprobs.append({ctx.token_text(t): v for t, v in lp.top.items()})
        result.text_offset.append(offset)
        offset += len(text)
    return result
