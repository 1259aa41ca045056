"""The engine against transformers' own `generate` on the embedded models: greedy parity alone and in a
batch, per-request parameters, requests joining and leaving, stopping rules, streaming, seeds, logprobs
and the errors a user can cause."""

from __future__ import annotations

import pytest
import torch

from llmkit.engine.engine import Engine
from llmkit.engine.params import SamplingParams
from llmkit.errors import InvalidRequestError
from llmkit.models import render_chat

N = 16  # new tokens per parity run: enough to cover EOS for the short answers, cheap on CPU

QUESTIONS = {
    "english": "What is the capital of France?",
    "chinese": "用中文介绍一下北京。",
    "code": "Write a Python function that adds two numbers.",
}


def chat(tokenizer, question: str) -> list[int]:
    return render_chat(tokenizer, [{"role": "user", "content": question}])


def reference(model, prompt: list[int], max_new_tokens: int = N, **kwargs) -> list[int]:
    """transformers' generated ids for one prompt, cut after the first EOS (dropping its padding)."""
    out = model.generate(torch.tensor([prompt]), max_new_tokens=max_new_tokens, do_sample=False, **kwargs)
    generated = out[0, len(prompt) :].tolist()
    eos = model.generation_config.eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos)
    end = next((i + 1 for i, t in enumerate(generated) if t in eos), len(generated))
    return generated[:end]


def run_alone(engine: Engine, prompt: list[int], params: SamplingParams):
    return engine.generate([prompt], params)[0]


@pytest.fixture(scope="module")
def engine(smollm) -> Engine:
    return Engine(smollm.model, smollm.tokenizer, max_batch_size=8, max_seq_len=512)


@pytest.fixture(scope="module")
def prompts(smollm) -> dict[str, list[int]]:
    return {name: chat(smollm.tokenizer, q) for name, q in QUESTIONS.items()}


@pytest.fixture(scope="module")
def references(smollm, prompts) -> dict[str, list[int]]:
    return {name: reference(smollm.model, ids) for name, ids in prompts.items()}


@pytest.fixture(scope="module")
def france(engine, prompts):
    """The unconstrained greedy answer to the English question (ends on EOS well before 32 tokens)."""
    out = run_alone(engine, prompts["english"], SamplingParams(max_new_tokens=32)).outputs[0]
    assert out.finish_reason == "stop" and "Paris" in out.text
    return out


# ---- greedy parity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(QUESTIONS))
def test_greedy_matches_transformers_one_at_a_time(engine, prompts, references, name) -> None:
    out = run_alone(engine, prompts[name], SamplingParams(max_new_tokens=N)).outputs[0]
    assert out.token_ids == references[name]
    assert out.finish_reason == ("stop" if len(references[name]) < N else "length")


def test_greedy_matches_transformers_in_one_batch(engine, prompts, references) -> None:
    names = list(QUESTIONS)
    results = engine.generate([prompts[n] for n in names], SamplingParams(max_new_tokens=N))
    assert [r.outputs[0].token_ids for r in results] == [references[n] for n in names]
    assert [r.prompt_token_ids for r in results] == [prompts[n] for n in names]


def test_text_excludes_eos_but_token_ids_include_it(engine, smollm, france) -> None:
    assert france.token_ids[-1] == smollm.tokenizer.eos_token_id
    assert france.text == smollm.tokenizer.decode(france.token_ids, skip_special_tokens=True)
    assert smollm.tokenizer.eos_token not in france.text


# ---- per-request parameters in one batch ------------------------------------------------------------


def test_mixed_parameters_in_one_batch_equal_each_request_alone(engine, prompts) -> None:
    requests = [
        (prompts["english"], SamplingParams(max_new_tokens=12)),
        (prompts["chinese"], SamplingParams(max_new_tokens=12, do_sample=True, temperature=0.8, top_k=20, seed=7)),
        (prompts["code"], SamplingParams(max_new_tokens=12, repetition_penalty=1.3)),
        (prompts["english"], SamplingParams(max_new_tokens=8, num_beams=2)),
        (prompts["code"], SamplingParams(max_new_tokens=3)),
    ]
    alone = [run_alone(engine, p, sp).outputs[0] for p, sp in requests]
    together = [r.outputs[0] for r in engine.generate([p for p, _ in requests], [sp for _, sp in requests])]
    assert [o.token_ids for o in together] == [o.token_ids for o in alone]
    assert [o.text for o in together] == [o.text for o in alone]
    assert len(together[4].token_ids) == 3 and together[4].finish_reason == "length"


