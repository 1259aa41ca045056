"""Tokenize canonical records for training, with the model's own chat template and loss masks.

Every conversation is rendered by `llmkit.models.render_chat`, the function `llmkit chat` uses, so a
model is trained on exactly the text it is prompted with (a template's default system prompt
included). Assistant turns are found by rendering prefixes: the text of `messages[:i]` plus the
generation prompt, then of `messages[:i + 1]`; the text in between is turn i's answer and the
end-of-turn text the template puts after it. The tokens of the whole text that overlap those
characters carry labels (a token merged across a turn's boundary too); everything else is -100.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from llmkit.errors import ChatTemplateError
from llmkit.models import render_chat, render_chat_text
from llmkit.train.datasets import Conversation, DatasetError, Preference

IGNORE = -100
MASK_OPEN, MASK_CLOSE = "«", "»"


@dataclass
class Encoded:
    """One tokenized example: labels are the input ids where the loss applies, -100 elsewhere."""

    input_ids: list[int]
    labels: list[int]


@dataclass
class Packed:
    """Several examples in one row; position ids restart at 0 where each example begins."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]


Supervise = Literal["answers", "last", "all"]


def encode_conversation(conv: Conversation, tokenizer, cutoff_len: int, supervise: Supervise = "answers") -> Encoded:
    """Tokens and labels of a conversation, at most `cutoff_len` tokens. `supervise`: every assistant turn
    ("answers"), the last one only ("last": LLaMA-Factory's mask_history) or every token ("all": train_on_prompt).

    Too long: whole oldest rounds (a user turn and what answers it) go first, the system prompt stays;
    then the prompt is cut from the left. The final answer is cut (at the right) only when it alone
    does not fit; it then keeps up to half of `cutoff_len` of prompt before it.
    """
    messages = _with_system(conv.system, conv.messages)
    if not any(message["role"] == "assistant" for message in messages):
        raise DatasetError("a training conversation needs at least one assistant turn")
    tools = json.loads(conv.tools) if conv.tools else None
    encoded, answer = _render_supervised(messages, tokenizer, tools, supervise)
    while len(encoded.input_ids) > cutoff_len and _user_turns(messages) > 1:
        messages = _drop_oldest_round(messages)
        encoded, answer = _render_supervised(messages, tokenizer, tools, supervise)
    start, end = answer
    prompt_keep, answer_keep = _budget(start, end - start, cutoff_len)
    window = slice(start - prompt_keep, start + answer_keep)
    return Encoded(encoded.input_ids[window], encoded.labels[window])


def fit_prompt(messages: list[dict], tokenizer, cutoff_len: int) -> list[dict] | None:
    """A prompt to sample from (ppo, grpo) in at most `cutoff_len` tokens with the generation prompt: whole oldest
    rounds go first, the system prompt stays; None when the last round alone is longer."""
    while len(_render(tokenizer, messages, True, None)) > cutoff_len:
        if _user_turns(messages) <= 1:
            return None
        messages = _drop_oldest_round(messages)
    return messages


def encode_text(text: str, tokenizer, cutoff_len: int) -> list[Encoded]:
    """A document for pre-training: every token supervised, EOS appended, split into `cutoff_len` chunks."""
    ids = list(tokenizer(text)["input_ids"])
    if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
        ids.append(tokenizer.eos_token_id)
    chunks = [ids[start : start + cutoff_len] for start in range(0, len(ids), cutoff_len)]
    return [Encoded(chunk, list(chunk)) for chunk in chunks]


