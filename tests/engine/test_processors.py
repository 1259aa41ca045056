"""Our per-row processors must equal transformers' processors applied row by row with that row's parameters."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from llmkit.engine import processors as P
from llmkit.engine.params import SamplingParams
from llmkit.engine.processors import TokenHistory, apply_processors, build_processors

V = 1000
EOS = [2, 7]
SEEDS = [0, 1, 2]


def random_history(seed: int, batch: int = 4, id_range: int = 60) -> TokenHistory:
    """Prompts and outputs of different lengths per row, from a small id range so ids and n-grams repeat."""
    g = torch.Generator().manual_seed(seed)
    prompts, generated = [], []
    for _ in range(batch):
        n_prompt = int(torch.randint(1, 25, (1,), generator=g))
        n_generated = int(torch.randint(0, 15, (1,), generator=g))
        prompts.append(torch.randint(0, id_range, (n_prompt,), generator=g).tolist())
        generated.append(torch.randint(0, id_range, (n_generated,), generator=g).tolist())
    return TokenHistory.from_rows([p + g for p, g in zip(prompts, generated)], [len(p) for p in prompts])


def random_logits(seed: int, batch: int = 4, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(batch, V, generator=torch.Generator().manual_seed(100 + seed)) * scale


def row_ids(history: TokenHistory, b: int) -> torch.LongTensor:
    return history.ids[b, : history.lengths[b]][None]


def reference(logits: torch.Tensor, history: TokenHistory, make_hf) -> torch.Tensor:
    """Apply `make_hf(b)` (a transformers processor list, or None for 'untouched') to each row alone."""
    rows = []
    for b in range(logits.shape[0]):
        hf = make_hf(b)
        row = logits[b : b + 1].clone()
        rows.append(row if hf is None else LogitsProcessorList(hf)(row_ids(history, b), row))
    return torch.cat(rows)


def run(params: list[SamplingParams], logits: torch.Tensor, history: TokenHistory, **kwargs) -> torch.Tensor:
    return apply_processors(build_processors(params, EOS, **kwargs), logits.clone(), history)


def hf_warpers(p: SamplingParams) -> list | None:
    """The warpers transformers' `_get_logits_processor` builds for these params (min_tokens_to_keep = 1)."""
    if not p.sampling:
        return None
    warpers = []
    if p.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(p.temperature))
    if p.top_k:
        warpers.append(TopKLogitsWarper(p.top_k))
    if p.top_p < 1.0:
        warpers.append(TopPLogitsWarper(p.top_p))
    if p.min_p > 0.0:
        warpers.append(MinPLogitsWarper(p.min_p))
    return warpers


