"""The vLLM backend: parameter and output conversion, admission, aborts and adapters, all without vLLM installed
(stand-ins shaped like vLLM's classes), plus one end-to-end chat stream where vLLM and a GPU are at hand."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from llmkit.engine.async_engine import QueueFullError
from llmkit.engine.checks import check_prompt
from llmkit.engine.outputs import TokenLogprob
from llmkit.engine.params import ResponseFormat, SamplingParams
from llmkit.errors import InvalidRequestError, LLMKitError, ModelNotFoundError
from llmkit.hub import resolve
from llmkit.serve import vllm_engine
from llmkit.serve.vllm_engine import (
    Adapter,
    VllmEngine,
    VllmError,
    VllmNotInstalledError,
    to_request_output,
    vllm_engine_kwargs,
    vllm_sampling_kwargs,
)

PERSON = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
REFUSED = [
    (dict(num_beams=2), "num_beams"),
    (dict(no_repeat_ngram_size=3), "no_repeat_ngram_size"),
    (dict(do_sample=True, temperature=2.5), "temperature"),
]


# ---- stand-ins shaped like vLLM 0.33.0's classes ------------------------------------------------


def logprob(value: float, rank: int) -> SimpleNamespace:
    """Mirrors `vllm.logprobs.Logprob`."""
    return SimpleNamespace(logprob=value, rank=rank, decoded_token=None)


def completion(
    index: int, text: str, token_ids: list[int], finish_reason: str | None = None, logprobs: list | None = None
) -> SimpleNamespace:
    """Mirrors `vllm.outputs.CompletionOutput` as DELTA mode sends it: only what is new."""
    return SimpleNamespace(
        index=index, text=text, token_ids=token_ids, cumulative_logprob=None, logprobs=logprobs,
        finish_reason=finish_reason, stop_reason=None,
    )


def request_output(*outputs: SimpleNamespace, finished: bool = False, request_id: str = "req") -> SimpleNamespace:
    """Mirrors `vllm.outputs.RequestOutput`."""
    return SimpleNamespace(request_id=request_id, prompt=None, prompt_token_ids=[1, 2, 3], outputs=list(outputs),
                           finished=finished)


class FakeAsyncLLM:
    """Mirrors `vllm.v1.engine.async_llm.AsyncLLM`: `generate` streams scripted outputs (an exception is raised);
    the calls it gets are recorded."""

    def __init__(self, script: list, *, max_model_len: int = 64, vocab_size: int = 100) -> None:
        self.model_config = SimpleNamespace(max_model_len=max_model_len, get_vocab_size=lambda: vocab_size)
        self.script = script
        self.generated: list[tuple] = []
        self.closed: list[str] = []
        self.aborted: list[str] = []
        self.loaded: list = []
        self.removed: list[int] = []
        self.fail_loading: Exception | None = None
        self.stopped = False

    async def generate(self, prompt, sampling_params, request_id, *, lora_request=None):
        self.generated.append((prompt, sampling_params, request_id, lora_request))
        try:
            for item in self.script:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed.append(request_id)

    async def abort(self, request_id, internal=False) -> None:
        self.aborted.append(request_id)

    async def add_lora(self, request) -> bool:
        if self.fail_loading is not None:
            raise self.fail_loading
        self.loaded.append(request)
        return True

    async def remove_lora(self, lora_id: int) -> bool:
        self.removed.append(lora_id)
        return True

    def shutdown(self) -> None:
        self.stopped = True


@pytest.fixture
def fake_vllm(monkeypatch):
    """vLLM's request objects as plain values: the keyword dict, and (name, id, path) for a `LoRARequest`."""
    monkeypatch.setattr(vllm_engine, "to_vllm_sampling_params", vllm_sampling_kwargs)
    monkeypatch.setattr(vllm_engine, "lora_request", lambda name, adapter: (name, adapter.id, str(adapter.path)))


def make_engine(script: list | None = None, **options) -> VllmEngine:
    return VllmEngine(FakeAsyncLLM(script or []), tokenizer=None, **options)


def adapter_dir(tmp_path: Path, name: str) -> Path:
    (tmp_path / name).mkdir()
    (tmp_path / name / "adapter_config.json").write_text("{}")
    return tmp_path / name


