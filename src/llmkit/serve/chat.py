"""`/v1/chat/completions`: messages (and tools) -> chat-templated prompt -> engine -> a response or a chunk stream.

Tool calling is planned by `llmkit.models.tool_calls` and read by the server's tool parser
(`llmkit.models.tool_parsers`); this module maps OpenAI's request onto them and their answers back onto
`tool_calls`, streamed as OpenAI streams them. With a safety policy, answers are checked as `serve/moderation.py` says.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from llmkit.engine.outputs import CompletionOutput, RequestOutput
from llmkit.engine.params import ResponseFormat
from llmkit.errors import ChatTemplateError, InvalidRequestError
from llmkit.models import render_chat
from llmkit.models.tool_call_stream import CallPiece, ToolCallStream
from llmkit.models.tool_calls import ToolPrompt, tool_prompt
from llmkit.serve import moderation
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
    FunctionCall,
    FunctionCallDelta,
    TokenLogprobEntry,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    TopLogprob,
    UsageInfo,
)
from llmkit.serve.serving import SamplingPlan, ServedModel, ServingContext
from llmkit.serve.streaming import RequestLog, event_stream, final_outputs, sse, usage


async def create_chat_completion(
    ctx: ServingContext, request: ChatCompletionRequest, served_as: str | None = None
) -> ChatCompletionResponse | AsyncIterator[str]:
    """Answer `request`: a whole response, or (with `stream`) the SSE events of its chunks; `served_as` names the
    model in them when the request was rewritten from another (a `rag:{kb}` model)."""
    served = ctx.resolve(request.model)
    if served_as:
        served = ServedModel(served_as, served.adapter)
    plan = _tool_prompt(ctx, request.messages, request.tools, request.tool_choice, request.parallel_tool_calls)
    prompt = _render(
        ctx, plan, request.add_generation_prompt, request.continue_final_message, request.chat_template_kwargs
    )
    if request.top_logprobs and not request.logprobs:
        raise invalid("top_logprobs needs logprobs: true", "top_logprobs")
    moderation.refuse_streamed_logprobs(ctx, request.stream, request.logprobs)
    logprobs = (request.top_logprobs or 0) if request.logprobs else None
    max_tokens = request.max_completion_tokens or request.max_tokens
    decoded = _with_call_markers(ctx, _with_call_schema(request, plan), plan)
    sampling = ctx.sampling(decoded, [prompt], max_tokens, logprobs)
    stream, log = await ctx.start([prompt], sampling.params, "chatcmpl", served, request.logged_fields())
    if request.stream:
        chunks = _chunks(ctx, request, plan, prompt, stream, sampling, log)
        return event_stream(chunks, stream, log)
    (result,) = await final_outputs(stream, 1, log)
    context = moderation.dialog(request.messages)
    blocked = {out.index: await moderation.answer_blocked(ctx, out.text, context) for out in result.outputs}
    echo = _echo(request)
    choices = [
        _filtered(index) if blocked[out.index] else _choice(ctx, request, plan, out, index, echo)
        for out in result.outputs
        for index in sampling.choice_indices(0, out.index)
    ]
    log.usage = usage([prompt], result.outputs, sampling.copies)
    log.done()
    return ChatCompletionResponse(id=log.request_id, model=log.model, choices=choices, usage=log.usage)


def chat_prompt(ctx: ServingContext, messages: list[ChatMessage], add_generation_prompt: bool = True) -> list[int]:
    """Token ids of the chat-templated prompt, earlier tool calls and results rendered as chat renders them."""
    return _render(ctx, _tool_prompt(ctx, messages), add_generation_prompt)


def _tool_prompt(
    ctx: ServingContext, messages: list[ChatMessage], tools: list[Tool] | None = None,
    choice: ToolChoice | None = None, parallel: bool | None = None,
) -> ToolPrompt:
    """The request's plan for tools: the model's template format if it has one, else a call schema."""
    dicts = [_message_dict(m, i) for i, m in enumerate(messages)]
    tool_dicts = [tool.model_dump(exclude_none=True) for tool in tools] if tools else None
    choice = choice if isinstance(choice, str | None) else choice.model_dump()
    try:
        return tool_prompt(dicts, tool_dicts, choice, parallel, ctx.tool_parser)
    except InvalidRequestError as error:
        raise invalid(str(error), "messages") from None


def _render(
    ctx: ServingContext, plan: ToolPrompt, add_generation_prompt: bool = True, continue_final_message: bool = False,
    template_kwargs: dict[str, Any] | None = None,
) -> list[int]:
    """Token ids of the planned prompt (400 for content we cannot render, or no template)."""
    try:
        return render_chat(
            ctx.tokenizer, plan.messages, add_generation_prompt, plan.tools,
            continue_final_message=continue_final_message, template_kwargs=template_kwargs,
        )
    except ChatTemplateError as error:
        raise invalid(
            f"{error}. On a server: restart it with --chat-template FILE, or send plain text to /v1/completions",
            "messages",
        ) from None


def message_text(message: ChatMessage, index: int) -> str | None:
    """A message's content as one string (text parts joined); 400 for parts other than text."""
    content = message.content
    if isinstance(content, list):
        if any(part.type != "text" or part.text is None for part in content):
            raise invalid(f"messages[{index}].content: only text parts are supported", f"messages.{index}.content")
        content = "".join(part.text for part in content)
    return content


