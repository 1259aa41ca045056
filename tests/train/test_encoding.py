"""Encoding for training with the default model's tokenizer: loss masks, truncation, packing, TRL's fields."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmkit.errors import ChatTemplateError
from llmkit.models import render_chat
from llmkit.train.datasets import Conversation, Preference, load_datasets
from llmkit.train.encoding import (
    IGNORE,
    Encoded,
    encode_conversation,
    encode_preference,
    encode_text,
    pack,
    preview,
)

LF_DIR = Path(os.environ["LLMKIT_SHARED_DATA"]) / "llama-factory"
END = "<|im_end|>\n"  # what SmolLM2's template writes after every turn


@pytest.fixture(scope="module")
def tokenizer(smollm):
    return smollm.tokenizer


@pytest.fixture(scope="module")
def glaive() -> list[Conversation]:
    return load_datasets(["glaive_toolcall_en_demo"], LF_DIR, "sft", seed=None).records


def supervised_runs(encoded: Encoded) -> list[list[int]]:
    """The contiguous stretches of supervised tokens, in order."""
    runs: list[list[int]] = []
    previous = IGNORE
    for token, label in zip(encoded.input_ids, encoded.labels, strict=True):
        if label != IGNORE:
            assert label == token
            if previous == IGNORE:
                runs.append([])
            runs[-1].append(token)
        previous = label
    return runs


def test_alpaca_labels_cover_exactly_the_answer(tokenizer):
    record = load_datasets(["alpaca_en_demo"], LF_DIR, "sft", seed=None).records[0]
    encoded = encode_conversation(record, tokenizer, 2048)
    [answer] = supervised_runs(encoded)
    assert tokenizer.decode(answer) == record.messages[-1]["content"] + END
    prompt = encoded.input_ids[: len(encoded.input_ids) - len(answer)]
    assert prompt == render_chat(tokenizer, record.messages[:-1])  # what `llmkit chat` sends, default system included
    assert encoded.input_ids == render_chat(tokenizer, record.messages, add_generation_prompt=False)


def test_every_assistant_turn_is_supervised(tokenizer, glaive):
    record = next(r for r in glaive if sum(m["role"] == "assistant" for m in r.messages) >= 4)
    runs = supervised_runs(encode_conversation(record, tokenizer, 4096))
    answers = [m["content"] + END for m in record.messages if m["role"] == "assistant"]
    assert [tokenizer.decode(run) for run in runs] == answers  # function calls included, tool output not


def test_mask_history_and_train_on_prompt(tokenizer, glaive):
    record = next(r for r in glaive if sum(m["role"] == "assistant" for m in r.messages) >= 4)
    last = encode_conversation(record, tokenizer, 4096, supervise="last")  # LLaMA-Factory's mask_history
    assert [tokenizer.decode(run) for run in supervised_runs(last)] == [record.messages[-1]["content"] + END]
    everything = encode_conversation(record, tokenizer, 4096, supervise="all")  # train_on_prompt
    assert everything.labels == everything.input_ids == last.input_ids


def test_truncation_drops_oldest_rounds_and_keeps_the_answer(tokenizer, glaive):
    record = next(r for r in glaive if sum(m["role"] == "user" for m in r.messages) >= 3)
    full = encode_conversation(record, tokenizer, 4096)
    last_round = Conversation(record.messages[-2:], system=record.system)
    cutoff = len(encode_conversation(last_round, tokenizer, 4096).input_ids) + 5
    assert cutoff < len(full.input_ids)
    encoded = encode_conversation(record, tokenizer, cutoff)
    assert len(encoded.input_ids) <= cutoff
    assert tokenizer.decode(encoded.input_ids).startswith("<|im_start|>system\n")  # whole rounds went, system stayed
    assert tokenizer.decode(supervised_runs(encoded)[-1]) == record.messages[-1]["content"] + END


def test_long_prompt_is_cut_from_the_left(tokenizer):
    question = " ".join(f"word{i}" for i in range(300))
    record = Conversation([{"role": "user", "content": question}, {"role": "assistant", "content": "Short answer."}])
    encoded = encode_conversation(record, tokenizer, 64)
    assert len(encoded.input_ids) == 64
    assert tokenizer.decode(supervised_runs(encoded)[0]) == "Short answer." + END
    assert "word299" in tokenizer.decode(encoded.input_ids) and "word0 " not in tokenizer.decode(encoded.input_ids)


def test_answer_longer_than_cutoff_is_cut_at_the_right_and_still_supervised(tokenizer):
    answer = " ".join(f"token{i}" for i in range(200))
    record = Conversation([{"role": "user", "content": "Count."}, {"role": "assistant", "content": answer}])
    encoded = encode_conversation(record, tokenizer, 64)
    [run] = supervised_runs(encoded)
    assert len(encoded.input_ids) == 64 and len(run) == 32  # half the budget stays with the prompt
    assert answer.startswith(tokenizer.decode(run))
    assert tokenizer.decode(encoded.input_ids).endswith(tokenizer.decode(run))


def test_text_chunks_are_fully_supervised_and_end_with_eos(tokenizer):
    text = load_datasets(["wiki_demo"], LF_DIR, "pt", seed=None).records[0].text
    chunks = encode_text(text, tokenizer, 256)
    ids = [token for chunk in chunks for token in chunk.input_ids]
    assert ids == tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    assert all(len(chunk.input_ids) <= 256 and chunk.labels == chunk.input_ids for chunk in chunks)
    assert len(chunks) == -(-len(ids) // 256)


def test_packing_keeps_every_token_once_and_restarts_positions(tokenizer):
    records = load_datasets(["identity", "alpaca_en_demo"], LF_DIR, "sft", max_samples=40).records
    encoded = [encode_conversation(record, tokenizer, 256) for record in records]
    rows = pack(encoded, 256)
    assert len(rows) < len(encoded) and all(len(row.input_ids) <= 256 for row in rows)
    pieces = []
    for row in rows:
        assert len(row.input_ids) == len(row.labels) == len(row.position_ids)
        starts = [i for i, position in enumerate(row.position_ids) if position == 0] + [len(row.input_ids)]
        for start, end in zip(starts, starts[1:]):
            assert row.position_ids[start:end] == list(range(end - start))
            assert row.labels[start] == IGNORE  # no example learns to follow the previous one
            pieces.append((tuple(row.input_ids[start:end]), tuple(row.labels[start + 1 : end])))
    original = [(tuple(e.input_ids), tuple(e.labels[1:])) for e in encoded]
    assert sorted(pieces) == sorted(original)
    with pytest.raises(ValueError, match="cutoff_len"):
        pack(encoded, 8)


def test_preference_fields_are_what_trl_collates(tokenizer):
    from trl.trainer.dpo_trainer import DataCollatorForPreference
    from trl.trainer.reward_trainer import DataCollatorForPreference as RewardCollator

    pref = load_datasets(["dpo_en_demo"], LF_DIR, "dpo", seed=None).records[0]
    dpo = encode_preference(pref, tokenizer, 4096)
    assert set(dpo) == {"prompt_ids", "chosen_ids", "rejected_ids"}
    assert dpo["prompt_ids"] == render_chat(tokenizer, pref.prompt)
    assert tokenizer.decode(dpo["chosen_ids"]) == pref.chosen + END
    assert tokenizer.decode(dpo["rejected_ids"]) == pref.rejected + END
    batch = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)([dpo])
    chosen_row = batch["input_ids"][0][batch["completion_mask"][0].bool()].tolist()
    assert chosen_row == dpo["chosen_ids"]

    rm = encode_preference(pref, tokenizer, 4096, stage="rm")
    assert rm["chosen_ids"] == dpo["prompt_ids"] + dpo["chosen_ids"]
    assert rm["rejected_ids"] == dpo["prompt_ids"] + dpo["rejected_ids"]
    assert RewardCollator(pad_token_id=tokenizer.pad_token_id)([rm])["input_ids"].shape[0] == 2


def test_preference_truncation_keeps_both_answers(tokenizer):
    pref = Preference([{"role": "user", "content": "x " * 400}], chosen="Yes.", rejected="No, never.")
    dpo = encode_preference(pref, tokenizer, 100)
    assert len(dpo["prompt_ids"]) + max(len(dpo["chosen_ids"]), len(dpo["rejected_ids"])) == 100
    assert tokenizer.decode(dpo["rejected_ids"]) == "No, never." + END


def test_preview_marks_the_unsupervised_parts(tokenizer):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    shown = preview(encode_conversation(Conversation(messages, system="Be kind."), tokenizer, 256), tokenizer)
    prompt = "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert shown == f"«{prompt}»Hello!{END}"


def test_template_without_the_prefix_property_is_named(tokenizer, monkeypatch):
    counting = "{{ messages|length }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    monkeypatch.setattr(tokenizer, "chat_template", counting)
    record = Conversation([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])
    with pytest.raises(ChatTemplateError, match="smollm2"):
        encode_conversation(record, tokenizer, 256)
