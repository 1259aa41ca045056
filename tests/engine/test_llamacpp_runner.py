"""The llama.cpp backend on the default model's GGUF: batching never changes a greedy answer; forks, beams,
stop strings, logprobs and JSON mode work through it; it scores text like the torch backend; the options
it cannot honour are refused up front."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

pytest.importorskip("llama_cpp", reason="the llamacpp backend needs llama-cpp-python: pip install -e '.[llamacpp]'")

from llmkit.api import LLM  # noqa: E402
from llmkit.engine.engine import Engine  # noqa: E402
from llmkit.engine.llamacpp_runner import LlamaCppRunner  # noqa: E402
from llmkit.engine.outputs import CompletionOutput  # noqa: E402
from llmkit.engine.params import SamplingParams  # noqa: E402
from llmkit.errors import InvalidRequestError, ModelNotFoundError  # noqa: E402
from llmkit.hub import gguf_file  # noqa: E402
from llmkit.models import render_chat  # noqa: E402

pytestmark = pytest.mark.slow

N = 8  # new tokens per run: enough to tell answers apart, and cheap on 2 CPU cores

QUESTIONS = {
    "english": "What is the capital of France?",
    "chinese": "用中文介绍一下北京。",
    "code": "Write a Python function that adds two numbers.",
}


def chat(tokenizer, question: str) -> list[int]:
    return render_chat(tokenizer, [{"role": "user", "content": question}])


def greedy(max_new_tokens: int = N, **kwargs) -> SamplingParams:
    return SamplingParams(max_new_tokens=max_new_tokens, **kwargs)


@pytest.fixture(scope="module")
def engine(smollm) -> Engine:
    gguf = gguf_file("default")
    return Engine(gguf, smollm.tokenizer, max_batch_size=8, max_seq_len=512, runner_class=LlamaCppRunner)


@pytest.fixture(scope="module")
def prompts(smollm) -> dict[str, list[int]]:
    return {name: chat(smollm.tokenizer, q) for name, q in QUESTIONS.items()}


@pytest.fixture(scope="module")
def alone(engine, prompts) -> dict[str, CompletionOutput]:
    """Each prompt's greedy answer, run by itself."""
    return {name: engine.generate([p], greedy())[0].outputs[0] for name, p in prompts.items()}


def test_batch_gives_the_same_greedy_answers_as_alone(engine, prompts, alone) -> None:
    results = engine.generate(list(prompts.values()), greedy())
    assert [r.outputs[0].token_ids for r in results] == [out.token_ids for out in alone.values()]


def test_rows_joining_mid_decode_keep_their_answers(engine, prompts, alone) -> None:
    first = engine.add_request(prompts["code"], greedy())
    final = {}
    for _ in range(3):
        final.update({out.request_id: out for out in engine.step()})
    later = {engine.add_request(prompts[name], greedy()): name for name in ("english", "chinese")}
    while engine.has_unfinished():
        final.update({out.request_id: out for out in engine.step() if out.finished})
    assert final[first].outputs[0].token_ids == alone["code"].token_ids
    for request_id, name in later.items():
        assert final[request_id].outputs[0].token_ids == alone[name].token_ids


def test_prompt_scores_track_the_torch_backend(engine, smollm, prompts, alone) -> None:
    """The GGUF is Q4_1, torch runs its dequantised fp32 copy: close, not equal."""
    text = prompts["english"] + alone["english"].token_ids
    torch_lp = Engine(smollm.model, smollm.tokenizer, max_batch_size=1, max_seq_len=512).runner.prompt_logprobs(text)
    llama_lp = engine.runner.prompt_logprobs(text)
    pair = torch.tensor([torch_lp[1:], llama_lp[1:]])
    correlation = float(torch.corrcoef(pair)[0, 1])
    mean_gap = float((pair[0] - pair[1]).abs().mean())
    print(f"prompt logprobs over {len(text)} tokens: correlation {correlation:.4f}, mean |difference| {mean_gap:.3f}")
    assert correlation > 0.99  # observed: 0.9996
    assert mean_gap < 0.3  # observed: 0.085 nats


def test_forks_start_from_the_prompt(engine, prompts, alone) -> None:
    """n=2 copies the prompt's row: at a near-zero temperature both forks give the greedy answer."""
    cold = SamplingParams(max_new_tokens=N, do_sample=True, temperature=0.01, num_return_sequences=2, seed=0)
    outputs = engine.generate([prompts["english"]], cold)[0].outputs
    assert [out.token_ids for out in outputs] == [alone["english"].token_ids] * 2


