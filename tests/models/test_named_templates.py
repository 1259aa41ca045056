"""LLaMA-Factory's templates by name: the strings they render, their stop words, and training and export with one.

The expected strings (data/llamafactory_templates.json) were rendered by LLaMA-Factory's own code, main at commit
ff6d4d12eeb035d6ce06805a5733dd7b29f2ac30 (0.9.6.dev0, 2026-08-18), with the default model's tokenizer, by
data/make_llamafactory_templates.py: its training input (`SupervisedDatasetProcessor`), its (prompt, answer) pairs
and its inference prompt (`Template.encode_oneturn`). Two differences are deliberate; in both llmkit renders the
history as LLaMA-Factory trains on it, so every turn ends the same inside a conversation as at its end:
- efficient_eos (glm4): LLaMA-Factory puts EOS after the last answer only (its labels expect EOS after every
  answer, where the input has the next turn's tag); llmkit writes EOS after every answer.
- reasoning (qwen3): LLaMA-Factory trains on an empty thought in every answer that has none, but its inference
  prompt drops them from the history; llmkit's generation prompt keeps them, as in training.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from llmkit.errors import ChatTemplateError
from llmkit.hub import resolve
from llmkit.models import load, render_chat_text
from llmkit.models.chat_template import load_chat_template, template_change_note
from llmkit.models.loading import load_tokenizer
from llmkit.models.named_templates import (
    TEMPLATES,
    apply_template_tokens,
    stop_token_ids,
    stop_word_note,
    template_jinja,
)
from llmkit.train.datasets import Conversation
from llmkit.train.encoding import IGNORE, encode_conversation
from llmkit.train.export import merged_model

REFERENCE = json.loads((Path(__file__).parent / "data" / "llamafactory_templates.json").read_text())
CONVERSATIONS = REFERENCE["conversations"]
CASES = [(name, key) for name in sorted(TEMPLATES) for key in CONVERSATIONS]
ISSUE_NAMES = "default empty chatml qwen qwen3 qwen3_nothink llama3 llama2 mistral gemma gemma3 glm4 deepseek3 alpaca vicuna"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve("default"))


def templated(tokenizer, name: str):
    """The tokenizer with the named template. Loading with `template: NAME` also makes the template's first stop word
    EOS where LLaMA-Factory does; SmolLM2's EOS already is each such stop word that is one of its tokens (<|im_end|>),
    so swapping the template alone renders the same."""
    tokenizer.chat_template = template_jinja(name)
    return tokenizer


def today(text: str) -> str:
    """`text` with the date the reference was made replaced by today's (LLaMA-Factory's llama3 tool prompt holds it)."""
    return text.replace(f"Today Date: {REFERENCE['date']}", f"Today Date: {datetime.now().strftime('%d %b %Y')}")


def answer_end(name: str, tokenizer) -> str:
    """What llmkit adds after every answer beyond LLaMA-Factory's pairs: EOS for efficient_eos templates."""
    return tokenizer.eos_token if TEMPLATES[name].efficient_eos else ""


def test_the_issues_template_names_are_all_there():
    assert set(ISSUE_NAMES.split()) <= set(TEMPLATES)


@pytest.mark.parametrize(("name", "key"), CASES)
def test_renders_what_llamafactory_trains_on(tokenizer, name, key):
    tokenizer, reference = templated(tokenizer, name), REFERENCE["templates"][name][key]
    conversation = CONVERSATIONS[key]
    text = render_chat_text(tokenizer, conversation["messages"], add_generation_prompt=False,
                            tools=conversation.get("tools"))
    end = answer_end(name, tokenizer)
    expected = "".join(prompt + answer + end for prompt, answer in reference["turns"]) if end else reference["text"]
    assert text == today(expected)


@pytest.mark.parametrize(("name", "key"), CASES)
def test_generation_prompt_is_llamafactorys(tokenizer, name, key):
    tokenizer, reference = templated(tokenizer, name), REFERENCE["templates"][name][key]
    conversation = CONVERSATIONS[key]
    prompt = render_chat_text(tokenizer, conversation["messages"][:-1], tools=conversation.get("tools"))
    end = answer_end(name, tokenizer)
    *history, (last_prompt, _) = reference["turns"]
    assert prompt == today("".join(turn + answer + end for turn, answer in history) + last_prompt)
    if not (TEMPLATES[name].reasoning or TEMPLATES[name].efficient_eos):  # see the module's docstring
        assert prompt == today(reference["generation"])


