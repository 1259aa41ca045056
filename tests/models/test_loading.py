import time

import pytest
import torch

from llmkit.errors import InvalidRequestError, ModelNotFoundError
from llmkit.models import load, pick_dtype
from llmkit.models.loading import cpu_has_native_bf16


def test_default_model_loads_in_eval_mode_with_a_pad_token(smollm):
    model, tokenizer = smollm
    assert not model.training
    assert model.dtype == torch.float32
    assert tokenizer.pad_token is not None
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert (smollm.path / "config.json").is_file()


def test_default_model_warm_load_is_fast(smollm):
    started = time.perf_counter()
    model, _ = load("default", dtype="bf16", device="cpu")
    assert time.perf_counter() - started < 2.0
    assert model.dtype == torch.bfloat16


def test_auto_dtype_on_cpu_is_bf16_only_with_native_support():
    expected = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert pick_dtype("auto", torch.device("cpu")) == expected
    assert pick_dtype("fp16", torch.device("cpu")) == torch.float16


def test_unknown_dtype_is_rejected():
    with pytest.raises(InvalidRequestError, match="bf16"):
        load("default", dtype="fp8")


def test_lora_adapter_is_applied(smollm, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(smollm.path)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")

    model, tokenizer = load("default", dtype="float32", device="cpu", adapter=tmp_path / "adapter")
    ids = tokenizer("Hello, how are you today?", return_tensors="pt").input_ids
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, smollm.model(ids).logits)
    assert not model.training


def test_missing_adapter_is_model_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match="adapter"):
        load("default", device="cpu", adapter=tmp_path)