def encode_preference(
    pref: Preference, tokenizer, cutoff_len: int, stage: Literal["dpo", "rm"] = "dpo"
) -> dict[str, list[int]]:
    """A preference pair in the pre-tokenized fields TRL 1.x reads, at most `cutoff_len` tokens per sequence.

    dpo: `prompt_ids`, `chosen_ids`, `rejected_ids` (the answers alone, with end-of-turn tokens), as
    `DataCollatorForPreference` takes them (TRL 1.16's `DPOTrainer._prepare_dataset` still re-tokenizes
    any dataset and fails on these fields, so a trainer must skip that step for them). rm: `chosen_ids`,
    `rejected_ids` as whole sequences (prompt + answer), which `RewardTrainer` takes as already
    processed. Truncation works as in `encode_conversation`, the longer answer setting the prompt's share.
    """
    prompt = _with_system(pref.system, pref.prompt)
    prompt_ids, chosen, rejected = _render_pair(prompt, pref, tokenizer)
    while len(prompt_ids) + max(len(chosen), len(rejected)) > cutoff_len and _user_turns(prompt) > 1:
        prompt = _drop_oldest_round(prompt)
        prompt_ids, chosen, rejected = _render_pair(prompt, pref, tokenizer)
    prompt_keep, answer_keep = _budget(len(prompt_ids), max(len(chosen), len(rejected)), cutoff_len)
    prompt_ids = prompt_ids[len(prompt_ids) - prompt_keep :]
    chosen, rejected = chosen[:answer_keep], rejected[:answer_keep]
    if stage == "rm":
        return {"chosen_ids": prompt_ids + chosen, "rejected_ids": prompt_ids + rejected}
    return {"prompt_ids": prompt_ids, "chosen_ids": chosen, "rejected_ids": rejected}


def pack(encoded: Sequence[Encoded], cutoff_len: int) -> list[Packed]:
    """Pack examples into rows of at most `cutoff_len` tokens, best-fit decreasing; every token kept once.

    Each example's first label becomes -100, so no example is trained to follow the one before it (an
    unpacked example's first label is never predicted either). Attention stays within an example only if
    the model builds its mask from `position_ids`: in transformers 5.x, eager/sdpa `create_causal_mask`
    makes a block-diagonal mask from restarting position ids when it gets `attention_mask=None` and no
    KV cache (`use_cache=False`; with the default `use_cache=True` a cache is created and the mask is plain
    causal). Rows of a batch may be padded with labels -100 and position ids counting from 0 again (the
    padding becomes a block of its own). Flash-attention reads position ids only for a batch of one row
    (varlen kernels). Passing an attention mask, even all ones, turns the detection off: examples then
    attend to each other.
    """
    order = sorted(range(len(encoded)), key=lambda index: len(encoded[index].input_ids), reverse=True)
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (space left, row index), kept sorted for the best-fit search
    for index in order:
        size = len(encoded[index].input_ids)
        if size > cutoff_len:
            raise ValueError(f"example {index} has {size} tokens, more than cutoff_len={cutoff_len}; truncate it first")
        slot = bisect.bisect_left(free, (size, -1))
        if slot == len(free):
            rows.append([index])
            bisect.insort(free, (cutoff_len - size, len(rows) - 1))
        else:
            space, row = free.pop(slot)
            rows[row].append(index)
            bisect.insort(free, (space - size, row))
    return [_concatenate([encoded[index] for index in row]) for row in rows]


def preview(encoded: Encoded | Packed, tokenizer) -> str:
    """The example's text with the unsupervised (masked) parts wrapped in «…», to check what is trained."""
    parts: list[str] = []
    run: list[int] = []
    masked = encoded.labels[0] == IGNORE if encoded.labels else False
    for token, label in zip(encoded.input_ids, encoded.labels, strict=True):
        if (label == IGNORE) != masked:
            parts.append(_show(run, masked, tokenizer))
            run, masked = [], label == IGNORE
        run.append(token)
    parts.append(_show(run, masked, tokenizer))
    return "".join(parts)


def _show(tokens: list[int], masked: bool, tokenizer) -> str:
    """Decoded tokens, wrapped in the mask markers when they carry no loss."""
    text = tokenizer.decode(tokens)
    return f"{MASK_OPEN}{text}{MASK_CLOSE}" if masked and text else text


def _with_system(system: str | None, messages: list[dict]) -> list[dict]:
    """The messages with the record's system prompt in front, when it has one."""
    return [{"role": "system", "content": system}, *messages] if system else list(messages)