def test_seeded_sampling_repeats(engine, prompts) -> None:
    params = SamplingParams(max_new_tokens=N, do_sample=True, temperature=1.0, num_return_sequences=2, seed=7)
    first, second = (engine.generate([prompts["english"]], params)[0].outputs for _ in range(2))
    assert [out.token_ids for out in first] == [out.token_ids for out in second]
    assert all(out.token_ids for out in first)


def test_beam_scores_match_a_rescoring_of_the_beams(engine, prompts) -> None:
    """Beams reorder their rows every step; a row holding another beam's cache would score its text wrongly."""
    params = SamplingParams(max_new_tokens=N, num_beams=2, num_return_sequences=2, length_penalty=0.0)
    result, _ = engine.generate([prompts["english"], prompts["code"]], [params, greedy()])
    assert result.finished and len(result.outputs) == 2
    for out in result.outputs:
        rescored = engine.runner.prompt_logprobs(prompts["english"] + out.token_ids)[len(prompts["english"]) :]
        assert out.cumulative_logprob == pytest.approx(sum(rescored), abs=0.05)


def test_stop_string_ends_the_answer(engine, prompts, alone) -> None:
    full = alone["code"].text
    stop = full[len(full) // 2 :][:3]
    out = engine.generate([prompts["code"]], greedy(stop=[stop]))[0].outputs[0]
    assert out.finish_reason == "stop"
    assert out.text == full[: full.index(stop)]


def test_logprobs_agree_with_prompt_scoring(engine, prompts) -> None:
    """Decode-time logprobs and a prefill of the same text give the same numbers."""
    out = engine.generate([prompts["english"]], greedy(logprobs=2))[0].outputs[0]
    assert [entry.token_id for entry in out.logprobs] == out.token_ids
    for entry in out.logprobs:
        assert len(entry.top) == 2 and entry.logprob == max(entry.top.values())
    rescored = engine.runner.prompt_logprobs(prompts["english"] + out.token_ids)[len(prompts["english"]) :]
    assert [entry.logprob for entry in out.logprobs] == pytest.approx(rescored, abs=0.02)


def test_json_mode_parses(engine, smollm) -> None:
    prompt = chat(smollm.tokenizer, 'Return a JSON object with the keys "city" and "country" for Paris.')
    out = engine.generate([prompt], greedy(max_new_tokens=48, response_format={"type": "json_object"}))[0].outputs[0]
    assert out.finish_reason == "stop", out.text
    assert isinstance(json.loads(out.text), dict)


def test_adapters_are_refused(engine, prompts) -> None:
    with pytest.raises(InvalidRequestError, match="torch backend"):
        engine.load_adapter("alpha", "/nowhere")
    with pytest.raises(ModelNotFoundError):
        engine.add_request(prompts["english"], greedy(), adapter="alpha")


def test_llm_build_runs_the_gguf(alone) -> None:
    llm = LLM.build("default", max_batch_size=2, max_seq_len=256, backend="llamacpp")
    assert isinstance(llm.engine.runner, LlamaCppRunner)
    answer = llm.chat_completion([[{"role": "user", "content": QUESTIONS["english"]}]], temperature=0, max_gen_len=N)
    assert answer[0]["generation"]["content"] == alone["english"].text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"adapter": "/some/adapter"}, "LoRA adapters need the torch backend"),
        ({"dtype": "bfloat16"}, "does not apply to the llamacpp backend"),
        ({"device": "cuda"}, "runs on the CPU"),
        ({"backend": "vllm"}, "runs behind a server"),
    ],
)
def test_llm_build_refuses_what_llamacpp_cannot_do(options, message) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        LLM.build("default", **{"backend": "llamacpp", **options})


def test_missing_package_says_what_to_install(monkeypatch) -> None:
    real = importlib.util.find_spec
    hidden = lambda name, *rest: None if name == "llama_cpp" else real(name, *rest)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", hidden)
    with pytest.raises(InvalidRequestError, match=r"pip install 'llmkit\[llamacpp\]'"):
        LLM.build("default", backend="llamacpp")


def test_models_without_a_gguf_are_named(smollm) -> None:
    with pytest.raises(ModelNotFoundError, match="not a GGUF model"):
        gguf_file(str(smollm.path))
