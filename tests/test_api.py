"""The Llama-style API over the real SmolLM2: chat and text completion, logprobs, echo, streaming, errors."""

from __future__ import annotations

import pytest

from llmkit.api import LLM
from llmkit.engine.engine import Engine
from llmkit.errors import ChatTemplateError, InvalidRequestError
from llmkit.models import render_chat

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def llm(smollm) -> LLM:
    return LLM(Engine(smollm.model, smollm.tokenizer, max_batch_size=8, max_seq_len=512))


def test_chat_completion_answers_the_question(llm) -> None:
    [answer] = llm.chat_completion([FRANCE], temperature=0, max_gen_len=32)
    assert answer["generation"]["role"] == "assistant"
    assert "Paris" in answer["generation"]["content"]


def test_chat_completion_batches_dialogs_in_order(llm) -> None:
    dialogs = [FRANCE, [{"role": "user", "content": "What is 2 + 2?"}]]
    batched = llm.chat_completion(dialogs, temperature=0, max_gen_len=16)
    alone = [llm.chat_completion([d], temperature=0, max_gen_len=16)[0] for d in dialogs]
    assert batched == alone


def test_multi_turn_dialog(llm) -> None:
    dialog = [
        {"role": "system", "content": "You are a geography tutor. Answer in one sentence."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."},
        {"role": "user", "content": "And what is the capital of Italy?"},
    ]
    [answer] = llm.chat_completion([dialog], temperature=0, max_gen_len=24, logprobs=True)
    assert "Rome" in answer["generation"]["content"]
    assert len(answer["tokens"]) == len(answer["logprobs"]) > 0


def test_text_completion_logprobs_align_with_tokens(llm, smollm) -> None:
    [out] = llm.text_completion(["The capital of France is"], temperature=0, max_gen_len=8, logprobs=True)
    assert len(out["tokens"]) == len(out["logprobs"]) > 0
    assert all(lp <= 0.0 for lp in out["logprobs"])
    assert "".join(out["tokens"]).startswith(out["generation"])


def test_text_completion_echo_puts_the_prompt_first(llm, smollm) -> None:
    prompt = "The capital of France is"
    prompt_ids = smollm.tokenizer.encode(prompt)
    plain = llm.text_completion([prompt], temperature=0, max_gen_len=8, logprobs=True)[0]
    echoed = llm.text_completion([prompt], temperature=0, max_gen_len=8, logprobs=True, echo=True)[0]
    assert echoed["generation"] == prompt + plain["generation"]
    assert echoed["tokens"] == [smollm.tokenizer.decode([t]) for t in prompt_ids] + plain["tokens"]
    assert len(echoed["logprobs"]) == len(echoed["tokens"])
    assert echoed["logprobs"][0] == 0.0
    assert all(lp <= 0.0 for lp in echoed["logprobs"])
    assert echoed["logprobs"][len(prompt_ids) :] == pytest.approx(plain["logprobs"], abs=1e-4)
    assert echoed["logprobs"][1 : len(prompt_ids)] == pytest.approx(llm.prompt_logprobs(prompt_ids)[1:])


def test_stream_chat_joins_to_the_chat_completion(llm) -> None:
    deltas = list(llm.stream_chat(FRANCE, max_new_tokens=32))
    [answer] = llm.chat_completion([FRANCE], temperature=0, max_gen_len=32)
    assert all(deltas)
    assert "".join(deltas) == answer["generation"]["content"]


def test_stream_chat_in_chinese_yields_whole_characters(llm) -> None:
    dialog = [{"role": "user", "content": "请用中文写一句关于春天的话。"}]
    deltas = list(llm.stream_chat(dialog, max_new_tokens=32, min_new_tokens=32))
    assert not any("\ufffd" in d for d in deltas)
    [answer] = llm.generate([render_chat(llm.tokenizer, dialog)], max_new_tokens=32, min_new_tokens=32)
    assert "".join(deltas) == answer.outputs[0].text


def test_generate_takes_transformers_sampling_names(llm, smollm) -> None:
    ids = smollm.tokenizer.encode("The capital of France is")
    [result] = llm.generate([ids], max_new_tokens=4)
    assert len(result.outputs[0].token_ids) == 4 and result.outputs[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("sampling", "message"),
    [
        ({"foo": 1}, "foo: unknown parameter"),
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"num_beams": 2, "do_sample": True}, "beam search"),
        ({"num_beams": 9}, "max_batch_size"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"min_new_tokens": 5, "max_new_tokens": 2}, "min_new_tokens"),
        ({"stop": [""]}, "stop"),
    ],
)
def test_invalid_requests_name_the_problem(llm, smollm, sampling, message) -> None:
    ids = smollm.tokenizer.encode("Hello")
    with pytest.raises(InvalidRequestError, match=message) as error:
        llm.generate([ids], **sampling)
    if "top_p" in sampling or "temperature" in sampling:
        assert repr(next(iter(sampling.values()))) in str(error.value)  # the offending value is quoted
    assert not llm.engine.has_unfinished()


def test_invalid_prompts_name_the_problem(llm) -> None:
    with pytest.raises(InvalidRequestError, match="empty"):
        llm.generate([[]])
    with pytest.raises(InvalidRequestError, match="max_seq_len"):
        llm.generate([[1] * 512])
    with pytest.raises(InvalidRequestError, match="vocabulary"):
        llm.generate([[10**7]])


@pytest.mark.slow
def test_chat_on_a_base_model_asks_for_a_chat_template(gemma) -> None:
    base = LLM(Engine(gemma.model, gemma.tokenizer, max_batch_size=2, max_seq_len=128))
    with pytest.raises(ChatTemplateError, match="--chat-template"):
        base.chat_completion([FRANCE])
    with pytest.raises(ChatTemplateError, match="--chat-template"):
        next(base.stream_chat(FRANCE))
    # Plain text completion still works on a base model.
    [out] = base.text_completion(["The capital of France is"], temperature=0, max_gen_len=4)
    assert isinstance(out["generation"], str) and out["generation"]
