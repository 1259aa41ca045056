"""LoRA adapters served by name: each row decodes through its own adapter, in one mixed batch."""

from __future__ import annotations

import pytest

from llmkit.engine.engine import Engine
from llmkit.engine.params import SamplingParams
from llmkit.errors import InvalidRequestError, ModelNotFoundError
from llmkit.models import load, render_chat

GREEDY = SamplingParams.create(max_new_tokens=12, do_sample=False)
DIALOGS = [[{"role": "user", "content": "Name a fruit."}], [{"role": "user", "content": "What is 2 + 3?"}]]


def reference_tokens(adapter_path, prompt: list[int]) -> list[int]:
    """Greedy tokens from PEFT's own model.generate with the adapter applied (our ground truth)."""
    import torch
    from peft import PeftModel

    model = PeftModel.from_pretrained(load("default", dtype="float32", device="cpu").model, str(adapter_path)).eval()
    with torch.inference_mode():
        out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=12, do_sample=False)
    return out[0, len(prompt) :].tolist()


@pytest.fixture
def engine(fresh_smollm, lora_adapters) -> Engine:
    engine = Engine(fresh_smollm.model, fresh_smollm.tokenizer, max_batch_size=6, max_seq_len=256)
    for name, path in lora_adapters.items():
        engine.load_adapter(name, path)
    return engine


def test_mixed_batch_matches_peft_generate_per_adapter(engine, smollm, lora_adapters):
    prompt = render_chat(smollm.tokenizer, DIALOGS[0])
    base = Engine(smollm.model, smollm.tokenizer, max_seq_len=256).generate([prompt], GREEDY)[0]
    ids = {
        name: engine.add_request(prompt, GREEDY, adapter=name if name != "base" else None)
        for name in ("alpha", "base", "beta")
    }
    final = {}
    while engine.has_unfinished():
        for out in engine.step():
            if out.finished:
                final[out.request_id] = out.outputs[0].token_ids
    assert final[ids["base"]] == base.outputs[0].token_ids
    for name in ("alpha", "beta"):
        assert final[ids[name]] == reference_tokens(lora_adapters[name], prompt)
    assert final[ids["alpha"]] != final[ids["base"]] != final[ids["beta"]]


def test_adapters_join_and_leave_while_decoding(engine, smollm):
    prompts = [render_chat(smollm.tokenizer, d) for d in DIALOGS]
    solo = engine.generate([prompts[1]], GREEDY)[0].outputs[0].token_ids
    first = engine.add_request(prompts[0], GREEDY, adapter="alpha")
    engine.step()
    second = engine.add_request(prompts[1], GREEDY)
    final = {}
    while engine.has_unfinished():
        final.update({o.request_id: o.outputs[0].token_ids for o in engine.step() if o.finished})
    assert final[second] == solo
    assert len(final[first]) == 12


def test_adapter_list_load_and_unload(engine, smollm, lora_adapters):
    assert list(engine.adapters) == ["alpha", "beta"]
    prompt = render_chat(smollm.tokenizer, DIALOGS[0])
    base_tokens = engine.generate([prompt], [GREEDY])[0].outputs[0].token_ids
    engine.unload_adapter("beta")
    assert list(engine.adapters) == ["alpha"]
    with pytest.raises(ModelNotFoundError, match="beta"):
        engine.add_request(prompt, GREEDY, adapter="beta")
    engine.unload_adapter("alpha")
    assert list(engine.adapters) == []
    assert engine.generate([prompt], GREEDY)[0].outputs[0].token_ids == base_tokens
    engine.load_adapter("org/alpha-v2.1", lora_adapters["alpha"])  # '.' and '/' are fine in a model id (PEFT: no '.')
    request = engine.add_request(prompt, GREEDY, adapter="org/alpha-v2.1")
    final = {}
    while engine.has_unfinished():
        final.update({o.request_id: o.outputs[0].token_ids for o in engine.step() if o.finished})
    assert final[request] == reference_tokens(lora_adapters["alpha"], prompt)


def test_bad_adapter_requests_are_refused(engine, smollm, lora_adapters, tmp_path):
    prompt = render_chat(smollm.tokenizer, DIALOGS[0])
    with pytest.raises(ModelNotFoundError, match="no adapter named 'gamma'"):
        engine.add_request(prompt, GREEDY, adapter="gamma")
    with pytest.raises(InvalidRequestError, match="already loaded"):
        engine.load_adapter("alpha", lora_adapters["alpha"])
    with pytest.raises(ModelNotFoundError, match="not a LoRA adapter directory"):
        engine.load_adapter("empty", tmp_path)
    engine.add_request(prompt, GREEDY, adapter="alpha")
    with pytest.raises(InvalidRequestError, match="in use by 1 request"):
        engine.unload_adapter("alpha")
    assert list(engine.adapters) == ["alpha", "beta"]


@pytest.mark.parametrize("name", ["rag:demo", "../x", "org/../x", "/abs", ".", "has space", "a/b/c", "__base__", "x\n"])
def test_adapter_names_must_be_model_ids(smollm, lora_adapters, name):
    """`rag:` names belong to knowledge bases and a name must not read as a path: refused before PEFT sees it
    (so the shared model is never touched), for the server and `llmkit serve --adapter NAME=PATH` alike."""
    engine = Engine(smollm.model, smollm.tokenizer, max_seq_len=64)
    with pytest.raises(InvalidRequestError, match="bad adapter name.*letters, digits") as caught:
        engine.load_adapter(name, lora_adapters["alpha"])
    assert caught.value.param == "lora_name" and engine.adapters == {}