def test_repetition_penalty_matches_transformers(engine, smollm, prompts) -> None:
    out = run_alone(engine, prompts["code"], SamplingParams(max_new_tokens=12, repetition_penalty=1.3))
    assert out.outputs[0].token_ids == reference(smollm.model, prompts["code"], 12, repetition_penalty=1.3)


# ---- requests joining and leaving ---------------------------------------------------------------


def finish(engine: Engine) -> dict[str, object]:
    final = {}
    while engine.has_unfinished():
        for out in engine.step():
            if out.finished:
                final[out.request_id] = out
    return final


def test_requests_join_mid_run_and_abort_leaves_the_others_intact(engine, prompts) -> None:
    params = SamplingParams(max_new_tokens=12)
    solo_code = run_alone(engine, prompts["code"], params).outputs[0]
    solo_chinese = run_alone(engine, prompts["chinese"], params).outputs[0]

    first = engine.add_request(prompts["code"], params)
    for _ in range(3):
        engine.step()
    joined = engine.add_request(prompts["chinese"], params)
    leaving = engine.add_request(prompts["english"], params)
    engine.step()
    engine.step()
    engine.abort(leaving)
    final = finish(engine)

    assert not engine.has_unfinished()
    assert final[leaving].finished and final[leaving].outputs[0].finish_reason == "abort"
    assert final[first].outputs[0].token_ids == solo_code.token_ids
    assert final[joined].outputs[0].token_ids == solo_chinese.token_ids


def test_abort_a_waiting_request(engine, prompts) -> None:
    rid = engine.add_request(prompts["english"], SamplingParams(max_new_tokens=4))
    engine.abort(rid)
    outputs = engine.step()
    assert [(o.request_id, o.finished, o.outputs[0].finish_reason) for o in outputs] == [(rid, True, "abort")]
    assert not engine.has_unfinished()


def test_abort_a_beam_request_reports_it_finished(engine, prompts) -> None:
    rid = engine.add_request(prompts["english"], SamplingParams(max_new_tokens=8, num_beams=2))
    engine.step()
    engine.abort(rid)
    outputs = [o for o in engine.step() if o.request_id == rid]
    assert not engine.has_unfinished()
    assert outputs and outputs[-1].finished
    assert [o.finish_reason for o in outputs[-1].outputs] == ["abort"]


def test_more_requests_than_rows_queue_and_all_complete(smollm, prompts) -> None:
    small = Engine(smollm.model, smollm.tokenizer, max_batch_size=2, max_seq_len=512)
    params = SamplingParams(max_new_tokens=4)
    order = ["english", "chinese", "code", "chinese", "english"]
    results = small.generate([prompts[n] for n in order], params)
    assert all(r.finished for r in results)
    assert len(small.running) == 0 and not small.has_unfinished()
    alone = {n: run_alone(small, prompts[n], params).outputs[0].token_ids for n in set(order)}
    assert [r.outputs[0].token_ids for r in results] == [alone[n] for n in order]


def test_rows_compact_after_the_cache_grew_during_prefill(smollm) -> None:
    # Prompts past the cache's first 256 positions grow it inside prefill (inference mode); when the
    # shortest request finishes, the others move up a row: that copy must work on the grown cache.
    fresh = Engine(smollm.model, smollm.tokenizer, max_batch_size=4, max_seq_len=1024)
    long = chat(smollm.tokenizer, "Summarise this list: " + ", ".join(f"item {i}" for i in range(90)))
    assert len(long) > 256
    requests = [SamplingParams(max_new_tokens=n, ignore_eos=True) for n in (2, 5, 8)]
    results = [fresh.generate([long], params)[0].outputs[0].token_ids for params in requests]
    for n, params in zip((2, 5, 8), requests):
        fresh.add_request(long, params, request_id=f"r{n}")
    together = finish(fresh)
    assert [together[f"r{n}"].outputs[0].token_ids for n in (2, 5, 8)] == results


