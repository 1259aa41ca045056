"""Beam search returns exactly what transformers' `model.generate(num_beams=...)` returns, in order."""

from __future__ import annotations

import pytest
import torch

from llmkit.engine.engine import Engine
from llmkit.engine.params import SamplingParams
from llmkit.models import render_chat

MAX_NEW_TOKENS = 12

# (num_beams, length_penalty, early_stopping, num_return_sequences): a subset that still pairs every
# beam width, length penalty and stopping rule at least once.
CASES = [
    (2, 1.0, False, 1),
    (2, 2.0, "never", 2),
    (3, 0.5, True, 2),
    (3, 2.0, False, 3),
    (4, 1.0, "never", 3),
    (4, 0.5, True, 4),
]


@pytest.fixture(scope="module")
def engine(smollm) -> Engine:
    return Engine(smollm.model, smollm.tokenizer, max_batch_size=8, max_seq_len=512)


@pytest.fixture(scope="module")
def prompt(smollm) -> list[int]:
    # The greedy answer ends on EOS after ~8 tokens, so hypotheses finish early and length penalty,
    # early stopping and the running beams all matter.
    return render_chat(smollm.tokenizer, [{"role": "user", "content": "What is the capital of France?"}])


def hf_beams(model, prompt: list[int], **kwargs) -> list[list[int]]:
    """transformers' returned sequences (generated part), each cut after its first EOS."""
    out = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=MAX_NEW_TOKENS, **kwargs)
    eos = model.generation_config.eos_token_id
    sequences = []
    for row in out[:, len(prompt) :].tolist():
        end = next((i + 1 for i, t in enumerate(row) if t == eos), len(row))
        sequences.append(row[:end])
    return sequences


@pytest.mark.parametrize(("num_beams", "length_penalty", "early_stopping", "num_return_sequences"), CASES)
def test_beam_search_matches_transformers(
    engine, smollm, prompt, num_beams, length_penalty, early_stopping, num_return_sequences
) -> None:
    settings = dict(
        num_beams=num_beams,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
        num_return_sequences=num_return_sequences,
    )
    result = engine.generate([prompt], SamplingParams(max_new_tokens=MAX_NEW_TOKENS, **settings))[0]
    assert result.finished
    assert [o.index for o in result.outputs] == list(range(num_return_sequences))
    assert [o.token_ids for o in result.outputs] == hf_beams(smollm.model, prompt, **settings)


def test_beam_outputs_decode_their_tokens_and_say_why_they_ended(engine, smollm, prompt) -> None:
    params = SamplingParams(max_new_tokens=MAX_NEW_TOKENS, num_beams=3, num_return_sequences=3)
    outputs = engine.generate([prompt], params)[0].outputs
    eos = smollm.tokenizer.eos_token_id
    for out in outputs:
        ended_on_eos = out.token_ids[-1] == eos
        assert out.finish_reason == ("stop" if ended_on_eos else "length")
        assert out.text == smollm.tokenizer.decode(out.token_ids, skip_special_tokens=True)
        assert out.cumulative_logprob is not None and out.cumulative_logprob <= 0.0
    scores = [o.cumulative_logprob for o in outputs]
    assert scores == sorted(scores, reverse=True)


def test_beam_requests_batched_together_equal_each_alone(engine, smollm, prompt) -> None:
    other = render_chat(smollm.tokenizer, [{"role": "user", "content": "Name a primary colour."}])
    params = [
        SamplingParams(max_new_tokens=MAX_NEW_TOKENS, num_beams=3, num_return_sequences=2),
        SamplingParams(max_new_tokens=MAX_NEW_TOKENS, num_beams=2, length_penalty=2.0),
        SamplingParams(max_new_tokens=MAX_NEW_TOKENS),
    ]
    prompts = [prompt, other, other]
    alone = [engine.generate([p], sp)[0] for p, sp in zip(prompts, params)]
    together = engine.generate(prompts, params)
    assert [[o.token_ids for o in r.outputs] for r in together] == [[o.token_ids for o in r.outputs] for r in alone]