def _user_turns(messages: list[dict]) -> int:
    """How many user turns (rounds) the messages hold."""
    return sum(message["role"] == "user" for message in messages)


def _drop_oldest_round(messages: list[dict]) -> list[dict]:
    """The messages without their first round: the first user turn and everything before the second one."""
    head = [message for message in messages[:1] if message["role"] == "system"]
    users = [index for index, message in enumerate(messages) if message["role"] == "user"]
    return head + messages[users[1] :]


def _budget(prompt_len: int, answer_len: int, cutoff_len: int) -> tuple[int, int]:
    """How many prompt tokens (from the end) and answer tokens (from the start) fit in `cutoff_len`."""
    if answer_len < cutoff_len:
        prompt_keep = min(prompt_len, cutoff_len - answer_len)
    else:
        prompt_keep = min(prompt_len, cutoff_len // 2)
    return prompt_keep, min(answer_len, cutoff_len - prompt_keep)


def _render(tokenizer, messages: list[dict], generation_prompt: bool, tools: list[dict] | None) -> list[int]:
    """Token ids of the messages as the chat command renders them."""
    return render_chat(tokenizer, messages, add_generation_prompt=generation_prompt, tools=tools)


def _render_supervised(
    messages: list[dict], tokenizer, tools: list[dict] | None, supervise: Supervise = "answers"
) -> tuple[Encoded, tuple[int, int]]:
    """The whole conversation labelled as `supervise` says, and the last answer's token span."""
    text = render_chat_text(tokenizer, messages, add_generation_prompt=False, tools=tools)
    answers = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render_chat_text(tokenizer, messages[:index], add_generation_prompt=True, tools=tools)
        after = render_chat_text(tokenizer, messages[: index + 1], add_generation_prompt=False, tools=tools)
        _check_prefix(tokenizer, before, after)
        _check_prefix(tokenizer, after, text)
        answers.append((len(before), len(after)))
    # One tokenization of the whole text, as `render_chat` makes it: the ids the model is prompted with.
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids, offsets = list(encoding["input_ids"]), encoding["offset_mapping"]
    labels = [IGNORE] * len(input_ids)
    span = (len(input_ids), len(input_ids))
    for number, (start, end) in enumerate(answers, start=1):
        tokens = [index for index, (first, last) in enumerate(offsets) if first < end and last > start]
        if supervise != "last" or number == len(answers):
            for index in tokens:
                labels[index] = input_ids[index]
        span = (tokens[0], tokens[-1] + 1) if tokens else span
    return Encoded(input_ids, list(input_ids) if supervise == "all" else labels), span


def _render_pair(prompt: list[dict], pref: Preference, tokenizer) -> tuple[list[int], list[int], list[int]]:
    """Prompt tokens (with the generation prompt) and each answer's tokens after them."""
    prompt_ids = _render(tokenizer, prompt, True, None)
    answers = []
    for answer in (pref.chosen, pref.rejected):
        full = _render(tokenizer, [*prompt, {"role": "assistant", "content": answer}], False, None)
        _check_prefix(tokenizer, prompt_ids, full)
        answers.append(full[len(prompt_ids) :])
    return prompt_ids, answers[0], answers[1]


def _check_prefix(tokenizer, prefix: str | list[int], full: str | list[int]) -> None:
    """Raise `ChatTemplateError` naming the template when a conversation's start renders differently alone."""
    if full[: len(prefix)] != prefix:
        raise ChatTemplateError(
            f"the chat template of {tokenizer.name_or_path!r} renders a conversation's beginning differently "
            "from the same turns inside the whole conversation, so the assistant turns cannot be located for "
            "loss masking; set `template:` in the training config to a Jinja file without that behaviour"
        )


def _concatenate(examples: list[Encoded]) -> Packed:
    """One packed row: examples end to end, each first label masked, positions restarting per example."""
    row = Packed([], [], [])
    for example in examples:
        row.input_ids += example.input_ids
        row.labels += [IGNORE, *example.labels[1:]][: len(example.labels)]
        row.position_ids += range(len(example.input_ids))
    return row