def _message_dict(message: ChatMessage, index: int) -> dict:
    content = message_text(message, index)
    if content is None and message.role == "assistant":
        content = ""
    role = "system" if message.role == "developer" else message.role  # OpenAI's newer name for system
    result = {"role": role, "content": content}
    if message.tool_calls:
        calls = enumerate(message.tool_calls)
        result["tool_calls"] = [_call_dict(call, f"messages.{index}.tool_calls.{i}") for i, call in calls]
    if message.role == "tool":
        result["tool_call_id"] = message.tool_call_id
        if message.name:
            result["name"] = message.name
    return result


def _call_dict(call: ToolCall, where: str) -> dict:
    """An earlier call as chat templates read it (Hugging Face's convention: arguments as a dict)."""
    try:
        arguments = json.loads(call.function.arguments)
    except json.JSONDecodeError:
        arguments = None
    if not isinstance(arguments, dict):
        raise invalid(
            f"{where}.function.arguments must be a JSON object as text, like '{{\"city\": \"Paris\"}}', "
            f"got {call.function.arguments!r}", f"{where}.function.arguments",
        )
    return {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": arguments}}


def _with_call_schema(request: ChatCompletionRequest, plan: ToolPrompt) -> ChatCompletionRequest:
    """The request with decoding held to the plan's call schema, through the same path as response_format."""
    constrained = request.response_format is not None and request.response_format.constrained
    if constrained and (plan.schema is not None or plan.tools):
        message = 'response_format cannot be combined with tools: leave it out, or set tool_choice to "none"'
        raise invalid(message, "response_format")
    if plan.schema is None:
        return request
    response_format = ResponseFormat(type="json_schema", json_schema={"name": "tool_calls", "schema": plan.schema})
    return request.model_copy(update={"response_format": response_format})


def _with_call_markers(ctx: ServingContext, request: ChatCompletionRequest, plan: ToolPrompt) -> ChatCompletionRequest:
    """The request with special tokens kept in the text when the model's call format opens with one (Mistral's
    `[TOOL_CALLS]`), as vLLM does, unless the request set skip_special_tokens itself."""
    if plan.schema is not None or not plan.tools or "skip_special_tokens" in request.model_fields_set:
        return request
    if not plan.parser.needs_special_tokens(ctx.tokenizer):
        return request
    return request.model_copy(update={"skip_special_tokens": False})


def _echo(request: ChatCompletionRequest) -> str:
    """What `echo` begins each answer with: the last message's content when it is the assistant's (as vLLM)."""
    last = request.messages[-1]
    if not request.echo or last.role != "assistant":
        return ""
    return message_text(last, len(request.messages) - 1) or ""


def _filtered(index: int) -> ChatCompletionChoice:
    """A choice whose answer the safety policy blocked: no content, finish reason "content_filter"."""
    return ChatCompletionChoice(index=index, message=AssistantMessage(content=None), finish_reason="content_filter")


def _choice(
    ctx: ServingContext, request: ChatCompletionRequest, plan: ToolPrompt, out: CompletionOutput, index: int,
    echo: str = "",
) -> ChatCompletionChoice:
    """A finished completion as a choice: its content (after `echo`) or calls (each with a fresh id); "tool_calls"
    if it called."""
    answer = plan.parse(out.text)
    calls = [
        ToolCall(id=_call_id(), function=FunctionCall(name=call.name, arguments=call.arguments))
        for call in answer.tool_calls
    ]
    content = f"{echo}{answer.content or ''}" if echo else answer.content
    return ChatCompletionChoice(
        index=index,
        message=AssistantMessage(content=content, tool_calls=calls or None),
        logprobs=_logprobs(ctx, out, 0) if request.logprobs else None,
        finish_reason=_finish_reason(plan, bool(calls), out),
    )


def _finish_reason(plan: ToolPrompt, called: bool, out: CompletionOutput) -> str | None:
    """"tool_calls" for a finished answer that called tools, else the engine's reason. Constrained JSON that
    parses is complete (only the stop token could follow), even if max_tokens came first."""
    complete = out.finish_reason == "stop" or plan.schema is not None
    return "tool_calls" if called and complete else out.finish_reason


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


async def _chunks(
    ctx: ServingContext, request: ChatCompletionRequest, plan: ToolPrompt, prompt: list[int],
    stream: AsyncIterator[tuple[int, RequestOutput]], sampling: SamplingPlan, log: RequestLog,
) -> AsyncIterator[str]:
    """The chunk events: role first, content deltas, one finish chunk per choice, then usage if asked.

    When the model may call tools, its text goes through the plan's `ToolCallStream`: content as it comes,
    then each call as OpenAI streams it (a first delta with its id and name, then pieces of its arguments),
    and finish reason "tool_calls". When answers are checked, text goes out a sentence at a time and a
    blocked choice ends with finish reason "content_filter"; an answer that may call tools is then checked
    and sent whole, once complete.
    """
    created, request_id = int(time.time()), log.request_id
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    context = moderation.dialog(request.messages)
    guards: dict[int, moderation.AnswerGuard] = {}

    def chunk(choices: list[ChatCompletionChunkChoice], usage: UsageInfo | None = None) -> str:
        return sse(ChatCompletionChunk(id=request_id, created=created, model=log.model, choices=choices, usage=usage))

    def finish(index: int, reason: str) -> str:
        return chunk([
            ChatCompletionChunkChoice(index=choice, delta=DeltaMessage(), finish_reason=reason)
            for choice in sampling.choice_indices(0, index)
        ])

    def call_delta(piece: CallPiece) -> DeltaMessage:
        function = FunctionCallDelta(name=piece.name, arguments=piece.arguments)
        if piece.name is None:
            return DeltaMessage(tool_calls=[ToolCallDelta(index=piece.index, function=function)])
        call = ToolCallDelta(index=piece.index, id=_call_id(), type="function", function=function)
        return DeltaMessage(tool_calls=[call])

    sent_logprobs: dict[int, int] = {}
    finished: set[int] = set()
    calls: dict[int, ToolCallStream] = {}
    yield chunk([ChatCompletionChunkChoice(index=i, delta=DeltaMessage(role="assistant", content="")) for i in range(sampling.n)])
    if echo := _echo(request):
        yield chunk([ChatCompletionChunkChoice(index=i, delta=DeltaMessage(content=echo)) for i in range(sampling.n)])
    async for _, output in stream:
        log.usage = usage([prompt], output.outputs, sampling.copies)
        for out in output.outputs:
            if out.index in finished:
                continue
            done = out.finish_reason is not None
            if plan.may_call and moderation.checks_output(ctx):
                if done:
                    finished.add(out.index)
                    if await moderation.answer_blocked(ctx, out.text, context):
                        yield finish(out.index, "content_filter")
                    else:
                        yield chunk([_whole_chunk(ctx, request, plan, out, i) for i in sampling.choice_indices(0, out.index)])
                continue
            logprobs = None
            if request.logprobs and out.logprobs:
                logprobs = _logprobs(ctx, out, sent_logprobs.get(out.index, 0))
                sent_logprobs[out.index] = len(out.logprobs)
            content, pieces, blocked = out.delta, [], False
            if plan.may_call:
                new = calls.setdefault(out.index, plan.stream()).feed(out.text, done)
                content, pieces = new.content, new.calls
            elif moderation.checks_output(ctx):
                if out.index not in guards:
                    guards[out.index] = moderation.AnswerGuard(ctx.safety, context)
                content, blocked = await guards[out.index].feed(out.delta, done)
            if content or (logprobs and logprobs.content):
                yield chunk([
                    ChatCompletionChunkChoice(index=index, delta=DeltaMessage(content=content), logprobs=logprobs)
                    for index in sampling.choice_indices(0, out.index)
                ])
            for piece in pieces:  # one piece a chunk, as OpenAI sends them; each copy its own call ids
                yield chunk([
                    ChatCompletionChunkChoice(index=index, delta=call_delta(piece))
                    for index in sampling.choice_indices(0, out.index)
                ])
            if blocked or done:
                finished.add(out.index)
                called = plan.may_call and bool(plan.parse(out.text).tool_calls)
                yield finish(out.index, "content_filter" if blocked else _finish_reason(plan, called, out))
        if len(finished) == sampling.outputs():
            break  # every choice has ended (a blocked one before its generation did: leaving aborts it)
    if include_usage:
        yield chunk([], log.usage)


def _whole_chunk(
    ctx: ServingContext, request: ChatCompletionRequest, plan: ToolPrompt, out: CompletionOutput, index: int
) -> ChatCompletionChunkChoice:
    """A finished choice as one chunk: its content or calls (OpenAI's streamed call shape), and its finish reason."""
    choice = _choice(ctx, request, plan, out, index)
    calls = [ToolCallDelta(index=i, **call.model_dump()) for i, call in enumerate(choice.message.tool_calls or [])]
    delta = DeltaMessage(content=choice.message.content, tool_calls=calls or None)
    return ChatCompletionChunkChoice(
        index=index, delta=delta, logprobs=choice.logprobs, finish_reason=choice.finish_reason
    )


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
