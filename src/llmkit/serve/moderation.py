"""Safety on the server (`llmkit serve --safety policy.yaml`), and `POST /v1/moderations`.

Input: the last user message (or each text prompt) is checked before generation; a blocked one is answered
400 with OpenAI's error body and `code: "content_filter"` (as Azure OpenAI answers a filtered prompt), and no
tokens are generated. Output: a whole answer is checked once it is complete; a streamed one a sentence at a
time, each sentence sent only after the answer so far has passed. A blocked answer ends its choice with
`finish_reason: "content_filter"`: whole, with no content; streamed, after the sentences that passed.
Checks run on worker threads: model-based checkers never hold up the event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from llmkit.errors import LLMKitError
from llmkit.safety.policy import Blocked, Decision, SafetyPolicy
from llmkit.safety.streaming import SentenceGate
from llmkit.safety.verdict import Message, Role
from llmkit.serve.errors import invalid
from llmkit.serve.protocol import (
    ChatMessage,
    ModerationRequest,
    ModerationResponse,
    ModerationResult,
)
from llmkit.serve.serving import ServingContext

MODERATION_MODEL = "llmkit-safety"  # the model a moderation response names when the request names none


class NoSafetyPolicyError(LLMKitError):
    """A moderation request to a server started without a safety policy."""

    status_code = 404


def dialog(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """The request's messages as checkers read them: role and text (text parts joined), other turns left out."""
    result = []
    for message in messages:
        content = message.content
        if isinstance(content, list):
            content = "".join(part.text or "" for part in content)
        if message.role in ("user", "assistant") and content:
            result.append({"role": message.role, "content": content})
    return result


async def decide(policy: SafetyPolicy, text: str, role: Role, context: Sequence[Message] | None = None) -> Decision:
    """The policy's decision, reached on a worker thread."""
    return await asyncio.to_thread(policy.check, text, role=role, context=context)


async def check_input(ctx: ServingContext, text: str, context: Sequence[Message], param: str) -> None:
    """Raise `Blocked` (a 400 `content_filter` error naming `param`) when the policy blocks this user text."""
    if ctx.safety is None or not ctx.safety.checks("user"):
        return
    decision = await decide(ctx.safety, text, "user", context)
    if decision.blocked:
        error = Blocked(decision)
        error.param = param
        raise error


async def check_messages(ctx: ServingContext, messages: Sequence[ChatMessage]) -> None:
    """Check a chat request's last user message, the conversation before it as context."""
    turns = dialog(messages)
    last = max((i for i, turn in enumerate(turns) if turn["role"] == "user"), default=None)
    if last is not None:
        await check_input(ctx, turns[last]["content"], turns[:last], "messages")


def checks_output(ctx: ServingContext) -> bool:
    return ctx.safety is not None and ctx.safety.checks("assistant")


def refuse_streamed_logprobs(ctx: ServingContext, stream: bool, logprobs: bool) -> None:
    """Streamed logprobs would show tokens before their sentence is checked: refuse them when answers are checked."""
    if stream and logprobs and checks_output(ctx):
        raise invalid("this server checks answers (--safety), so logprobs cannot be streamed: leave out logprobs "
                      "or stream", "logprobs")


async def answer_blocked(ctx: ServingContext, text: str, context: Sequence[Message]) -> bool:
    """Whether the policy blocks a whole answer."""
    return checks_output(ctx) and (await decide(ctx.safety, text, "assistant", context)).blocked


class AnswerGuard:
    """One streamed choice: text is let out a sentence at a time, once the answer so far has passed."""

    def __init__(self, policy: SafetyPolicy, context: Sequence[Message]) -> None:
        self.policy, self.context = policy, context
        self.gate = SentenceGate()

    async def feed(self, delta: str, final: bool) -> tuple[str, bool]:
        """The text now let out, and whether the answer was blocked (nothing more is let out then)."""
        released = ""
        for piece in (self.gate.push(delta), self.gate.flush() if final else ""):
            if piece:
                decision = await decide(self.policy, self.gate.passed + piece, "assistant", self.context)
                if decision.blocked:
                    return released, True
                self.gate.passed += piece
                released += piece
        return released, False


async def moderate(ctx: ServingContext, request: ModerationRequest) -> ModerationResponse:
    """Classify each input with the policy's input checkers, in OpenAI's moderation shape (flagged also in log_only)."""
    if ctx.safety is None:
        raise NoSafetyPolicyError("this server has no safety policy: start it with llmkit serve --safety POLICY.yaml")
    texts = [request.input] if isinstance(request.input, str) else request.input
    results = []
    for text in texts:
        decision = await decide(ctx.safety, text, "user")
        scores = decision.scores
        categories = {category: category in decision.categories for category in scores}
        results.append(ModerationResult(flagged=decision.flagged, categories=categories, category_scores=scores))
    return ModerationResponse(id=f"modr-{uuid.uuid4().hex}", model=request.model or MODERATION_MODEL, results=results)
