from pathlib import Path

import pytest

from llmkit.errors import ChatTemplateError, InvalidRequestError
from llmkit.models import load, render_chat, render_chat_text
from llmkit.models.chat_template import load_chat_template

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]


def test_smollm_renders_chatml(smollm):
    text = render_chat_text(smollm.tokenizer, MESSAGES)
    assert "<|im_start|>user\nWhat is 2 + 2?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    ids = render_chat(smollm.tokenizer, MESSAGES)
    assert isinstance(ids, list) and all(type(i) is int for i in ids)
    assert smollm.tokenizer.decode(ids) == text


def test_without_generation_prompt_the_prompt_ends_after_the_last_turn(smollm):
    text = render_chat_text(smollm.tokenizer, MESSAGES, add_generation_prompt=False)
    assert not text.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize(
    "messages",
    [
        [],
        "hello",
        [{"role": "robot", "content": "hi"}],
        [{"role": "user", "content": 3}],
        [{"role": "user"}],
        ["hi"],
    ],
)
def test_malformed_messages_are_rejected(smollm, messages):
    with pytest.raises(InvalidRequestError):
        render_chat(smollm.tokenizer, messages)


@pytest.mark.slow
def test_base_model_without_template_names_the_fix(gemma):
    with pytest.raises(ChatTemplateError, match="--chat-template"):
        render_chat(gemma.tokenizer, MESSAGES)


@pytest.mark.slow
def test_chat_template_file_is_used(gemma, tmp_path):
    template = tmp_path / "turns.jinja"
    template.write_text(
        "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
        "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )
    loaded = load("gemma3-270m", dtype="float32", device="cpu", chat_template=template)
    text = render_chat_text(loaded.tokenizer, MESSAGES)
    assert text.endswith("<start_of_turn>user\nWhat is 2 + 2?<end_of_turn>\n<start_of_turn>model\n")
    assert render_chat(loaded.tokenizer, MESSAGES)


def test_missing_template_file_is_a_chat_template_error(tmp_path):
    with pytest.raises(ChatTemplateError, match="nope.jinja"):
        load("default", device="cpu", chat_template=tmp_path / "nope.jinja")


def test_a_chat_template_is_a_file_or_the_jinja_text_itself(tmp_path):
    template = "{{ messages[0].content }}\n"
    (tmp_path / "t.jinja").write_text(template)
    assert load_chat_template(str(tmp_path / "t.jinja")) == load_chat_template(tmp_path / "t.jinja") == template
    assert load_chat_template("{{ '你好' }}\\n") == "{{ '你好' }}\n"  # \n typed in a shell, read as vLLM reads it
    with pytest.raises(ChatTemplateError, match="cannot read chat template missing.jinja: No such file"):
        load_chat_template("missing.jinja")
    with pytest.raises(ChatTemplateError, match="cannot read chat template"):
        load_chat_template(Path("{{ missing }}"))  # a Path is always a file


def test_continuing_the_final_message_leaves_it_open(smollm):
    opening = [*MESSAGES, {"role": "assistant", "content": "2 + 2 is"}]
    text = render_chat_text(smollm.tokenizer, opening, add_generation_prompt=False, continue_final_message=True)
    assert text.endswith("<|im_start|>assistant\n2 + 2 is")