def test_request_ids_must_be_unique(engine, prompts) -> None:
    engine.add_request(prompts["english"], SamplingParams(max_new_tokens=1), request_id="mine")
    with pytest.raises(InvalidRequestError, match="already in use"):
        engine.add_request(prompts["english"], SamplingParams(max_new_tokens=1), request_id="mine")
    finish(engine)


# ---- stopping rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("stop", ["Paris", "of Fr", "."])
def test_stop_string_ends_the_text_right_before_it(engine, prompts, france, stop) -> None:
    expected = france.text[: france.text.index(stop)]
    out = run_alone(engine, prompts["english"], SamplingParams(max_new_tokens=32, stop=[stop])).outputs[0]
    assert out.text == expected
    assert out.finish_reason == "stop"
    assert out.token_ids == france.token_ids[: len(out.token_ids)]


def test_stop_token_ids_end_generation_on_that_token(engine, prompts, france) -> None:
    stop_id = france.token_ids[3]
    out = run_alone(engine, prompts["english"], SamplingParams(max_new_tokens=32, stop_token_ids=[stop_id])).outputs[0]
    first = france.token_ids.index(stop_id)
    assert out.token_ids == france.token_ids[: first + 1]
    assert out.finish_reason == "stop"


def test_min_new_tokens_forces_generation_past_eos(engine, smollm, prompts, france) -> None:
    minimum = len(france.token_ids) + 4
    out = run_alone(engine, prompts["english"], SamplingParams(max_new_tokens=minimum + 4, min_new_tokens=minimum))
    ids = out.outputs[0].token_ids
    assert len(ids) >= minimum
    assert smollm.tokenizer.eos_token_id not in ids[:minimum]
    assert ids == reference(smollm.model, prompts["english"], minimum + 4, min_new_tokens=minimum)


def test_ignore_eos_runs_to_max_new_tokens(engine, prompts, france) -> None:
    limit = len(france.token_ids) + 4
    out = run_alone(engine, prompts["english"], SamplingParams(max_new_tokens=limit, ignore_eos=True)).outputs[0]
    assert len(out.token_ids) == limit
    assert out.token_ids[: len(france.token_ids)] == france.token_ids
    assert out.finish_reason == "length"


def test_max_new_tokens_finishes_with_length(engine, prompts, france) -> None:
    out = run_alone(engine, prompts["english"], SamplingParams(max_new_tokens=3)).outputs[0]
    assert out.token_ids == france.token_ids[:3]
    assert out.finish_reason == "length"


# ---- streaming ----------------------------------------------------------------------------------


def streamed(engine: Engine, prompt: list[int], params: SamplingParams) -> tuple[list[str], object]:
    outputs = list(engine.stream(prompt, params))
    assert outputs[-1].finished and not any(o.finished for o in outputs[:-1])
    return [o.outputs[0].delta for o in outputs], outputs[-1].outputs[0]


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("english", SamplingParams(max_new_tokens=32)),
        ("chinese", SamplingParams(max_new_tokens=32)),
        ("chinese", SamplingParams(max_new_tokens=32, ignore_eos=True, do_sample=True, seed=3)),
        ("english", SamplingParams(max_new_tokens=32, ignore_eos=True, min_new_tokens=32)),
    ],
    ids=["english", "chinese", "chinese-long-sampled", "english-forced-long"],
)
def test_stream_deltas_join_to_the_final_text(engine, prompts, name, params) -> None:
    deltas, final = streamed(engine, prompts[name], params)
    assert "".join(deltas) == final.text
    assert not any("\ufffd" in d for d in deltas)
    assert final.text == run_alone(engine, prompts[name], params).outputs[0].text