async def drain(stream) -> list:
    return [output async for output in stream]


# ---- importing and starting without vLLM ----------------------------------------------------------


def test_the_module_imports_without_importing_vllm():
    code = "import sys, llmkit.serve.vllm_engine; print('vllm' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_starting_without_vllm_says_to_install_it_on_a_gpu_machine(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # find_spec answers None: as if not installed
    with pytest.raises(VllmNotInstalledError, match="install vllm on a machine with a GPU") as caught:
        VllmEngine.start("some/model")
    assert isinstance(caught.value, LLMKitError)


def test_engine_args_carry_the_limits_and_lora_only_when_enabled():
    common = dict(max_seq_len=1024, max_batch_size=32, dtype="bfloat16", tensor_parallel_size=2,
                  max_loras=3, max_lora_rank=16)
    assert vllm_engine_kwargs(Path("/models/m"), enable_lora=False, **common) == {
        "model": "/models/m", "dtype": "bfloat16", "tensor_parallel_size": 2, "max_model_len": 1024, "max_num_seqs": 32,
    }
    with_lora = vllm_engine_kwargs("m", enable_lora=True, **common)
    assert (with_lora["enable_lora"], with_lora["max_loras"], with_lora["max_lora_rank"]) == (True, 3, 16)
    defaults = vllm_engine_kwargs("m", **{**common, "max_seq_len": None, "max_batch_size": None}, enable_lora=False)
    assert "max_model_len" not in defaults and "max_num_seqs" not in defaults


# ---- sampling parameters ----------------------------------------------------------------------------


def test_sampling_parameters_map_one_to_one():
    params = SamplingParams(
        do_sample=True, temperature=0.7, top_p=0.9, top_k=40, min_p=0.05, repetition_penalty=1.1,
        presence_penalty=0.5, frequency_penalty=-0.5, seed=7, stop=["\n\n"], stop_token_ids=[5], ignore_eos=True,
        max_new_tokens=30, min_new_tokens=2, logprobs=3, skip_special_tokens=False, num_return_sequences=2,
        logit_bias={9: -100.0},
    )
    assert vllm_sampling_kwargs(params) == {
        "n": 2, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1,
        "presence_penalty": 0.5, "frequency_penalty": -0.5, "seed": 7, "stop": ["\n\n"], "stop_token_ids": [5],
        "include_stop_str_in_output": False, "logit_bias": {9: -100.0}, "ignore_eos": True, "max_tokens": 30, "min_tokens": 2, "logprobs": 3, "skip_special_tokens": False,
        "output_kind": "DELTA",
    }


@pytest.mark.parametrize("params", [SamplingParams(), SamplingParams(do_sample=True, temperature=0.0)])
def test_greedy_decoding_is_temperature_zero(params):
    kwargs = vllm_sampling_kwargs(params)
    assert (kwargs["temperature"], kwargs["n"], kwargs["top_k"]) == (0.0, 1, 0)


def test_response_formats_become_structured_outputs():
    def structured(response_format: ResponseFormat):
        return vllm_sampling_kwargs(SamplingParams(response_format=response_format)).get("structured_outputs")

    assert structured(ResponseFormat(type="text")) is None
    assert structured(ResponseFormat(type="json_object")) == {"json_object": True}
    schema = ResponseFormat(type="json_schema", json_schema={"name": "person", "schema": PERSON})
    assert structured(schema) == {"json": PERSON}


@pytest.mark.parametrize(("fields", "param"), REFUSED)
def test_what_vllm_cannot_do_is_refused_naming_the_parameter(fields, param):
    with pytest.raises(InvalidRequestError, match=param) as caught:
        vllm_sampling_kwargs(SamplingParams(**fields))
    assert caught.value.param == param


@pytest.mark.parametrize(("fields", "param"), REFUSED)
def test_check_request_refuses_the_same(fields, param):
    with pytest.raises(InvalidRequestError, match=param) as caught:
        make_engine().check_request([1, 2, 3], SamplingParams(**fields))
    assert caught.value.param == param


# ---- outputs ------------------------------------------------------------------------------------------


