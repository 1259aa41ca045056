"""`/v1/chat/completions`: messages -> chat-templated prompt -> engine -> a response or a chunk stream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from llmkit.engine.outputs import CompletionOutput, RequestOutput
from llmkit.errors import ChatTemplateError
from llmkit.models import render_chat
from llmkit.serve.errors import invalid
from llmkit.serve.protocol import (
    AssistantMessage,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessage,
    ChoiceLogprobs,
    DeltaMessage,
    TokenLogprobEntry,
    TopLogprob,
    UsageInfo,
)
from llmkit.serve.serving import RequestLog, Sampling, ServingContext, event_stream, final_outputs, sse, usage


async def create_chat_completion(
    ctx: ServingContext, request: ChatCompletionRequest
) -> ChatCompletionResponse | AsyncIterator[str]:
    """Answer `request`: a whole response, or (with `stream`) the SSE events of its chunks."""
    served = ctx.resolve(request.model)
    prompt = chat_prompt(ctx, request.messages)
    if request.top_logprobs and not request.logprobs:
        raise invalid("top_logprobs needs logprobs: true", "top_logprobs")
    logprobs = (request.top_logprobs or 0) if request.logprobs else None
    sampling = ctx.sampling(request, [prompt], request.max_completion_tokens or request.max_tokens, logprobs)
    stream, log = await ctx.start([prompt], sampling.params, "chatcmpl", served)
    if request.stream:
        chunks = _chunks(ctx, request, prompt, stream, sampling, log)
        return event_stream(chunks, stream, log)
    (result,) = await final_outputs(stream, 1, log)
    choices = [
        ChatCompletionChoice(
            index=out.index + copy,
            message=AssistantMessage(content=out.text),
            logprobs=_logprobs(ctx, out, 0) if request.logprobs else None,
            finish_reason=out.finish_reason,
        )
        for out in result.outputs
        for copy in range(sampling.copies)
    ]
    log.usage = usage([prompt], result.outputs, sampling.copies)
    log.done()
    return ChatCompletionResponse(id=log.request_id, model=log.model, choices=choices, usage=log.usage)


def chat_prompt(ctx: ServingContext, messages: list[ChatMessage], add_generation_prompt: bool = True) -> list[int]:
    """Token ids of the chat-templated prompt (400 for content we cannot render, or no template)."""
    try:
        dicts = [_message_dict(m, i) for i, m in enumerate(messages)]
        return render_chat(ctx.tokenizer, dicts, add_generation_prompt=add_generation_prompt)
    except ChatTemplateError as error:
        raise invalid(
            f"{error}. On a server: restart it with --chat-template FILE, or send plain text to /v1/completions",
            "messages",
        ) from None


def _message_dict(message: ChatMessage, index: int) -> dict:
    content = message.content
    if isinstance(content, list):
        if any(part.type != "text" or part.text is None for part in content):
            raise invalid(f"messages[{index}].content: only text parts are supported", f"messages.{index}.content")
        content = "".join(part.text for part in content)
    if content is None and message.role == "assistant":
        content = ""
    role = "system" if message.role == "developer" else message.role  # OpenAI's newer name for system
    return {"role": role, "content": content}


async def _chunks(
    ctx: ServingContext, request: ChatCompletionRequest, prompt: list[int], stream: AsyncIterator[tuple[int, RequestOutput]],
    sampling: Sampling, log: RequestLog,
) -> AsyncIterator[str]:
    """The chunk events: role first, content deltas, one finish chunk per choice, then usage if asked."""
    created, request_id = int(time.time()), log.request_id
    include_usage = bool(request.stream_options and request.stream_options.include_usage)

    def chunk(choices: list[ChatCompletionChunkChoice], usage: UsageInfo | None = None) -> str:
        return sse(ChatCompletionChunk(id=request_id, created=created, model=log.model, choices=choices, usage=usage))

    sent_logprobs: dict[int, int] = {}
    finished: set[int] = set()
    yield chunk([ChatCompletionChunkChoice(index=i, delta=DeltaMessage(role="assistant", content="")) for i in range(sampling.n)])
    async for _, output in stream:
        log.usage = usage([prompt], output.outputs, sampling.copies)
        for out in output.outputs:
            if out.index in finished:
                continue
            logprobs = None
            if request.logprobs and out.logprobs:
                logprobs = _logprobs(ctx, out, sent_logprobs.get(out.index, 0))
                sent_logprobs[out.index] = len(out.logprobs)
            if out.delta or (logprobs and logprobs.content):
                yield chunk([
                    ChatCompletionChunkChoice(index=out.index + c, delta=DeltaMessage(content=out.delta), logprobs=logprobs)
                    for c in range(sampling.copies)
                ])
            if out.finish_reason is not None:
                finished.add(out.index)
                yield chunk([
                    ChatCompletionChunkChoice(index=out.index + c, delta=DeltaMessage(), finish_reason=out.finish_reason)
                    for c in range(sampling.copies)
                ])
    if include_usage:
        yield chunk([], log.usage)


def _logprobs(ctx: ServingContext, out: CompletionOutput, start: int) -> ChoiceLogprobs:
    """OpenAI's chat logprobs for the tokens of `out` from `start` on."""
    entries = []
    for lp in (out.logprobs or [])[start:]:
        text = ctx.token_text(lp.token_id)
        top = [
            TopLogprob(token=ctx.token_text(t), logprob=v, bytes=list(ctx.token_text(t).encode()))
            for t, v in sorted(lp.top.items(), key=lambda kv: -kv[1])
        ]
        entries.append(TokenLogprobEntry(token=text, logprob=lp.logprob, bytes=list(text.encode()), top_logprobs=top))
    return ChoiceLogprobs(content=entries)
