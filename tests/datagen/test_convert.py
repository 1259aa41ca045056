"""`datagen.convert`: generated records become training files `llmkit train` reads with nothing skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmkit.datagen.convert import Converter, MappingError, convert, read_mapping
from llmkit.jsonl import write_jsonl
from llmkit.train.datasets import Conversation, Preference, load_dataset, resolve

GENERATED = [
    {
        "question_zh": "故宫位于哪里？",
        "answer": {"landmark": "故宫", "city": "北京", "latitude": 39.9163, "longitude": 116.3972},
        "wrong": "故宫在上海。",
        "_meta": {"model": "default", "attempt": 1},
    },
    {
        "question_zh": "外滩在哪座城市？",
        "answer": {"landmark": "外滩", "city": "上海", "latitude": 31.24, "longitude": 121.49},
        "wrong": "外滩在广州。",
        "_meta": {"model": "default", "attempt": 2},
    },
]


@pytest.fixture
def generated(tmp_path: Path) -> Path:
    path = tmp_path / "generated.jsonl"
    write_jsonl(path, GENERATED)
    return path


def loaded(path: Path, stage: str) -> list:
    """The records `llmkit train` gets from a converted file, asserting it skipped none."""
    result = load_dataset(resolve(str(path), path.parent), stage)
    assert result.skipped == []
    return result.records


def test_alpaca_answer_is_an_unescaped_json_string_that_train_reads(generated, tmp_path):
    out = tmp_path / "alpaca.jsonl"
    mapping = {
        "instruction": "question_zh",
        "output": "{{ answer | tojson }}",
        "system": {"literal": "你是地理助手。"},
    }
    result = convert([generated], out, "alpaca", mapping)

    assert result.written == 2 and result.rejects == [] and result.rejects_path is None
    text = out.read_text(encoding="utf-8")
    assert "\\u" not in text and "故宫" in text
    first = json.loads(text.splitlines()[0])
    assert first["output"] == json.dumps(GENERATED[0]["answer"], ensure_ascii=False)
    assert "attempt" not in first["instruction"] + first["output"]  # _meta never enters the text
    records = loaded(out, "sft")
    assert records[0] == Conversation(
        [{"role": "user", "content": "故宫位于哪里？"}, {"role": "assistant", "content": first["output"]}],
        system="你是地理助手。",
    )


def test_sharegpt_messages_with_system_and_listed_fields_as_json(tmp_path):
    out = tmp_path / "sharegpt.jsonl"
    mapping = {
        "system": {"literal": "Answer in JSON."},
        "user": "question_zh",
        "assistant": {"json_of": ["landmark", "city"]},
    }
    nested = [{**record, **record["answer"]} for record in GENERATED]
    write_jsonl(tmp_path / "flat.jsonl", nested)
    convert([tmp_path / "flat.jsonl"], out, "sharegpt", mapping)

    [first, second] = loaded(out, "sft")
    assert first.system == "Answer in JSON."
    assert first.messages[-1] == {"role": "assistant", "content": '{"landmark": "故宫", "city": "北京"}'}
    assert second.messages[0] == {"role": "user", "content": "外滩在哪座城市？"}


def test_preference_pairs_load_for_dpo(generated, tmp_path):
    out = tmp_path / "dpo.jsonl"
    mapping = {"prompt": "question_zh", "chosen": "answer.city", "rejected": "wrong"}
    convert([generated], out, "preference", mapping)

    [first, _] = loaded(out, "dpo")
    assert first == Preference([{"role": "user", "content": "故宫位于哪里？"}], "北京", "故宫在上海。")


def test_everything_but_some_fields_as_json_leaves_meta_out():
    output = {"json_of": "*", "except": ["question_zh", "wrong"]}
    converter = Converter("alpaca", {"instruction": "question_zh", "output": output})
    record = converter(GENERATED[0])
    assert json.loads(record["output"]) == {"answer": GENERATED[0]["answer"]}
    assert record["_meta"] == GENERATED[0]["_meta"]  # carried beside the text for bookkeeping


def test_objects_print_as_json_in_templates_and_paths():
    converter = Converter("alpaca", {"instruction": "{{ question_zh }}（{{ answer.city }}）", "output": "answer"})
    record = converter(GENERATED[1])
    assert record["instruction"] == "外滩在哪座城市？（上海）"
    assert record["output"] == json.dumps(GENERATED[1]["answer"], ensure_ascii=False)


@pytest.mark.parametrize(
    "mapping, reason",
    [
        ({"instruction": "question", "output": "answer"}, "missing field 'question'"),
        ({"instruction": "{{ question }}", "output": "answer"}, "'question' is undefined"),
        ({"instruction": "question_zh", "output": {"json_of": ["answer", "source"]}}, "missing field 'source'"),
        ({"instruction": "question_zh", "output": "comment"}, "'output' comes out empty"),
    ],
)
def test_a_record_that_fails_is_rejected_with_its_location(generated, tmp_path, mapping, reason):
    with generated.open("a", encoding="utf-8") as file:
        file.write('{"question_zh": "西湖在哪里？", "answer": "杭州", "comment": ""}\nnot json\n')
    result = convert([generated], tmp_path / "out.jsonl", "alpaca", mapping)

    rejects = [json.loads(line) for line in result.rejects_path.read_text(encoding="utf-8").splitlines()]
    assert [r["location"] for r in rejects][-2:] == ["line 3", "line 4"]
    assert reason in rejects[-2]["reason"] and "not valid JSON" in rejects[-1]["reason"]
    assert rejects[-2]["record"]["question_zh"] == "西湖在哪里？"
    assert result.written + len(rejects) == 4  # every row is written or rejected, none dropped


@pytest.mark.parametrize(
    "format, mapping, message",
    [
        ("chatml", {"instruction": "q", "output": "a"}, "unknown format 'chatml'"),
        ("alpaca", {"instruction": "q"}, "needs a mapping for output"),
        ("alpaca", {"instruction": "q", "output": "a", "prompt": "q"}, "has no field 'prompt'"),
        ("alpaca", {"instruction": "Where is it?", "output": "a"}, "neither a field path nor a template"),
        ("alpaca", {"instruction": "q", "output": {"json_of": "answer"}}, "json_of"),
        ("alpaca", {"instruction": "q", "output": "{{ answer"}, "bad template"),
        ("alpaca", {"instruction": "q", "output": 3}, "is not a spec"),
    ],
)
def test_a_bad_mapping_is_an_error_naming_the_field(format, mapping, message):
    with pytest.raises(MappingError, match=message):
        Converter(format, mapping)


def test_mapping_file_and_map_pairs_combine(tmp_path):
    file = tmp_path / "mapping.yaml"
    file.write_text("instruction: question_zh\noutput: answer\n", encoding="utf-8")
    mapping = read_mapping(file, ["output={json_of: [answer]}", "system={{ '你好' }}"])
    assert mapping == {"instruction": "question_zh", "output": {"json_of": ["answer"]}, "system": "{{ '你好' }}"}
    with pytest.raises(MappingError, match="target=spec"):
        read_mapping(None, ["output"])