def test_deltas_accumulate_into_full_outputs():
    first = to_request_output(request_output(completion(0, "Hel", [10, 11])), {})
    second = to_request_output(
        request_output(completion(0, "lo", [12], finish_reason="stop"), finished=True), {0: first.outputs[0]}
    )
    assert (first.request_id, first.prompt_token_ids, first.finished) == ("req", [1, 2, 3], False)
    assert (first.outputs[0].text, first.outputs[0].delta, first.outputs[0].finish_reason) == ("Hel", "Hel", None)
    out = second.outputs[0]
    assert (out.text, out.delta, out.token_ids, out.finish_reason) == ("Hello", "lo", [10, 11, 12], "stop")
    assert second.finished and out.logprobs is None


@pytest.mark.parametrize("reason", ["stop", "length", "abort"])
def test_finish_reasons_carry_over(reason):
    output = to_request_output(request_output(completion(0, "", [3], finish_reason=reason), finished=True), {})
    assert output.outputs[0].finish_reason == reason


def test_a_failure_on_vllms_side_is_an_error_to_retry():
    with pytest.raises(VllmError, match="retry") as caught:
        to_request_output(request_output(completion(0, "", [3], finish_reason="error"), finished=True), {})
    assert caught.value.status_code == 503


def test_sequences_sent_separately_are_all_kept():
    first = to_request_output(request_output(completion(0, "a", [1])), {})
    second = to_request_output(request_output(completion(1, "b", [2])), {o.index: o for o in first.outputs})
    assert [(o.index, o.text, o.delta) for o in second.outputs] == [(0, "a", ""), (1, "b", "b")]


def test_logprobs_keep_the_chosen_token_and_the_top_alternatives():
    # Token 7 was sampled at rank 5, outside the top 2 (ranks 1 and 2); token 8 was the best.
    outside = {7: logprob(-3.0, 5), 8: logprob(-0.1, 1), 9: logprob(-0.5, 2)}
    inside = {8: logprob(-0.2, 1), 4: logprob(-1.0, 2)}
    first = to_request_output(request_output(completion(0, "x", [7], logprobs=[outside])), {}, top_logprobs=2)
    second = to_request_output(
        request_output(completion(0, "y", [8], logprobs=[inside])), {0: first.outputs[0]}, top_logprobs=2
    )
    assert second.outputs[0].logprobs == [
        TokenLogprob(7, -3.0, {8: -0.1, 9: -0.5}),
        TokenLogprob(8, -0.2, {8: -0.2, 4: -1.0}),
    ]


def test_logprobs_without_alternatives_have_an_empty_top():
    output = to_request_output(request_output(completion(0, "x", [7], logprobs=[{7: logprob(-3.0, 5)}])), {})
    assert output.outputs[0].logprobs == [TokenLogprob(7, -3.0, {})]


# ---- admission ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "message"),
    [([], "empty"), (list(range(64)), "64 tokens but the context holds 64"), ([1, 100], "outside"), ([-1], "outside")],
)
def test_prompts_that_cannot_run_are_refused(prompt, message):
    with pytest.raises(InvalidRequestError, match=message):
        make_engine().check_request(prompt, SamplingParams())


def test_a_prompt_that_leaves_room_is_accepted():
    assert check_prompt([0, 63, 99], max_seq_len=64, vocab_size=100) == [0, 63, 99]


def test_an_unknown_adapter_is_a_404_naming_the_model():
    with pytest.raises(ModelNotFoundError, match="nope") as caught:
        make_engine().check_request([1], SamplingParams(), adapter="nope")
    assert caught.value.param == "model"


def test_shutdown_stops_vllm():
    engine = make_engine()
    engine.shutdown()
    assert engine.engine.stopped


# ---- generate --------------------------------------------------------------------------------------


def test_generate_streams_tokens_prompt_and_sampling_parameters(fake_vllm):
    script = [request_output(completion(0, "Hi", [4])), request_output(completion(0, "!", [5], "stop"), finished=True)]
    engine = make_engine(script)
    params = SamplingParams(max_new_tokens=5)
    outputs = asyncio.run(drain(engine.generate([1, 2, 3], params, request_id="r1")))
    assert [(o.outputs[0].text, o.outputs[0].delta, o.finished) for o in outputs] == [("Hi", "Hi", False),
                                                                                     ("Hi!", "!", True)]
    assert engine.engine.generated == [
        ({"type": "token", "prompt_token_ids": [1, 2, 3]}, vllm_sampling_kwargs(params), "r1", None)
    ]
    assert engine.engine.aborted == []


