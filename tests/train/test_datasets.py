"""Dataset loading: LLaMA-Factory's real demo files by registry name and by path, every file type, bad records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmkit.train.config import ConfigError, load_config
from llmkit.train.data_pipeline import load_records
from llmkit.train.datasets import (
    Conversation,
    DatasetError,
    Preference,
    Text,
    load_dataset,
    load_datasets,
    resolve,
    split,
)

DATA_DIR = Path(os.environ["LLMKIT_SHARED_DATA"])
LF_DIR = DATA_DIR / "llama-factory"

DEMOS = [  # (registry name, stage, records, canonical type)
    ("identity", "sft", 91, Conversation),
    ("alpaca_en_demo", "sft", 999, Conversation),
    ("alpaca_zh_demo", "sft", 1000, Conversation),
    ("glaive_toolcall_en_demo", "sft", 300, Conversation),
    ("dpo_en_demo", "dpo", 300, Preference),
    ("c4_demo", "pt", 300, Text),
    ("wiki_demo", "pt", 30, Text),
]


@pytest.mark.parametrize(("name", "stage", "count", "kind"), DEMOS)
def test_registry_names_and_paths_read_every_record(name, stage, count, kind):
    entry = resolve(name, LF_DIR)
    by_name = load_dataset(entry, stage)
    by_path = load_dataset(resolve(str(entry.path), LF_DIR), stage)  # format inferred from the fields
    assert len(by_name.records) == count and not by_name.skipped
    assert all(isinstance(record, kind) for record in by_name.records)
    assert by_path.records == by_name.records and not by_path.skipped


def test_alpaca_record_joins_instruction_and_input():
    rows = json.loads((LF_DIR / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    index = next(i for i, row in enumerate(rows) if row["input"])
    record = load_datasets(["alpaca_en_demo"], LF_DIR, "sft", seed=None).records[index]
    assert record.messages == [
        {"role": "user", "content": rows[index]["instruction"] + "\n" + rows[index]["input"]},
        {"role": "assistant", "content": rows[index]["output"]},
    ]
    assert record.system is None and record.tools is None


def test_tool_turns_become_assistant_calls_and_tool_messages():
    rows = json.loads((LF_DIR / "glaive_toolcall_en_demo.json").read_text(encoding="utf-8"))
    records = load_datasets(["glaive_toolcall_en_demo"], LF_DIR, "sft", seed=None).records
    turns, record = rows[0]["conversations"], records[0]
    call = next(i for i, turn in enumerate(turns) if turn["from"] == "function_call")
    assert record.messages[call] == {"role": "assistant", "content": turns[call]["value"]}
    assert record.messages[call + 1] == {"role": "tool", "content": turns[call + 1]["value"]}
    assert json.loads(record.tools)[0]["name"] == "search_recipes"
    no_tools = next(i for i, row in enumerate(rows) if row["tools"] == "[]")
    assert records[no_tools].tools is None


def test_preference_pairs_keep_system_prompt_and_end_on_the_user():
    rows = json.loads((LF_DIR / "dpo_en_demo.json").read_text(encoding="utf-8"))
    records = load_datasets(["dpo_en_demo"], LF_DIR, "dpo", seed=None).records
    index = next(i for i, row in enumerate(rows) if row["conversations"][0]["from"] == "system")
    record = records[index]
    assert record.system == rows[index]["conversations"][0]["value"]
    assert record.prompt[-1]["role"] == "user" and all(m["role"] != "system" for m in record.prompt)
    assert (record.chosen, record.rejected) == (rows[index]["chosen"]["value"], rows[index]["rejected"]["value"])


def test_unknown_name_lists_registered_names():
    with pytest.raises(DatasetError, match="alpaca_en_demo") as error:
        resolve("no_such_dataset", LF_DIR)
    assert "no_such_dataset" in str(error.value)


@pytest.mark.parametrize(
    ("name", "stage", "message"),
    [
        ("dpo_en_demo", "sft", "use stage dpo or rm"),
        ("alpaca_en_demo", "dpo", "no chosen/rejected"),
        (str(LF_DIR / "wiki_demo.txt"), "sft", "plain text"),
    ],
)
def test_dataset_that_does_not_fit_the_stage_is_refused(name, stage, message):
    with pytest.raises(DatasetError, match=message):
        load_datasets([name], LF_DIR, stage)


def test_jsonl_bad_lines_are_skipped_with_their_line_numbers(tmp_path):
    good = {"instruction": "Say hi", "output": "Hi!"}
    lines = [good, "{broken", {"instruction": "No answer"}, good, "", {"instruction": "x", "output": 3}]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    result = load_datasets([str(path)], tmp_path, "sft", seed=None)
    assert len(result.records) == 2
    assert [(s.file, s.location) for s in result.skipped] == [(str(path), f"line {n}") for n in (2, 3, 6)]
    assert "not valid JSON" in result.skipped[0].reason
    assert "'output'" in result.skipped[1].reason
    assert "must be a string" in result.skipped[2].reason


def test_format_is_inferred_past_a_broken_first_line(tmp_path):
    pair = {"instruction": "Pick one", "system": "Be fair.", "chosen": "This one.", "rejected": "Whatever."}
    path = tmp_path / "pairs.jsonl"
    path.write_text("not json\n" + json.dumps(pair) + "\n")
    result = load_datasets([str(path)], tmp_path, "rm")
    assert result.records == [Preference([{"role": "user", "content": "Pick one"}], "This one.", "Whatever.", "Be fair.")]
    assert [s.location for s in result.skipped] == ["line 1"]


def test_json_array_bad_records_are_skipped_by_index(tmp_path):
    rows = [
        {"instruction": "a", "output": "b"},
        ["not", "an", "object"],
        {"instruction": "c", "history": "oops", "output": "d"},
    ]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows))
    result = load_datasets([str(path)], tmp_path, "sft", seed=None)
    assert len(result.records) == 1
    assert [s.location for s in result.skipped] == ["index 1", "index 2"]


def test_csv_rows_are_numbered_after_the_header(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('instruction,input,output\nAdd,"2, 3",5\nEmpty answer,,\nAsk,,Sure\nToo,many,fields,here\n')
    result = load_datasets([str(path)], tmp_path, "sft", seed=None)
    assert [r.messages[0]["content"] for r in result.records] == ["Add\n2, 3", "Ask"]
    assert [s.location for s in result.skipped] == ["row 2", "row 4"]


def test_parquet_openai_messages(tmp_path):
    import pyarrow
    import pyarrow.parquet

    good = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]
    bad = [{"role": "user", "content": "Hi"}, {"role": "robot", "content": "beep"}]
    path = tmp_path / "chat.parquet"
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist([{"messages": good}, {"messages": bad}]), path)
    result = load_datasets([str(path)], tmp_path, "sft", seed=None)
    assert result.records == [Conversation(good[1:], system="Be brief.")]
    assert [s.location for s in result.skipped] == ["index 1"] and "robot" in result.skipped[0].reason


def test_save_to_disk_folder_and_folder_of_files(tmp_path):
    import datasets

    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(5)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    assert len(load_datasets([str(tmp_path / "saved")], tmp_path, "sft").records) == 5
    (tmp_path / "files").mkdir()
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / "files" / name).write_text("\n".join(json.dumps(row) for row in rows))
    assert len(load_datasets([str(tmp_path / "files")], tmp_path, "sft").records) == 10


def test_datasets_yaml_registry_with_columns_and_tags(tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text(json.dumps({"dialog": [{"speaker": "me", "text": "Hi"}, {"speaker": "bot", "text": "Yo"}]}))
    (tmp_path / "datasets.yaml").write_text(
        "chats:\n  file_name: chats.jsonl\n  formatting: sharegpt\n  columns: {messages: dialog}\n"
        "  tags: {role_tag: speaker, content_tag: text, user_tag: me, assistant_tag: bot}\n"
        f"alpaca:\n  file_name: {LF_DIR / 'alpaca_en_demo.json'}\n"
    )
    records = load_datasets(["chats", "alpaca"], tmp_path, "sft", max_samples=3).records
    assert len(records) == 4
    assert Conversation([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]) in records


def test_max_samples_per_dataset_and_seeded_mixing():
    names = ["identity", "alpaca_en_demo"]
    first = load_datasets(names, LF_DIR, "sft", max_samples=10, seed=1).records
    assert len(first) == 20
    assert first == load_datasets(names, LF_DIR, "sft", max_samples=10, seed=1).records
    in_order = load_datasets(names, LF_DIR, "sft", max_samples=10, seed=None).records
    assert first != in_order and sorted(map(repr, first)) == sorted(map(repr, in_order))


def test_split_holds_out_a_seeded_fraction():
    records = list(range(100))
    train, val = split(records, 0.1, seed=3)
    assert len(val) == 10 and sorted(train + val) == records
    assert (train, val) == split(records, 0.1, seed=3)
    assert len(split(records[:5], 0.01, seed=3)[1]) == 1
    assert split(records, 0.0, seed=3) == (records, [])
    assert split(records, 30, seed=3)[1] == split(records, 30.0, seed=3)[1] and len(split(records, 30, seed=3)[1]) == 30
    with pytest.raises(DatasetError, match="val_size 100 holds out every one of the 100 records"):
        split(records, 100, seed=3)


def test_interleaving_stops_where_llama_factory_mix_strategy_says(tmp_path):
    path = tmp_path / "small.jsonl"
    rows = json.loads((LF_DIR / "alpaca_en_demo.json").read_text(encoding="utf-8"))[:3]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    identity = load_datasets(["identity"], LF_DIR, "sft", max_samples=6, seed=None).records
    small = load_datasets([str(path)], LF_DIR, "sft", seed=None).records

    def mix(strategy: str, probs: list[float] | None = None, seed: int = 1) -> list:
        return load_datasets(["identity", str(path)], LF_DIR, "sft", 6, seed, strategy, probs).records

    assert mix("interleave_under") == [record for pair in zip(identity, small) for record in pair]
    over = mix("interleave_over")
    assert over[0::2] == identity and over[1::2] == small * 2
    once = mix("interleave_once")
    assert len(once) == 9 and sorted(map(repr, once)) == sorted(map(repr, identity + small))
    assert mix("interleave_under", [1.0, 0.0]) == identity
    drawn = mix("interleave_over", [0.2, 0.8])
    assert drawn == mix("interleave_over", [0.2, 0.8]) and drawn != mix("interleave_over", [0.2, 0.8], seed=2)
    assert sum(record in small for record in drawn) > sum(record in identity for record in drawn)


def test_eval_dataset_or_a_count_of_held_out_examples():
    base = [f"dataset_dir={LF_DIR}", "dataset=identity"]
    records = load_records(load_config(None, [*base, "eval_dataset=alpaca_en_demo,alpaca_zh_demo", "max_samples=5"]))
    assert len(records.train) == 5
    assert records.eval == load_datasets(["alpaca_en_demo", "alpaca_zh_demo"], LF_DIR, "sft", max_samples=5).records
    records = load_records(load_config(None, [*base, "val_size=20"]))
    assert (len(records.train), len(records.eval)) == (71, 20)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["val_size=2.5"], "val_size: 2.5 is neither a fraction"),
        (["val_size=0.1", "eval_dataset=c"], "val_size: eval_dataset already gives the eval set"),
        (["interleave_probs=0.5,0.5"], "interleave_probs: only for mix_strategy interleave_"),
        (["mix_strategy=interleave_under", "interleave_probs=1"], "1 values for the 2 datasets of dataset"),
        (["mix_strategy=interleave_over", "interleave_probs=0.5,0.5", "eval_dataset=c"], "datasets of eval_dataset"),
        (["mix_strategy=interleave_once", "interleave_probs=0,0"], "chances must be 0 or more, and not all 0"),
        (["mix_strategy=shuffle"], "mix_strategy: Input should be 'concat', 'interleave_under'"),
    ],
)
def test_data_keys_that_contradict_each_other_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["dataset=a,b", *overrides])
    config = load_config(None, ["dataset=a, b", "mix_strategy=interleave_over", "interleave_probs=0.3,0.7"])
    assert (config.dataset, config.interleave_probs) == (["a", "b"], [0.3, 0.7])