def test_stream_never_emits_part_of_a_stop_string(engine, prompts, france) -> None:
    # "France!" shares its start with "France is Paris": that text must be held back, then released.
    stop = "Paris."
    deltas, final = streamed(engine, prompts["english"], SamplingParams(max_new_tokens=32, stop=[stop, "France!"]))
    assert final.finish_reason == "stop"
    assert "".join(deltas) == final.text == france.text[: france.text.index(stop)]
    assert "France" in final.text  # held back while it could have become "France!", then released
    assert not any(d and stop.startswith(d.strip()) for d in deltas if d.strip())


def test_closing_a_stream_aborts_its_request(engine, prompts) -> None:
    stream = engine.stream(prompts["english"], SamplingParams(max_new_tokens=32))
    next(stream)
    stream.close()
    engine.step()
    assert not engine.has_unfinished()


# ---- seeds --------------------------------------------------------------------------------------


def sampled(engine: Engine, prompt: list[int], **kw) -> list[list[int]]:
    params = SamplingParams(max_new_tokens=12, do_sample=True, ignore_eos=True, **kw)
    return [o.token_ids for o in run_alone(engine, prompt, params).outputs]


def test_same_seed_same_tokens_different_seed_different_tokens(engine, prompts) -> None:
    first = sampled(engine, prompts["chinese"], seed=11)
    assert sampled(engine, prompts["chinese"], seed=11) == first
    assert sampled(engine, prompts["chinese"], seed=12) != first


def test_num_return_sequences_samples_that_many(engine, prompts) -> None:
    sequences = sampled(engine, prompts["chinese"], seed=5, num_return_sequences=3)
    assert len(sequences) == 3
    assert all(len(s) == 12 for s in sequences)
    assert len({tuple(s) for s in sequences}) == 3
    assert sampled(engine, prompts["chinese"], seed=5, num_return_sequences=3) == sequences


# ---- logprobs -----------------------------------------------------------------------------------


def test_logprobs_describe_each_chosen_token(engine, smollm, prompts) -> None:
    prompt = prompts["english"]
    out = run_alone(engine, prompt, SamplingParams(max_new_tokens=8, logprobs=3)).outputs[0]
    assert len(out.logprobs) == len(out.token_ids)
    for lp, token in zip(out.logprobs, out.token_ids):
        assert lp.token_id == token
        assert lp.logprob <= 0.0
        assert len(lp.top) == 3
        best = max(lp.top, key=lp.top.get)
        assert best == token and lp.top[best] == pytest.approx(lp.logprob)

    with torch.inference_mode():
        logits = smollm.model(torch.tensor([prompt])).logits[0, -1].float()
    expected = torch.log_softmax(logits, dim=-1)
    first = out.logprobs[0]
    assert first.logprob == pytest.approx(expected[first.token_id].item(), abs=1e-4)
    top_values, top_ids = expected.topk(3)
    assert list(first.top) == top_ids.tolist()
    assert list(first.top.values()) == pytest.approx(top_values.tolist(), abs=1e-4)


def test_sampled_logprobs_are_under_the_model_not_the_warped_distribution(engine, prompts) -> None:
    params = SamplingParams(max_new_tokens=6, do_sample=True, temperature=0.5, top_k=5, seed=1, logprobs=0)
    out = run_alone(engine, prompts["chinese"], params).outputs[0]
    assert [lp.token_id for lp in out.logprobs] == out.token_ids
    assert all(lp.top == {} and lp.logprob <= 0.0 for lp in out.logprobs)


# ---- errors -------------------------------------------------------------------------------------


def test_empty_prompt_is_rejected(engine) -> None:
    with pytest.raises(InvalidRequestError, match="prompt is empty"):
        engine.add_request([], SamplingParams())


def test_prompt_longer_than_the_context_is_rejected(engine) -> None:
    with pytest.raises(InvalidRequestError, match=r"600 tokens.*max_seq_len"):
        engine.add_request([1] * 600, SamplingParams())


def test_token_outside_the_vocabulary_is_rejected(engine) -> None:
    vocab = engine.vocab_size
    with pytest.raises(InvalidRequestError, match=rf"outside the vocabulary.*\[{vocab}, -1\]"):
        engine.add_request([1, vocab, -1], SamplingParams())


