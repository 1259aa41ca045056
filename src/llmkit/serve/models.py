"""`/v1/models`, `/tokenize`, `/detokenize`: what the server serves and how it tokenizes."""

from __future__ import annotations

from llmkit.serve.chat import chat_prompt
from llmkit.serve.errors import invalid
from llmkit.serve.protocol import (
    DetokenizeRequest,
    DetokenizeResponse,
    ModelCard,
    ModelList,
    TokenizeRequest,
    TokenizeResponse,
)
from llmkit.serve.serving import ServingContext


def list_models(ctx: ServingContext) -> ModelList:
    """Every model id this server answers to."""
    return ModelList(data=[ModelCard(id=ctx.model_id, max_model_len=ctx.max_seq_len)])


def get_model(ctx: ServingContext, model_id: str) -> ModelCard:
    """One model's card; 404 for an id the server does not serve."""
    ctx.check_model(model_id)
    return ModelCard(id=ctx.model_id, max_model_len=ctx.max_seq_len)


def tokenize(ctx: ServingContext, request: TokenizeRequest) -> TokenizeResponse:
    """Token ids of a text prompt, or of chat messages rendered with the model's chat template."""
    ctx.check_model(request.model)
    if (request.prompt is None) == (request.messages is None):
        raise invalid("give exactly one of prompt (text) or messages (a chat)", "prompt")
    if request.messages is not None:
        tokens = chat_prompt(ctx, request.messages, request.add_generation_prompt)
    else:
        tokens = ctx.tokenizer.encode(request.prompt, add_special_tokens=request.add_special_tokens)
    return TokenizeResponse(tokens=tokens, count=len(tokens), max_model_len=ctx.max_seq_len)


def detokenize(ctx: ServingContext, request: DetokenizeRequest) -> DetokenizeResponse:
    """The text of a list of token ids (400 for ids outside the vocabulary)."""
    ctx.check_model(request.model)
    vocab = len(ctx.tokenizer)
    bad = [t for t in request.tokens if not 0 <= t < vocab]
    if bad:
        raise invalid(f"token ids outside the vocabulary (0..{vocab - 1}): {bad[:5]}", "tokens")
    return DetokenizeResponse(prompt=ctx.tokenizer.decode(request.tokens))