def test_load_counts_follow_a_request(fake_vllm):
    script = [request_output(completion(0, "a", [4]), completion(1, "b", [5]))]
    engine = make_engine(script)

    async def watch() -> list[tuple[int, int, int]]:
        seen = []
        async for _ in engine.generate([1], SamplingParams(do_sample=True, num_return_sequences=2)):
            seen.append((engine.num_requests, engine.queue_depth, engine.batch_size))
        return seen

    assert asyncio.run(watch()) == [(1, 0, 2)]
    assert (engine.num_requests, engine.queue_depth, engine.batch_size) == (0, 0, 0)


def test_leaving_early_aborts_the_request_in_vllm(fake_vllm):
    engine = make_engine([request_output(completion(0, "a", [4])), request_output(completion(0, "b", [5]))])

    async def leave_after_one() -> list[str]:
        stream = engine.generate([1], SamplingParams(), request_id="gone")
        await anext(stream)
        await stream.aclose()
        return list(engine.engine.closed)  # vLLM's stream closed at once, not when the loop ends

    assert asyncio.run(leave_after_one()) == ["gone"]
    assert engine.engine.aborted == ["gone"]
    assert (engine.num_requests, engine.queue_depth, engine.batch_size) == (0, 0, 0)


def test_vllms_refusals_become_400s(fake_vllm, monkeypatch):
    class VLLMClientError(Exception):
        """Mirrors `vllm.exceptions.VLLMClientError`."""

    monkeypatch.setitem(sys.modules, "vllm.exceptions", SimpleNamespace(VLLMClientError=VLLMClientError))
    engine = make_engine([VLLMClientError("Token id 5 is out of vocabulary")])
    with pytest.raises(InvalidRequestError, match="vLLM refused the request: Token id 5"):
        asyncio.run(drain(engine.generate([1], SamplingParams())))
    assert engine.queue_depth == 0


def test_vllms_own_failures_pass_through(fake_vllm):
    engine = make_engine([RuntimeError("engine died")])
    with pytest.raises(RuntimeError, match="engine died"):
        asyncio.run(drain(engine.generate([1], SamplingParams())))


def test_a_full_queue_is_refused(fake_vllm):
    engine = make_engine([request_output(completion(0, "a", [4]))], max_queue=1)

    async def two() -> None:
        first = engine.generate([1], SamplingParams())
        await anext(first)
        try:
            await anext(engine.generate([1], SamplingParams()))
        finally:
            await first.aclose()

    with pytest.raises(QueueFullError):
        asyncio.run(two())


# ---- adapters -----------------------------------------------------------------------------------------


def test_adapters_need_lora_support(tmp_path):
    with pytest.raises(InvalidRequestError, match="enable_lora"):
        asyncio.run(make_engine().load_adapter("alpha", adapter_dir(tmp_path, "alpha")))


def test_adapters_load_and_unload_under_ids_never_reused(fake_vllm, tmp_path):
    engine = make_engine(enable_lora=True)
    alpha, beta = adapter_dir(tmp_path, "alpha"), adapter_dir(tmp_path, "beta")

    async def scenario() -> None:
        await engine.load_adapter("alpha", alpha)
        await engine.load_adapter("beta", beta)
        await engine.unload_adapter("alpha")
        await engine.load_adapter("alpha", alpha)

    asyncio.run(scenario())
    assert engine.engine.loaded == [("alpha", 1, str(alpha)), ("beta", 2, str(beta)), ("alpha", 3, str(alpha))]
    assert engine.engine.removed == [1]
    assert engine.adapters == {"alpha": alpha, "beta": beta}


