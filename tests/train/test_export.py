"""`export_model`: a LoRA adapter merged into SmolLM2 answers like base + adapter, as safetensors and as GGUF."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from llmkit.errors import ConversionError, ModelNotFoundError
from llmkit.models import load, render_chat
from llmkit.train.config import TrainConfig
from llmkit.train.export import ExportError, ExportResult, export_model
from llmkit.train.gguf_export import write_gguf

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
NEW_TOKENS = 8
METRICS = [
    {"step": 5, "max_steps": 10, "epoch": 0.5, "loss": 2.75, "learning_rate": 1e-4},
    {"step": 10, "max_steps": 10, "epoch": 1.0, "loss": 1.875, "eval_loss": 2.125},
]


def greedy(model, prompt_ids: list[int]) -> list[int]:
    """Token ids of the greedy answer (at most NEW_TOKENS, fewer when it ends)."""
    with torch.no_grad():
        output = model.generate(torch.tensor([prompt_ids]), do_sample=False, max_new_tokens=NEW_TOKENS)
    return output[0, len(prompt_ids) :].tolist()


@pytest.fixture(scope="module")
def prompt_ids(smollm) -> list[int]:
    return render_chat(smollm.tokenizer, QUESTION)


@pytest.fixture(scope="module")
def reference(lora_adapters, prompt_ids) -> list[int]:
    """The answer of base + adapter, unmerged: what every export must reproduce."""
    return greedy(load("default", dtype="float32", device="cpu", adapter=lora_adapters["alpha"]).model, prompt_ids)


@pytest.fixture(scope="module")
def run_dir(lora_adapters, tmp_path_factory) -> Path:
    """A `llmkit train` output folder: the alpha adapter beside its train_config.yaml and metrics.jsonl."""
    directory = tmp_path_factory.mktemp("run") / "sft-alpha"
    shutil.copytree(lora_adapters["alpha"], directory)
    config = TrainConfig(dataset=["alpaca_demo"], learning_rate=1e-4, output_dir=str(directory))
    (directory / "train_config.yaml").write_text(yaml.safe_dump(config.model_dump(), sort_keys=False))
    (directory / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in METRICS))
    return directory


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory) -> ExportResult:
    """The run's adapter merged into the base its adapter_config.json names, with an f32 GGUF."""
    out = tmp_path_factory.mktemp("exports") / "smollm2-alpha"
    return export_model(None, out, adapter=run_dir, gguf="f32", card={"license": "apache-2.0"})


@pytest.fixture(scope="module")
def gguf_files(exported, tmp_path_factory) -> dict[str, Path]:
    """The export's f32 GGUF, and the same model written as Q8_0, each alone in a folder.

    Alone, because transformers reads a GGUF's tokenizer only when no tokenizer.json lies beside it.
    """
    f32 = tmp_path_factory.mktemp("f32") / "model.gguf"
    f32.symlink_to(exported.gguf)
    q8_0 = write_gguf(exported.out, tmp_path_factory.mktemp("q8_0") / "model.gguf", "q8_0")
    return {"f32": f32, "q8_0": q8_0}


def test_merged_model_answers_like_base_plus_adapter(exported, reference, prompt_ids, smollm):
    assert greedy(smollm.model, prompt_ids) != reference  # the adapter changes the answer
    assert greedy(load(str(exported.out), dtype="float32", device="cpu").model, prompt_ids) == reference


def test_export_writes_a_standalone_folder(exported, smollm):
    names = {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md", "model.gguf"}
    assert names <= set(exported.files) == {path.name for path in exported.out.iterdir()}
    assert exported.files["model.gguf"] == exported.gguf.stat().st_size
    assert [path.name for path in exported.out.parent.iterdir()] == [exported.out.name]  # no staging left
    assert not (exported.out / "adapter_config.json").exists()
    tokenizer = load(str(exported.out), dtype="float32", device="cpu").tokenizer
    assert tokenizer.chat_template == smollm.tokenizer.chat_template


def test_model_card_records_base_training_and_metrics(exported, run_dir):
    text = (exported.out / "README.md").read_text()
    front, body = text.removeprefix("---\n").split("\n---\n", 1)
    meta = yaml.safe_load(front)
    base = json.loads((run_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert meta["base_model"] == exported.base_model == base
    assert meta["library_name"] == "transformers" and meta["license"] == "apache-2.0"
    assert {"llmkit", "lora", "sft", "gguf"} <= set(meta["tags"])
    assert "| learning_rate | 0.0001 |" in body and "alpaca_demo" in body
    assert "| loss | 1.875 |" in body and "| eval_loss | 2.125 |" in body  # the final values, not the first


@pytest.mark.parametrize(("gguf_type", "agreeing"), [("f32", NEW_TOKENS), ("q8_0", 3)])
def test_gguf_reloads_through_llmkit_with_the_same_answer(
    gguf_type, agreeing, gguf_files, reference, prompt_ids, tmp_path, monkeypatch
):
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path))  # the GGUF -> safetensors conversion is cached there
    model, tokenizer = load(str(gguf_files[gguf_type]), dtype="float32", device="cpu")
    assert render_chat(tokenizer, QUESTION) == prompt_ids
    assert tokenizer.chat_template
    assert greedy(model, prompt_ids)[:agreeing] == reference[:agreeing]


@pytest.mark.parametrize(("gguf_type", "agreeing"), [("f32", NEW_TOKENS), ("q8_0", 3)])
def test_llama_cpp_runs_the_gguf_with_the_same_answer(gguf_type, agreeing, gguf_files, reference, prompt_ids, smollm):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    llm = llama_cpp.Llama(model_path=str(gguf_files[gguf_type]), n_ctx=256, verbose=False)
    try:
        prompt = smollm.tokenizer.decode(prompt_ids)
        assert llm.tokenize(prompt.encode(), special=True) == prompt_ids  # same vocabulary, no BOS added
        assert llm.metadata["tokenizer.chat_template"] == smollm.tokenizer.chat_template
        answer = []
        for token in llm.generate(prompt_ids, temp=0.0, top_k=1):
            answer.append(token)
            if len(answer) == len(reference):
                break
        assert answer[:agreeing] == reference[:agreeing]
    finally:
        llm.close()


def test_refuses_a_non_empty_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty.*--overwrite"):
        export_model("default", out)
    assert (out / "keep.txt").read_text() == "mine"


def test_missing_adapter_directory(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        export_model(None, tmp_path / "out", adapter=tmp_path / "no-such-adapter")


def test_adapter_for_another_base_is_refused_and_leaves_nothing(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
    tiny = LlamaForCausalLM(LlamaConfig(**shape, num_key_value_heads=2, vocab_size=49152))
    get_peft_model(tiny, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(tmp_path / "tiny-adapter")
    with pytest.raises(ExportError, match="does not fit base model default.*size mismatch"):
        export_model("default", tmp_path / "exports" / "out", adapter=tmp_path / "tiny-adapter")
    assert list((tmp_path / "exports").iterdir()) == []


def test_gguf_needs_a_llama_architecture(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=32, n_head=2).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ConversionError, match="supports LlamaForCausalLM models, not gpt2"):
        export_model(str(tmp_path / "gpt2"), tmp_path / "out", gguf="q8_0")
    assert not (tmp_path / "out").exists()


def test_unknown_gguf_type(tmp_path):
    with pytest.raises(ExportError, match="f32, f16, q8_0"):
        export_model("default", tmp_path / "out", gguf="q4_k")
