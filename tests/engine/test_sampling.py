"""Token selection: greedy is argmax, sampling follows the distribution, and a seed makes a request reproducible."""

from __future__ import annotations

import torch

from llmkit.engine.params import SamplingParams
from llmkit.engine.sampling import make_generator, select_tokens, token_logprobs

GREEDY = SamplingParams()
SAMPLE = SamplingParams(do_sample=True)


def draws(logits: torch.Tensor, params, generators, steps: int) -> torch.Tensor:
    return torch.stack([select_tokens(logits, params, generators) for _ in range(steps)])


def test_greedy_is_argmax() -> None:
    logits = torch.randn(5, 300, generator=torch.Generator().manual_seed(0))
    assert torch.equal(select_tokens(logits, [GREEDY] * 5, [None] * 5), logits.argmax(-1))
    # do_sample with temperature 0 is greedy too, even with a generator.
    params = [SamplingParams(do_sample=True, temperature=0.0)] * 5
    assert torch.equal(select_tokens(logits, params, [make_generator(1, "cpu")] * 5), logits.argmax(-1))


def test_make_generator() -> None:
    assert make_generator(None, "cpu") is None
    a, b = make_generator(7, "cpu"), make_generator(7, "cpu")
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


def test_same_seed_same_tokens_different_seed_different_tokens() -> None:
    logits = torch.zeros(1, 50)  # uniform: the draw is all randomness
    first = draws(logits, [SAMPLE], [make_generator(123, "cpu")], 40)
    again = draws(logits, [SAMPLE], [make_generator(123, "cpu")], 40)
    other = draws(logits, [SAMPLE], [make_generator(124, "cpu")], 40)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_seeded_rows_do_not_depend_on_batch_mates() -> None:
    g = torch.Generator().manual_seed(0)
    alone_logits = torch.randn(1, 64, generator=g)
    alone = draws(alone_logits, [SAMPLE], [make_generator(5, "cpu")], 30)

    # Same request at row 2 of a batch that mixes greedy, unseeded and other seeded rows.
    batch_logits = torch.cat([torch.randn(2, 64, generator=g), alone_logits, torch.randn(2, 64, generator=g)])
    params = [SAMPLE, GREEDY, SAMPLE, SAMPLE, SAMPLE]
    generators = [None, None, make_generator(5, "cpu"), make_generator(5, "cpu"), make_generator(99, "cpu")]
    in_batch = draws(batch_logits, params, generators, 30)
    assert torch.equal(in_batch[:, 2:3], alone)
    assert torch.equal(in_batch[:, 1], batch_logits[1].argmax().expand(30))


def test_sampling_follows_the_distribution() -> None:
    probs = torch.tensor([0.5, 0.25, 0.15, 0.07, 0.03])
    logits = probs.log().expand(16, -1).clone()
    # Four seeded rows (one draw each per call) and twelve unseeded ones (drawn together).
    generators = [make_generator(1000 + b, "cpu") for b in range(4)] + [None] * 12
    tokens = draws(logits, [SAMPLE] * 16, generators, 600)
    for group in (tokens[:, :4], tokens[:, 4:]):
        observed = torch.bincount(group.flatten(), minlength=5).double()
        expected = probs.double() * group.numel()
        chi2 = float(((observed - expected) ** 2 / expected).sum())
        assert chi2 < 18.5  # 4 degrees of freedom: p < 0.001 beyond this


def test_masked_tokens_are_never_sampled() -> None:
    logits = torch.full((2, 100), -float("inf"))
    logits[:, [3, 40, 77]] = torch.tensor([0.0, 1.0, 2.0])
    tokens = draws(logits, [SAMPLE, SAMPLE], [make_generator(0, "cpu"), None], 200)
    assert set(tokens.flatten().tolist()) <= {3, 40, 77}


def test_token_logprobs() -> None:
    logprobs = torch.randn(3, 20, generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    chosen = torch.tensor([4, 0, 19])
    chosen_lp, top_lp, top_ids = token_logprobs(logprobs, chosen, 3)
    assert torch.equal(chosen_lp, logprobs[torch.arange(3), chosen])
    assert top_lp.shape == top_ids.shape == (3, 3)
    assert torch.equal(top_ids[:, 0], logprobs.argmax(-1))
    assert torch.equal(top_lp, logprobs.gather(1, top_ids))
    assert (top_lp[:, :-1] >= top_lp[:, 1:]).all()
    _, none_lp, none_ids = token_logprobs(logprobs, chosen, 0)
    assert none_lp.shape == none_ids.shape == (3, 0)