@pytest.mark.parametrize("key", CONVERSATIONS)
def test_qwen3_with_thinking_off_puts_the_empty_thought_in_the_prompt(tokenizer, key):
    reference, conversation = REFERENCE["qwen3_thinking_off"][key], CONVERSATIONS[key]
    tokenizer = templated(tokenizer, "qwen3")
    off = {"enable_thinking": False}
    text = render_chat_text(tokenizer, conversation["messages"], add_generation_prompt=False,
                            tools=conversation.get("tools"), template_kwargs=off)
    assert text == reference["text"]
    prompt = render_chat_text(tokenizer, conversation["messages"][:-1], tools=conversation.get("tools"),
                              template_kwargs=off)
    assert prompt == "".join(turn + answer for turn, answer in reference["turns"][:-1]) + reference["turns"][-1][0]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_training_supervises_each_answer_and_its_stop_word(tokenizer, name):
    """LLaMA-Factory's answers (with their stop words) carry the loss, its prompts do not. Where this tokenizer merges
    a turn's last character with the next turn's first into one token (templates of other families, `empty`), that
    token carries the loss too."""
    tokenizer, reference = templated(tokenizer, name), REFERENCE["templates"][name]["tools"]
    conversation = CONVERSATIONS["tools"]
    record = Conversation(conversation["messages"], tools=json.dumps(conversation["tools"]))
    encoded = encode_conversation(record, tokenizer, 4096)
    answers, text = [], ""
    for prompt, answer in reference["turns"]:
        text += prompt
        answers.append(range(len(text), len(text) + len(answer + answer_end(name, tokenizer))))
        text += answer + answer_end(name, tokenizer)
    tokens = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert encoded.input_ids == tokens["input_ids"]
    for label, (first, last) in zip(encoded.labels, tokens["offset_mapping"], strict=True):
        in_answer = any(first < answer.stop and last > answer.start for answer in answers)
        assert (label != IGNORE) == in_answer, repr(text[first:last])


def test_a_tool_call_renders_without_the_tool_list(tokenizer):
    """A follow-up request may leave `tools` out; the calls in its history still render in the template's format."""
    text = render_chat_text(templated(tokenizer, "qwen"), CONVERSATIONS["tools"]["messages"][:2],
                            add_generation_prompt=False)
    assert text.endswith('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n'
                         "</tool_call><|im_end|>\n")
    assert "# Tools" not in text


def test_a_name_is_a_template_unless_a_file_has_it(tmp_path, monkeypatch):
    assert load_chat_template("qwen") == load_chat_template(Path("qwen")) == template_jinja("qwen")  # CLI: a Path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qwen").write_text("{{ messages[0].content }}")
    assert load_chat_template("qwen") == "{{ messages[0].content }}"


def test_an_unknown_name_lists_the_names_and_the_closest():
    with pytest.raises(ChatTemplateError, match="did you mean llama3.*LLaMA-Factory's template names here: alpaca, "):
        load_chat_template("lama3")


def test_stop_words_end_generation_where_they_are_tokens():
    chatml = load_tokenizer(resolve("default"), "chatml")
    assert chatml.eos_token == "<|im_end|>" and chatml.chat_template == template_jinja("chatml")
    assert stop_token_ids(chatml, "chatml") == chatml.convert_tokens_to_ids(["<|im_end|>", "<|im_start|>"])
    llama3 = load_tokenizer(resolve("default"), "llama3")
    assert llama3.eos_token == "<|im_end|>"  # <|eot_id|> is no token of SmolLM2's: EOS stays (LLaMA-Factory adds one)
    assert stop_word_note(llama3, "llama3") == (
        "template llama3: stop word <|eot_id|>, <|eom_id|> is not one token of this tokenizer, so generation cannot "
        "stop on it; use the template of this model's family"
    )
    assert stop_word_note(chatml, "chatml") is None


def test_a_stop_word_that_is_one_token_becomes_eos_as_in_llamafactory(gemma):
    tokenizer = gemma.tokenizer  # Gemma 3's own: EOS <eos>, and <end_of_turn> one token
    assert tokenizer.eos_token == "<eos>"
    try:
        apply_template_tokens(tokenizer, "gemma3")
        assert tokenizer.eos_token == "<end_of_turn>"
        assert stop_token_ids(tokenizer, "gemma3") == [tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    finally:
        tokenizer.eos_token = "<eos>"  # the fixture is shared


def test_a_changed_template_is_noted(smollm):
    own = smollm.tokenizer.chat_template
    assert template_change_note(own, "qwen") == (
        "template qwen differs from the tokenizer's own chat template: chat/serve will use qwen from the output dir"
    )
    assert template_change_note(own, own) is None
    assert template_change_note(own, None) is None


def test_a_run_with_a_named_template_chats_and_exports_with_it(lora_adapters, tmp_path):
    """What `llmkit train` saves beside the adapter (run.py: tokenizer, generation config) carries the template and
    its stop tokens into `llmkit chat --model OUT` and into what `llmkit export` writes."""
    trained = load("default", dtype="float32", device="cpu", chat_template="chatml")
    stops = set(trained.model.generation_config.eos_token_id)
    assert stops >= set(trained.tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|im_start|>"]))
    run = tmp_path / "run"
    shutil.copytree(lora_adapters["alpha"], run)
    trained.tokenizer.save_pretrained(run)
    trained.model.generation_config.save_pretrained(run)

    chat = load(str(run), dtype="float32", device="cpu")
    assert chat.tokenizer.chat_template == template_jinja("chatml")
    assert set(chat.model.generation_config.eos_token_id) == stops
    merged, tokenizer = merged_model("default", run)  # export saves these two
    assert tokenizer.chat_template == template_jinja("chatml")
    assert set(merged.generation_config.eos_token_id) == stops