@pytest.mark.parametrize(
    "params, says",
    [
        (dict(top_k=10**20, do_sample=True), "top_k"),
        (dict(stop_token_ids=[10**20]), "stop_token_ids"),
        (dict(logit_bias={49152: 1.0}), "logit_bias"),
        (dict(min_new_tokens=500, max_new_tokens=600), "min_new_tokens"),
        (dict(no_repeat_ngram_size=10**20), "no_repeat_ngram_size"),
    ],
    ids=["top-k", "stop-token-ids", "logit-bias", "min-new-tokens", "no-repeat-ngram"],
)
def test_numbers_past_the_vocabulary_or_context_are_rejected_by_name(engine, prompts, params, says) -> None:
    with pytest.raises(InvalidRequestError, match=says) as caught:
        engine.add_request(prompts["english"], SamplingParams(**params))
    assert caught.value.param == says
    assert not engine.has_unfinished()


def test_beam_search_refuses_logprobs_rather_than_returning_none() -> None:
    with pytest.raises(InvalidRequestError, match="beam search does not return logprobs"):
        SamplingParams.create(num_beams=2, logprobs=1)


def unchecked(engine: Engine, prompt: list[int], params: SamplingParams) -> str:
    """Queue a request past `check_request`, as a bug in a check would let it through."""
    from llmkit.engine.request import Request

    request_id = f"unchecked-{len(engine.waiting)}"
    engine.waiting.append(Request.create(request_id, prompt, params, engine.tokenizer, engine.eos_ids, None))
    return request_id


@pytest.mark.parametrize(
    "bad_prompt, bad_params",
    [
        (None, SamplingParams.model_construct(**{**SamplingParams().model_dump(), "do_sample": True, "top_k": 10**20})),
        ([1, 10**6], SamplingParams()),  # past the embedding table: fails inside the batched prefill
    ],
    ids=["sampling-step", "prefill"],
)
def test_a_request_that_fails_inside_a_step_fails_alone(engine, prompts, bad_prompt, bad_params) -> None:
    """Its batch mates (sampled and greedy, queued before and after it) run to the same end as alone."""
    greedy, sampled = SamplingParams(max_new_tokens=8), SamplingParams(max_new_tokens=8, do_sample=True, seed=3)
    alone = [run_alone(engine, prompts["english"], greedy), run_alone(engine, prompts["code"], sampled)]
    before = engine.add_request(prompts["english"], greedy)
    bad = unchecked(engine, bad_prompt or prompts["chinese"], bad_params)
    after = engine.add_request(prompts["code"], sampled)
    final = {}
    while engine.has_unfinished():
        final.update({out.request_id: out for out in engine.step() if out.finished})
    assert final[bad].error is not None and final[bad].outputs == []
    for request_id, expected in zip((before, after), alone):
        assert final[request_id].error is None
        assert final[request_id].outputs[0].token_ids == expected.outputs[0].token_ids


def test_more_beams_than_rows_is_rejected(engine, prompts) -> None:
    with pytest.raises(InvalidRequestError, match="needs 9 sequences.*max_batch_size is 8"):
        engine.add_request(prompts["english"], SamplingParams(num_beams=9))
    assert not engine.has_unfinished()


def test_mismatched_parameter_list_is_rejected(engine, prompts) -> None:
    with pytest.raises(InvalidRequestError, match="2 prompts but 1 parameter sets"):
        engine.generate([prompts["english"]] * 2, [SamplingParams()])


# ---- another architecture -----------------------------------------------------------------------


@pytest.mark.slow
def test_greedy_matches_transformers_on_gemma(gemma) -> None:
    """Gemma 3 mixes sliding-window and global attention layers, each with its own decode mask."""
    engine = Engine(gemma.model, gemma.tokenizer, max_batch_size=4, max_seq_len=512)
    prompts = [gemma.tokenizer.encode(text) for text in ("The capital of France is", "def fibonacci(n):")]
    expected = [reference(gemma.model, p, 12) for p in prompts]
    assert [r.outputs[0].token_ids for r in engine.generate(prompts, SamplingParams(max_new_tokens=12))] == expected
    assert run_alone(engine, prompts[0], SamplingParams(max_new_tokens=12)).outputs[0].token_ids == expected[0]
