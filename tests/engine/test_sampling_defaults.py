"""One set of sampling defaults for every entry point: the model's generation_config.json (as vLLM's
`--generation-config auto`), else the embedded model's card, else neutral; what the user gives always wins."""

from __future__ import annotations

import json

import pytest

from llmkit.api import LLM
from llmkit.cli.options import to_sampling_kwargs
from llmkit.engine.async_engine import AsyncEngine
from llmkit.engine.engine import Engine
from llmkit.engine.params import SamplingParams
from llmkit.engine.sampling_defaults import NEUTRAL, generation_defaults, resolve_sampling
from llmkit.errors import InvalidRequestError
from llmkit.serve.protocol import SamplingRequest

QWEN_LIKE = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05,
             "eos_token_id": [151645, 151643]}


@pytest.fixture
def model_dir(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps(QWEN_LIKE))
    return tmp_path


def test_the_models_generation_config_sets_the_keys_it_has(model_dir) -> None:
    assert generation_defaults(model_dir) == {**NEUTRAL, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
                                              "repetition_penalty": 1.05}


def test_vllm_source_ignores_the_file_and_a_folder_source_reads_another(model_dir, tmp_path_factory) -> None:
    assert generation_defaults(model_dir, "vllm") == NEUTRAL
    other = tmp_path_factory.mktemp("other")
    assert generation_defaults(other, str(model_dir))["temperature"] == 0.7
    with pytest.raises(InvalidRequestError, match="--generation-config"):
        generation_defaults(model_dir, str(other))


def test_a_model_without_a_generation_config_takes_its_card_then_neutral(tmp_path) -> None:
    assert generation_defaults(tmp_path) == NEUTRAL
    assert generation_defaults(tmp_path, recommended={"temperature": 0.2})["temperature"] == 0.2


def test_the_user_wins_and_temperature_zero_is_greedy() -> None:
    defaults = {**NEUTRAL, "temperature": 0.7, "top_p": 0.8}
    assert resolve_sampling({"top_p": 0.5}, defaults) == {**NEUTRAL, "top_p": 0.5, "temperature": 0.7,
                                                          "do_sample": True}
    greedy = SamplingParams.create(**resolve_sampling({"temperature": 0, "top_p": None}, defaults))
    assert not greedy.sampling
    beams = SamplingParams.create(**resolve_sampling({"num_beams": 3}, defaults))
    assert beams.beam_search and not beams.sampling
    with pytest.raises(InvalidRequestError, match="temperature"):
        SamplingParams.create(**resolve_sampling({"temperature": -1.0}, defaults))


def test_every_entry_point_builds_the_same_parameters_from_the_defaults(smollm) -> None:
    """The CLI flags, the llama-style API and an OpenAI request that leave sampling out all get the model's."""
    from llmkit.serve.serving import ServingContext

    defaults = {**NEUTRAL, "temperature": 0.7, "top_p": 0.8, "top_k": 20}
    llm = LLM(Engine(smollm.model, smollm.tokenizer, max_batch_size=1, max_seq_len=128, sampling_defaults=defaults))
    cli = SamplingParams.create(**to_sampling_kwargs({"temperature": None, "top_p": None}, defaults))
    api = SamplingParams.create(**llm._llama_sampling(None, None, 8, False))

    served = AsyncEngine(llm.engine)
    try:
        server = ServingContext(served, "m").sampling(SamplingRequest(), [[1, 2, 3]], 8, None).params
    finally:
        served.shutdown()
    for params in (cli, api, server):
        assert (params.do_sample, params.temperature, params.top_p, params.top_k) == (True, 0.7, 0.8, 20)


def test_the_default_model_samples_as_its_card_advises() -> None:
    from llmkit.hub import recommended_sampling

    assert generation_defaults(None, recommended=recommended_sampling("default"))["temperature"] == 0.2
