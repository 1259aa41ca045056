"""`/v1/models`, adapter loading, `/tokenize`, `/detokenize`: what the server serves and how it tokenizes.

The model list names the chat model, its loaded adapters, and the embedding models `/v1/embeddings` answers without
a download; cards never show a path on the server.
"""

from __future__ import annotations

import logging
from pathlib import Path

from llmkit.embeddings import served_embedding_models
from llmkit.engine.checks import check_token_ids
from llmkit.errors import ModelNotFoundError
from llmkit.serve.chat import chat_prompt
from llmkit.serve.errors import invalid
from llmkit.serve.protocol import (
    DetokenizeRequest,
    DetokenizeResponse,
    LoadAdapterRequest,
    ModelCard,
    ModelDeleted,
    ModelList,
    TokenizeRequest,
    TokenizeResponse,
    UnloadAdapterRequest,
)
from llmkit.serve.serving import ServedModel, ServingContext

logger = logging.getLogger("llmkit.serve")


def list_models(ctx: ServingContext) -> ModelList:
    """Every model id this server answers to: the base model, each loaded adapter, then the embedding models."""
    adapters = [_card(ctx, ServedModel(name, name)) for name in ctx.engine.adapters]
    embedders = [ModelCard(id=name) for name in served_embedding_models()]
    return ModelList(data=[_card(ctx, ServedModel(ctx.model_id)), *adapters, *embedders])


def get_model(ctx: ServingContext, model_id: str) -> ModelCard:
    """One model's card, for any id `list_models` lists; 404 for an id the server does not serve."""
    if model_id in served_embedding_models():
        return ModelCard(id=model_id)
    return _card(ctx, ctx.resolve(model_id))


async def load_adapter(ctx: ServingContext, request: LoadAdapterRequest) -> ModelCard:
    """Serve the LoRA adapter at `lora_path` as model `lora_name` from now on (loaded between engine steps)."""
    if request.lora_name == ctx.model_id:
        raise invalid(f"{request.lora_name!r} is the base model's id: pick another lora_name", "lora_name")
    try:
        await ctx.engine.load_adapter(request.lora_name, Path(request.lora_path))
    except ModelNotFoundError as error:
        raise invalid(str(error), "lora_path") from error
    logger.info("loaded adapter %s from %s", request.lora_name, request.lora_path)
    return _card(ctx, ServedModel(request.lora_name, request.lora_name))


async def unload_adapter(ctx: ServingContext, request: UnloadAdapterRequest) -> ModelDeleted:
    """Stop serving adapter `lora_name` (refused while requests still use it) and free its weights."""
    await ctx.engine.unload_adapter(request.lora_name)
    logger.info("unloaded adapter %s", request.lora_name)
    return ModelDeleted(id=request.lora_name)


def _card(ctx: ServingContext, served: ServedModel) -> ModelCard:
    """The card of the base model or an adapter: an adapter is its own root (its directory stays on the server)."""
    card = ModelCard(id=served.id, max_model_len=ctx.max_seq_len, backend=ctx.engine.backend)
    if served.adapter is None:
        return card
    return card.model_copy(update={"root": served.adapter, "parent": ctx.model_id})


def tokenize(ctx: ServingContext, request: TokenizeRequest) -> TokenizeResponse:
    """Token ids of a text prompt, or of chat messages rendered with the model's chat template."""
    ctx.resolve(request.model)
    if (request.prompt is None) == (request.messages is None):
        raise invalid("give exactly one of prompt (text) or messages (a chat)", "prompt")
    if request.messages is not None:
        tokens = chat_prompt(ctx, request.messages, request.add_generation_prompt)
    else:
        tokens = ctx.tokenizer.encode(request.prompt, add_special_tokens=request.add_special_tokens)
    return TokenizeResponse(tokens=tokens, count=len(tokens), max_model_len=ctx.max_seq_len)


def detokenize(ctx: ServingContext, request: DetokenizeRequest) -> DetokenizeResponse:
    """The text of a list of token ids (400 for ids outside the vocabulary)."""
    ctx.resolve(request.model)
    check_token_ids(request.tokens, len(ctx.tokenizer), "tokens")
    return DetokenizeResponse(prompt=ctx.tokenizer.decode(request.tokens))
