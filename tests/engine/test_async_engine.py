"""The engine on its own thread, driven from asyncio: concurrent callers, aborts, bad input, back-pressure."""

from __future__ import annotations

import asyncio

import pytest

from llmkit.engine.async_engine import AsyncEngine, QueueFullError
from llmkit.engine.engine import Engine
from llmkit.engine.params import SamplingParams
from llmkit.errors import InvalidRequestError


@pytest.fixture(scope="module")
def async_engine(smollm):
    engine = AsyncEngine(Engine(smollm.model, smollm.tokenizer, max_batch_size=4, max_seq_len=256), max_queue=6)
    yield engine
    engine.shutdown()


async def _final(async_engine, prompt, params):
    last = None
    async for output in async_engine.generate(prompt, params):
        last = output
    return last


def test_concurrent_callers_get_their_own_results(async_engine, smollm):
    prompts = [smollm.tokenizer.encode(p) for p in ("The capital of France is", "1, 2, 3, 4,", "Hello, my name")]
    params = SamplingParams(max_new_tokens=12)

    async def main():
        return await asyncio.gather(*(_final(async_engine, p, params) for p in prompts))

    together = asyncio.run(main())
    alone = [asyncio.run(_final(async_engine, p, params)) for p in prompts]
    assert [r.outputs[0].token_ids for r in together] == [r.outputs[0].token_ids for r in alone]
    assert all(r.finished for r in together)
    assert async_engine.num_requests == 0


def test_leaving_early_aborts_the_request(async_engine, smollm):
    prompt = smollm.tokenizer.encode("Tell me a long story.")

    async def main():
        async for output in async_engine.generate(prompt, SamplingParams(max_new_tokens=200, ignore_eos=True)):
            if len(output.outputs[0].token_ids) >= 3:
                break
        # The engine thread frees the rows on its next step.
        for _ in range(100):
            if not async_engine.engine.has_unfinished():
                return True
            await asyncio.sleep(0.05)
        return False

    assert asyncio.run(main())
    assert async_engine.num_requests == 0


def test_bad_input_is_raised_to_the_caller(async_engine):
    async def main():
        async for _ in async_engine.generate([], SamplingParams()):
            pass

    with pytest.raises(InvalidRequestError, match="empty"):
        asyncio.run(main())


def test_full_queue_is_refused(async_engine, smollm):
    prompt = smollm.tokenizer.encode("Count to ten:")
    params = SamplingParams(max_new_tokens=30, ignore_eos=True)

    async def main():
        tasks = [asyncio.create_task(_final(async_engine, prompt, params)) for _ in range(async_engine.max_queue)]
        await asyncio.sleep(0.1)
        with pytest.raises(QueueFullError, match="busy"):
            await _final(async_engine, prompt, params)
        return await asyncio.gather(*tasks)

    results = asyncio.run(main())
    assert all(r.finished for r in results)