def test_adapter_mistakes_are_refused(fake_vllm, tmp_path):
    engine = make_engine(enable_lora=True)
    asyncio.run(engine.load_adapter("alpha", adapter_dir(tmp_path, "alpha")))
    with pytest.raises(InvalidRequestError, match="already loaded"):
        asyncio.run(engine.load_adapter("alpha", tmp_path / "alpha"))
    with pytest.raises(ModelNotFoundError, match="adapter_config.json"):
        asyncio.run(engine.load_adapter("beta", tmp_path))
    with pytest.raises(ModelNotFoundError, match="no adapter named 'beta'"):
        asyncio.run(engine.unload_adapter("beta"))


def test_an_adapter_vllm_cannot_load_is_refused_and_forgotten(fake_vllm, tmp_path):
    engine = make_engine(enable_lora=True)
    engine.engine.fail_loading = ValueError("LoRA rank 128 is greater than max_lora_rank 64")
    with pytest.raises(InvalidRequestError, match="max_lora_rank"):
        asyncio.run(engine.load_adapter("alpha", adapter_dir(tmp_path, "alpha")))
    assert engine.adapters == {}


def test_an_adapter_in_use_is_not_unloaded(fake_vllm, tmp_path):
    engine = make_engine([request_output(completion(0, "a", [4])), request_output(completion(0, "b", [5]))],
                         enable_lora=True)
    path = adapter_dir(tmp_path, "alpha")
    assert engine.register_adapter("alpha", path) == Adapter(1, path)

    async def unload_while_streaming() -> None:
        stream = engine.generate([1], SamplingParams(), request_id="r", adapter="alpha")
        await anext(stream)
        with pytest.raises(InvalidRequestError, match="in use by 1 request"):
            await engine.unload_adapter("alpha")
        await stream.aclose()
        await engine.unload_adapter("alpha")

    asyncio.run(unload_while_streaming())
    assert engine.engine.generated[0][3] == ("alpha", 1, str(path))
    assert engine.engine.removed == [1]


# ---- end to end ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_vllm_streams_a_greedy_chat_answer(start_server):
    pytest.importorskip("vllm", reason="vLLM is not installed (needs a GPU machine)")
    engine = VllmEngine.start(resolve("default"), max_seq_len=512, max_batch_size=4)
    server = start_server(lambda: engine)
    body = {
        "model": server.model_id, "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "temperature": 0, "max_tokens": 16, "stream": True, "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=300) as response:
        assert response.status_code == 200
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    choices = [choice for chunk in chunks for choice in chunk["choices"]]
    answer = "".join(choice["delta"].get("content") or "" for choice in choices)
    finishes = [choice["finish_reason"] for choice in choices if choice["finish_reason"]]
    tokens = chunks[-1]["usage"]["completion_tokens"]
    assert answer.strip()
    assert finishes in (["stop"], ["length"])
    assert 0 < tokens <= 16
    assert (finishes == ["length"]) == (tokens == 16)


# ---- through the routes -----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_routes_serve_separately_sent_sequences_whole(start_server, smollm, fake_vllm):
    # vLLM sends the two sequences of n=2 one at a time; each choice and the usage must still come out whole.
    script = [
        request_output(completion(0, "Hel", [10, 11])),
        request_output(completion(1, "Wor", [20])),
        request_output(completion(0, "lo", [12], finish_reason="stop")),
        request_output(completion(1, "ld", [21], finish_reason="length"), finished=True),
    ]
    fake = FakeAsyncLLM(script, max_model_len=512, vocab_size=len(smollm.tokenizer))
    server = start_server(lambda: VllmEngine(fake, smollm.tokenizer))
    body = {"model": server.model_id, "messages": [{"role": "user", "content": "Hi"}], "n": 2, "max_tokens": 3}
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60) as http:
        whole = http.post("/v1/chat/completions", json=body).json()
        with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
            events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert [(c["message"]["content"], c["finish_reason"]) for c in whole["choices"]] == [("Hello", "stop"),
                                                                                        ("World", "length")]
    assert whole["usage"]["completion_tokens"] == 5
    streamed = {0: "", 1: ""}
    for event in events[:-1]:
        for choice in json.loads(event)["choices"]:
            streamed[choice["index"]] += choice["delta"].get("content") or ""
    assert streamed == {0: "Hello", 1: "World"}
