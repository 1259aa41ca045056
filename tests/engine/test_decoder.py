"""Our compact forward (`Decoder`) against the transformers forward it replaces: the same logits in fp32 on the
Llama family (SmolLM2) and on Gemma 3 (sandwich norms, q/k norms, sliding-window layers), the same scores, and
weight-only int8 / int4 that stay close to them."""

from __future__ import annotations

import pytest
import torch

from llmkit.engine.engine import Engine
from llmkit.engine.linear import PackedLinear
from llmkit.engine.model_runner import ModelRunner
from llmkit.engine.params import SamplingParams
from llmkit.errors import InvalidRequestError

PROMPT = "The capital of France is Paris. The capital of Germany is"
TOLERANCE = 1e-4  # fp32 logits: the two forwards sum in different orders, nothing more


def reference_logits(model, ids: list[int]) -> torch.Tensor:
    """transformers' logits after every token, `[T, V]`."""
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].float()


def decode_steps(runner: ModelRunner, ids: list[int], steps: int) -> list[torch.Tensor]:
    """Prefill all but the last `steps` tokens into row 0, then feed those one at a time; the logits after each."""
    head, tail = ids[:-steps], ids[-steps:]
    logits = [runner.prefill([head], [0])[0]]
    for i, token in enumerate(tail[:-1]):
        logits.append(runner.decode(torch.tensor([token]), torch.tensor([len(head) + i]))[0])
    return logits


@pytest.fixture(scope="module", params=["smollm", "gemma"])
def loaded(request):
    return request.getfixturevalue(request.param)


def test_prefill_and_decode_logits_equal_the_transformers_forward(loaded) -> None:
    ids = loaded.tokenizer.encode(PROMPT)
    runner = ModelRunner(loaded.model, num_slots=2, max_len=256)
    assert runner.decoder is not None and runner.forward_name == "llmkit"
    reference = reference_logits(loaded.model, ids)
    steps = 4
    for i, logits in enumerate(decode_steps(runner, ids, steps)):
        expected = reference[len(ids) - steps - 1 + i]
        assert torch.allclose(logits, expected, atol=TOLERANCE, rtol=0), float((logits - expected).abs().max())


def test_prompt_logprobs_equal_the_transformers_forward(loaded) -> None:
    ids = loaded.tokenizer.encode(PROMPT)
    ours = ModelRunner(loaded.model, num_slots=1, max_len=256).prompt_logprobs(ids)
    theirs = ModelRunner(loaded.model, num_slots=1, max_len=256, forward="transformers").prompt_logprobs(ids)
    assert ours == pytest.approx(theirs, abs=TOLERANCE)


def test_sliding_window_layers_see_only_their_window(gemma) -> None:
    """A prompt past Gemma 3's window: its sliding layers must drop the oldest keys, as transformers' do."""
    window = gemma.model.config.sliding_window
    text = " ".join(f"item {i}," for i in range(window))
    ids = gemma.tokenizer.encode(text)[: window + 40]
    assert len(ids) > window
    runner = ModelRunner(gemma.model, num_slots=1, max_len=len(ids) + 8)
    logits = decode_steps(runner, ids, 2)
    reference = reference_logits(gemma.model, ids)
    assert torch.allclose(logits[-1], reference[-2], atol=TOLERANCE, rtol=0)


def test_greedy_tokens_equal_with_either_forward(smollm) -> None:
    prompts = [smollm.tokenizer.encode(PROMPT), smollm.tokenizer.encode("Once upon a time")]
    params = SamplingParams(max_new_tokens=16)
    tokens = {}
    for forward in ("llmkit", "transformers"):
        engine = Engine(smollm.model, smollm.tokenizer, max_batch_size=2, max_seq_len=256,
                        runner_options={"forward": forward})
        tokens[forward] = [out.outputs[0].token_ids for out in engine.generate(prompts, params)]
    assert tokens["llmkit"] == tokens["transformers"]


@pytest.mark.parametrize("quantize, agreement", [("int8", 0.95), ("int4", 0.75)])
def test_weight_only_quantization_stays_close_and_reads_fewer_bytes(smollm, quantize, agreement) -> None:
    ids = smollm.tokenizer.encode(PROMPT + " Berlin. The capital of Italy is Rome. The capital of Spain is")
    exact = ModelRunner(smollm.model, num_slots=1, max_len=256)
    quantized = ModelRunner(smollm.model, num_slots=1, max_len=256, quantize=quantize)
    assert quantized.forward_name == f"llmkit ({quantize})"
    top = [r.decoder.prompt_logits(ids, r.decoder.scratch_cache(len(ids))).argmax(-1) for r in (exact, quantized)]
    assert (top[0] == top[1]).float().mean() >= agreement
    assert weight_bytes(quantized) < weight_bytes(exact) / (3 if quantize == "int8" else 5)


def weight_bytes(runner: ModelRunner) -> int:
    layers = runner.decoder.layers
    return runner.decoder.lm_head.nbytes + sum(l.qkv.nbytes + l.o.nbytes + l.gate_up.nbytes + l.down.nbytes for l in layers)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("quantize", [None, "int8", "int4"])
def test_packed_linear_computes_x_times_w_transposed(dtype, quantize) -> None:
    torch.manual_seed(0)
    weight, bias, x = torch.randn(64, 96) * 0.05, torch.randn(64), torch.randn(3, 5, 96)
    layer = PackedLinear(weight.to(dtype), bias.to(dtype), quantize)
    expected = x @ weight.t() + bias
    error = (layer(x.to(dtype)).float() - expected).abs().max() / expected.abs().max()
    assert error < {None: 1e-2 if dtype == torch.bfloat16 else 1e-6, "int8": 2e-2, "int4": 0.15}[quantize]


def test_quantize_needs_our_forward(lora_adapters, fresh_smollm) -> None:
    from peft import PeftModel

    with_adapter = PeftModel.from_pretrained(fresh_smollm.model, str(lora_adapters["alpha"]))
    assert ModelRunner(with_adapter, num_slots=1, max_len=64).decoder is None  # LoRA: the transformers forward
    with pytest.raises(InvalidRequestError, match="--quantize cannot run this model: a LoRA adapter"):
        ModelRunner(with_adapter, num_slots=1, max_len=64, quantize="int8")


def test_compiled_forward_matches_eager_and_caches_its_artefacts(tmp_path, monkeypatch) -> None:
    """`--compile`: the same logits as the eager forward, and inductor's artefacts land in llmkit's home (what lets a
    second start skip the compile). A two-layer Llama keeps the compile to seconds."""
    from transformers import LlamaConfig, LlamaForCausalLM

    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    config = LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    ids = [1, 5, 9, 17, 33, 65, 7, 3]
    eager = decode_steps(ModelRunner(model, num_slots=1, max_len=64), ids, 3)
    runner = ModelRunner(model, num_slots=1, max_len=64, compile=True)
    assert runner.forward_name == "llmkit (compiled)"
    for ours, theirs in zip(decode_steps(runner, ids, 3), eager, strict=True):
        assert torch.allclose(ours, theirs, atol=TOLERANCE, rtol=0)
    assert any((tmp_path / "torch-compile").rglob("*.py")), "no compiled code cached under LLMKIT_HOME"


def test_compile_needs_the_llmkit_forward(smollm) -> None:
    with pytest.raises(InvalidRequestError, match="--compile"):
        ModelRunner(smollm.model, num_slots=1, max_len=64, forward="transformers", compile=True)