@pytest.mark.parametrize("seed", SEEDS)
def test_repetition_penalty_matches_transformers(seed: int) -> None:
    penalties = [1.3, 1.0, 0.7, 2.0]
    params = [SamplingParams(repetition_penalty=r) for r in penalties]
    logits, history = random_logits(seed), random_history(seed)
    expected = reference(logits, history, lambda b: [RepetitionPenaltyLogitsProcessor(penalties[b])])
    torch.testing.assert_close(run(params, logits, history), expected, rtol=0, atol=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_presence_frequency_penalty_counts_generated_ids_only(seed: int) -> None:
    presence, frequency = [0.5, 0.0, -1.0, 2.0], [0.3, 0.0, 1.5, -0.4]
    params = [SamplingParams(presence_penalty=p, frequency_penalty=f) for p, f in zip(presence, frequency)]
    logits, history = random_logits(seed), random_history(seed)
    expected = logits.clone()
    for b in range(4):
        generated = history.ids[b, history.prompt_lengths[b] : history.lengths[b]].tolist()
        for token in set(generated):
            expected[b, token] -= frequency[b] * generated.count(token) + presence[b]
    torch.testing.assert_close(run(params, logits, history), expected)
    # A prompt-only history is not penalised at all.
    prompt_only = TokenHistory.from_rows([[1, 2, 3]] * 4, [3] * 4)
    torch.testing.assert_close(run(params, logits, prompt_only), logits, rtol=0, atol=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_no_repeat_ngram_matches_transformers(seed: int) -> None:
    sizes = [2, 0, 3, 1]
    params = [SamplingParams(no_repeat_ngram_size=n) for n in sizes]
    logits, history = random_logits(seed), random_history(seed, id_range=4)
    expected = reference(logits, history, lambda b: [NoRepeatNGramLogitsProcessor(sizes[b])] if sizes[b] else None)
    out = run(params, logits, history)
    assert torch.equal(out.isinf(), expected.isinf())
    assert out[3].isinf().any(), "n = 1 bans every id seen"
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_no_repeat_ngram_with_rows_shorter_than_n() -> None:
    history = TokenHistory.from_rows([[5], [5, 6, 5, 6], [1, 2]], [1, 3, 2])
    params = [SamplingParams(no_repeat_ngram_size=n) for n in (3, 3, 3)]
    logits = torch.zeros(3, V)
    expected = reference(logits, history, lambda b: [NoRepeatNGramLogitsProcessor(3)])
    out = run(params, logits, history)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    # Row 1 is [5, 6, 5, 6]: it ends in (5, 6), which was followed by 5 before, so 5 is banned.
    assert out[1].isinf().nonzero().flatten().tolist() == [5]
    assert not out[[0, 2]].isinf().any()


@pytest.mark.parametrize("seed", SEEDS)
def test_min_new_tokens_masks_eos_and_row_stop_ids(seed: int) -> None:
    history = random_history(seed)
    generated = history.generated_lengths.tolist()
    minimums = [generated[0] + 1, generated[1], 0, generated[3] + 5]  # active, just reached, off, active
    stop_ids = [[11], [], [12, 13], []]
    params = [SamplingParams(min_new_tokens=m, stop_token_ids=s) for m, s in zip(minimums, stop_ids)]
    logits = random_logits(seed)

    def hf(b: int) -> list:
        return [MinNewTokensLengthLogitsProcessor(int(history.prompt_lengths[b]), minimums[b], EOS + stop_ids[b])]

    out = run(params, logits, history)
    torch.testing.assert_close(out, reference(logits, history, hf), rtol=0, atol=0)
    assert out[0].isinf().nonzero().flatten().tolist() == [2, 7, 11]
    assert not out[1:3].isinf().any()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("name", "make_params", "make_hf"),
    [
        ("temperature", lambda v: SamplingParams(do_sample=True, temperature=v), TemperatureLogitsWarper),
        ("top_k", lambda v: SamplingParams(do_sample=True, top_k=v), TopKLogitsWarper),
        ("top_p", lambda v: SamplingParams(do_sample=True, top_p=v), TopPLogitsWarper),
        ("min_p", lambda v: SamplingParams(do_sample=True, min_p=v), MinPLogitsWarper),
    ],
)
def test_each_warper_matches_transformers(seed: int, name: str, make_params, make_hf) -> None:
    values = {"temperature": [0.7, 1.5, 0.05, 3.0], "top_k": [1, 5, 50, 999], "top_p": [0.5, 0.9, 0.01, 0.999],
              "min_p": [0.05, 0.2, 0.9, 1.0]}[name]
    params = [make_params(v) for v in values]
    logits, history = random_logits(seed), random_history(seed)
    expected = reference(logits, history, lambda b: [make_hf(values[b])])
    out = run(params, logits, history)
    assert torch.equal(out.isinf(), expected.isinf())
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_top_k_keeps_ties_with_the_kth_value_as_transformers_does() -> None:
    logits = torch.tensor([[3.0, 2.0, 2.0, 2.0, 1.0] + [0.0] * (V - 5)])
    params = [SamplingParams(do_sample=True, top_k=2)]
    out = run(params, logits, TokenHistory.from_rows([[0]], [1]))
    expected = TopKLogitsWarper(2)(None, logits.clone())
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert (~out.isinf()).sum() == 4


@pytest.mark.parametrize("seed", SEEDS)
def test_mixed_batch_matches_each_row_alone(seed: int) -> None:
    params = [
        SamplingParams(do_sample=True, top_p=0.5, repetition_penalty=1.2),
        SamplingParams(top_k=5, temperature=0.3, top_p=0.1, min_p=0.5),  # greedy: warpers must not touch it
        SamplingParams(do_sample=True, top_k=5, temperature=0.8, presence_penalty=0.5, no_repeat_ngram_size=2),
        SamplingParams(do_sample=True, temperature=1.7, top_k=40, top_p=0.9, min_p=0.05, min_new_tokens=100),
        SamplingParams(do_sample=True, temperature=0.0, top_k=3),  # temperature 0 means greedy
        SamplingParams(do_sample=True),  # plain sampling: nothing to do
    ]
    logits, history = random_logits(seed, batch=6), random_history(seed, batch=6)
    generated = [history.ids[b, history.prompt_lengths[b] : history.lengths[b]].tolist() for b in range(6)]

    def hf(b: int) -> list:
        p = params[b]
        chain = []
        if p.repetition_penalty != 1.0:
            chain.append(RepetitionPenaltyLogitsProcessor(p.repetition_penalty))
        if p.no_repeat_ngram_size:
            chain.append(NoRepeatNGramLogitsProcessor(p.no_repeat_ngram_size))
        if p.min_new_tokens:
            chain.append(MinNewTokensLengthLogitsProcessor(int(history.prompt_lengths[b]), p.min_new_tokens, EOS))
        return chain + (hf_warpers(p) or [])

    penalised = logits.clone()
    for token in set(generated[2]):  # presence penalty is ours, not transformers': apply it by hand first
        penalised[2, token] -= 0.5
    expected = reference(penalised, history, hf)
    out = run(params, logits, history)
    assert torch.equal(out.isinf(), expected.isinf())
    torch.testing.assert_close(out, expected)
    for greedy_row in (1, 4, 5):
        assert torch.equal(out[greedy_row], logits[greedy_row])


def test_warpers_false_leaves_out_sampling_warpers() -> None:
    params = [SamplingParams(do_sample=True, temperature=0.5, top_k=3, top_p=0.5, min_p=0.1, repetition_penalty=1.1)]
    kinds = [type(p) for p in build_processors(params, EOS, warpers=False)]
    assert kinds == [P.RepetitionPenaltyLogitsProcessor]


def test_order_follows_transformers() -> None:
    params = [
        SamplingParams(repetition_penalty=1.1, presence_penalty=0.1, no_repeat_ngram_size=2, min_new_tokens=1),
        SamplingParams(do_sample=True, temperature=0.5, top_k=3, top_p=0.5, min_p=0.1),
    ]
    params[1] = params[1].model_copy(update={"logit_bias": {3: 1.0}})
    kinds = [type(p) for p in build_processors(params, EOS)]
    assert kinds == [
        P.LogitBiasLogitsProcessor,
        P.RepetitionPenaltyLogitsProcessor,
        P.PresenceFrequencyPenaltyLogitsProcessor,
        P.NoRepeatNGramLogitsProcessor,
        P.MinNewTokensLogitsProcessor,
        P.TemperatureLogitsWarper,
        P.TopKLogitsWarper,
        P.TopPLogitsWarper,
        P.MinPLogitsWarper,
    ]


def test_logit_bias_adds_each_rows_own_bias_to_greedy_and_sampled_rows() -> None:
    logits, history = random_logits(0, batch=3), random_history(0, batch=3)
    params = [
        SamplingParams(logit_bias={5: 100.0, 9: -100.0}),
        SamplingParams(),
        SamplingParams(do_sample=True, logit_bias={5: -2.5}),
    ]
    expected = logits.clone()
    expected[0, 5] += 100.0
    expected[0, 9] -= 100.0
    expected[2, 5] -= 2.5
    assert torch.equal(run(params, logits, history), expected)
    assert run(params, logits, history)[0].argmax() == 5  # +100 all but forces the token, as in OpenAI


def test_logit_bias_is_bounded_as_openai_bounds_it() -> None:
    from llmkit.errors import InvalidRequestError

    for bad in ({1: 100.5}, {1: -101.0}, {-1: 1.0}):
        with pytest.raises(InvalidRequestError, match="logit_bias"):
            SamplingParams.create(logit_bias=bad)


def test_no_processor_for_neutral_params() -> None:
    neutral = [
        SamplingParams(),
        SamplingParams(do_sample=True),
        SamplingParams(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0),
        # Warper settings on greedy rows are inert.
        SamplingParams(temperature=0.2, top_k=5, top_p=0.5, min_p=0.3),
        SamplingParams(do_sample=True, temperature=0.0, top_k=5),
        SamplingParams(stop_token_ids=[5], ignore_eos=True),
    ]
    assert build_processors(neutral, EOS) == []


def test_bfloat16_logits_keep_their_dtype() -> None:
    params = [SamplingParams(do_sample=True, temperature=0.7, top_k=10, top_p=0.9, min_p=0.1, repetition_penalty=1.2,
                             presence_penalty=0.3)]
    logits = random_logits(0, batch=1).bfloat16()
    out = run(params, logits, random_history(0, batch=1))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).any()


def test_token_history_counts() -> None:
    history = TokenHistory.from_rows([[1, 1, 2, 2, 2], [3]], [3, 1])
    assert history.generated_lengths.tolist() == [2, 0]
    assert history.counts(5)[0].tolist() == [0, 2, 3, 0, 0]
    assert history.counts(5, generated_only=True).tolist() == [[0, 0, 2, 0, 0], [0, 0, 0, 0, 0]]
