"""Automatic prefix caching: prompts that start alike reuse each other's keys and values, give the same tokens as
without reuse, and stay within their memory budget."""

from __future__ import annotations

import pytest

from llmkit.engine.engine import Engine
from llmkit.engine.params import SamplingParams
from llmkit.engine.prefix_cache import BLOCK
from llmkit.models import render_chat

SYSTEM = "You are a careful assistant. Answer in one short sentence and never make up facts. " * 2
QUESTIONS = ["What is the capital of France?", "Name a primary colour.", "What is two plus two?"]
GREEDY = SamplingParams(max_new_tokens=12)


def prompts(tokenizer) -> list[list[int]]:
    """Chats that share a long system prompt and differ in their question."""
    return [render_chat(tokenizer, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]) for q in QUESTIONS]


def engine(smollm, **runner_options) -> Engine:
    return Engine(smollm.model, smollm.tokenizer, max_batch_size=4, max_seq_len=512, runner_options=runner_options)


def run_one_by_one(engine: Engine, batch: list[list[int]]) -> list[list[int]]:
    return [engine.generate([prompt], GREEDY)[0].outputs[0].token_ids for prompt in batch]


def test_a_shared_system_prompt_is_computed_once_and_the_tokens_do_not_change(smollm) -> None:
    batch = prompts(smollm.tokenizer)
    shared = next(i for i, tokens in enumerate(zip(*batch)) if len(set(tokens)) > 1)  # tokens all three start with
    reusing, fresh = engine(smollm), engine(smollm, prefix_cache_bytes=0)
    assert fresh.runner.prefix_cache is None
    assert run_one_by_one(reusing, batch) == run_one_by_one(fresh, batch)
    stats = reusing.runner.prefix_cache.stats
    assert stats.queried_tokens == sum(len(p) for p in batch)
    # Every prompt after the first finds the whole blocks of the system prompt they share.
    assert stats.hit_tokens == (len(batch) - 1) * (shared // BLOCK) * BLOCK > 0


def test_the_same_prompt_again_reuses_all_but_its_last_token(smollm) -> None:
    reusing = engine(smollm)
    prompt = prompts(smollm.tokenizer)[0]
    first = reusing.generate([prompt], GREEDY)[0].outputs[0].token_ids
    before = reusing.runner.prefix_cache.stats.hit_tokens
    assert reusing.generate([prompt], GREEDY)[0].outputs[0].token_ids == first
    assert reusing.runner.prefix_cache.stats.hit_tokens - before == (len(prompt) - 1) // BLOCK * BLOCK


def test_a_small_budget_evicts_least_recently_used_blocks(smollm) -> None:
    batch = prompts(smollm.tokenizer)
    block_bytes = 2 * smollm.model.config.num_hidden_layers * smollm.model.config.num_key_value_heads * BLOCK * (
        smollm.model.config.hidden_size // smollm.model.config.num_attention_heads) * 4
    small = engine(smollm, prefix_cache_bytes=3 * block_bytes)
    assert run_one_by_one(small, batch) == run_one_by_one(engine(smollm, prefix_cache_bytes=0), batch)
    cache = small.runner.prefix_cache
    assert len(cache.blocks) == 3 and cache.nbytes <= cache.budget_bytes
    # The chain's head stays longest: the first blocks of the last prompt are what is left.
    assert cache.load(batch[-1], 0, small.runner.cache) == 3 * BLOCK


@pytest.mark.parametrize("budget", [0, 1])
def test_no_budget_or_one_too_small_for_a_block_keeps_nothing(smollm, budget) -> None:
    small = engine(smollm, prefix_cache_bytes=budget)
    small.generate(prompts(smollm.tokenizer)[:1], GREEDY)
    assert small.runner.prefix_cache is None or not small.runner.prefix_cache.blocks


def test_scoring_options_after_one_question_computes_the_question_once(smollm) -> None:
    """`eval mc` scores each option as tokens after the question: the question's blocks are reused."""
    from llmkit.engine.model_runner import ModelRunner

    question = prompts(smollm.tokenizer)[0]
    options = [question + smollm.tokenizer.encode(option) for option in (" Paris.", " Rome, I think.")]
    reference = ModelRunner(smollm.model, num_slots=1, max_len=512, forward="transformers")
    runner = ModelRunner(smollm.model, num_slots=1, max_len=512)
    for ids in options:
        expected = reference.prompt_logprobs(ids)[len(question):]
        assert runner.prompt_logprobs(ids, start=len(question)) == pytest.approx(expected, abs=1e-4)
        assert reference.prompt_logprobs(ids, start=len(question)) == expected
    assert runner.prefix_cache.stats.hit_tokens == (len(question) - 1) // BLOCK * BLOCK  # the second option's
