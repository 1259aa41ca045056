"""Registry entries read with the `datasets` library: hub datasets from a Hugging Face cache laid out as `hf download`
leaves it (subset, split, folder), num_samples, ONLINE / REMOTE: dataset dirs, script_url folders, and the entries
refused by name."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from llmkit.train.datasets import Conversation, DatasetError, Text, load_dataset, load_datasets, registry, resolve

LF_DIR = Path(os.environ["LLMKIT_SHARED_DATA"]) / "llama-factory"
ALPACA_EN = json.loads((LF_DIR / "alpaca_en_demo.json").read_text(encoding="utf-8"))
ALPACA_ZH = json.loads((LF_DIR / "alpaca_zh_demo.json").read_text(encoding="utf-8"))
README = """---
configs:
- config_name: en
  data_files:
  - {split: train, path: en/train.jsonl}
  - {split: validation, path: en/validation.jsonl}
- config_name: zh
  data_files:
  - {split: train, path: zh/train.jsonl}
---
"""


def jsonl(rows: list[dict]) -> bytes:
    return "\n".join(json.dumps(row, ensure_ascii=False) for row in rows).encode()


def parquet(rows: list[dict], path: Path) -> Path:
    import pyarrow
    import pyarrow.parquet

    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    return path


@pytest.fixture
def hub(hf_cache, tmp_path, monkeypatch):
    """A cache holding the dataset acme/demo (subsets en and zh: LLaMA-Factory's alpaca demos; a pt/ folder of c4
    documents), with `datasets`' own cache in tmp too."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    files = {
        "README.md": README.encode(),
        "en/train.jsonl": jsonl(ALPACA_EN[:20]),
        "en/validation.jsonl": jsonl(ALPACA_EN[20:25]),
        "zh/train.jsonl": jsonl(ALPACA_ZH[:7]),
        "pt/c4_demo.jsonl": LF_DIR / "c4_demo.jsonl",
    }
    hf_cache.add("acme/demo", files, repo_type="dataset")
    return hf_cache


def registry_dir(tmp_path: Path, entries: dict) -> Path:
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    (folder / "dataset_info.json").write_text(json.dumps(entries))
    return folder


def file_records(rows: list[dict], tmp_path: Path) -> list:
    """The records the same rows give when read from a plain file."""
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows, ensure_ascii=False))
    return load_datasets([str(path)], tmp_path, "sft", seed=None).records


def test_subset_split_and_folder_of_a_cached_hub_dataset(hub, tmp_path):
    data = registry_dir(tmp_path, {
        "demo_en": {"hf_hub_url": "acme/demo", "subset": "en"},
        "demo_en_eval": {"hf_hub_url": "acme/demo", "subset": "en", "split": "validation"},
        "demo_zh": {"hf_hub_url": "acme/demo", "ms_hub_url": "acme/demo", "subset": "zh"},
        "demo_c4": {"hf_hub_url": "acme/demo", "folder": "pt", "columns": {"prompt": "text"}},
    })
    assert load_datasets(["demo_en"], data, "sft", seed=None).records == file_records(ALPACA_EN[:20], tmp_path)
    assert load_datasets(["demo_en_eval"], data, "sft", seed=None).records == file_records(ALPACA_EN[20:25], tmp_path)
    assert load_datasets(["demo_zh"], data, "sft", seed=None).records == file_records(ALPACA_ZH[:7], tmp_path)
    documents = load_datasets(["demo_c4"], data, "pt", seed=None).records
    assert documents == load_datasets(["c4_demo"], LF_DIR, "pt", seed=None).records
    assert len(documents) == 300 and isinstance(documents[0], Text)


def test_a_dataset_missing_from_the_cache_says_where_it_looked_and_how_to_fetch_it(hub, tmp_path):
    data = registry_dir(tmp_path, {"starcoder": {"hf_hub_url": "acme/absent", "folder": "python"}})
    with pytest.raises(DatasetError) as error:
        load_datasets(["starcoder"], data, "pt")
    message = str(error.value)
    assert "'starcoder'" in message and str(hub.path) in message
    assert "`llmkit download acme/absent --repo-type dataset --include 'python/*'`" in message


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"subset": "fr"}, r"'demo'.*BuilderConfig 'fr' not found. Available: \['en', 'zh'\]"),
        ({"subset": "en", "split": "test"}, r"'demo'.*Unknown split \"test\""),
        ({}, "Config name is missing"),
    ],
)
def test_a_subset_or_split_the_dataset_lacks_is_named(hub, tmp_path, entry, message):
    data = registry_dir(tmp_path, {"demo": {"hf_hub_url": "acme/demo", **entry}})
    with pytest.raises(DatasetError, match=message):
        load_datasets(["demo"], data, "sft")


def test_num_samples_draws_each_row_once_before_repeating_any(hub, tmp_path):
    data = registry_dir(tmp_path, {
        "few": {"hf_hub_url": "acme/demo", "subset": "en", "num_samples": 5},
        "many": {"hf_hub_url": "acme/demo", "subset": "en", "num_samples": 50},
        "identity": {"file_name": str(LF_DIR / "identity.json"), "num_samples": 10},
    })
    every = file_records(ALPACA_EN[:20], tmp_path)
    few = load_dataset(resolve("few", data), "sft", seed=1).records
    assert len(few) == len(set(map(repr, few))) == 5 and all(record in every for record in few)
    assert few != load_dataset(resolve("few", data), "sft", seed=2).records
    many = load_dataset(resolve("many", data), "sft", seed=1).records
    assert len(many) == 50 and sorted(map(repr, many[:20])) == sorted(map(repr, every))
    assert many == load_dataset(resolve("many", data), "sft", seed=1).records
    assert len(load_dataset(resolve("identity", data), "sft", max_samples=4).records) == 4


def test_online_dataset_dir_takes_hub_ids_and_infers_the_format(hf_cache, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    chats = [{"messages": [{"role": "user", "content": f"Hi {i}"}, {"role": "assistant", "content": "Hello"}]}
             for i in range(3)]
    shard = parquet(chats, tmp_path / "chats.parquet")
    hf_cache.add("acme/chats", {"data/train-00000-of-00001.parquet": shard}, repo_type="dataset")
    records = load_datasets(["acme/chats"], "ONLINE", "sft", seed=None).records
    assert records[2] == Conversation(chats[2]["messages"])


def test_remote_dataset_dir_reads_the_registry_of_a_cached_dataset(hf_cache):
    registry_file = {"identity": {"file_name": "identity.json"}}
    hf_cache.add("acme/registry", {"dataset_info.json": json.dumps(registry_file).encode(),
                                   "identity.json": LF_DIR / "identity.json"}, repo_type="dataset")
    assert len(load_datasets(["identity"], "REMOTE:acme/registry", "sft").records) == 91
    with pytest.raises(DatasetError, match="acme/other"):
        registry("REMOTE:acme/other")


def test_script_url_is_a_local_dataset_folder(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    data = registry_dir(tmp_path, {"local": {"script_url": "local_set", "split": "validation"}})
    (data / "local_set").mkdir()
    (data / "local_set" / "validation.jsonl").write_bytes(jsonl(ALPACA_EN[:3]))
    assert load_datasets(["local"], data, "sft", seed=None).records == file_records(ALPACA_EN[:3], tmp_path)


@pytest.mark.parametrize(
    ("entry", "environment", "message"),
    [
        ({"ms_hub_url": "acme/demo"}, {}, "ModelScope dataset acme/demo.*pip install modelscope"),
        ({"hf_hub_url": "acme/demo", "ms_hub_url": "acme/demo"}, {"USE_MODELSCOPE_HUB": "1"}, "pip install modelscope"),
        ({"om_hub_url": "acme/demo"}, {}, "om_hub_url acme/demo is on the Modelers"),
        ({"hf_hub_url": "acme/x", "om_hub_url": "acme/demo"}, {"USE_OPENMIND_HUB": "1"}, "om_hub_url"),
        ({"cloud_file_name": "s3://bucket/data.json"}, {}, "cloud_file_name s3://bucket/data.json.*file_name"),
    ],
)
def test_hub_entries_llmkit_cannot_read_are_refused_by_name(tmp_path, monkeypatch, entry, environment, message):
    if "modelscope" in message and importlib.util.find_spec("modelscope"):
        pytest.skip("the modelscope client is installed here, so the entry is read from ModelScope")
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    data = registry_dir(tmp_path, {"remote": entry})
    with pytest.raises(DatasetError, match=message):
        load_datasets(["remote"], data, "sft")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"file_name": "a.json", "hf_hub_uri": "acme/demo"}, r"remote.hf_hub_uri is not a registry key \(did you mean"),
        ({"file_name": "a.json", "subset": "en"}, "a file_name entry is read whole"),
        ({"hf_hub_url": "acme/demo", "num_samples": 0}, "num_samples is 0"),
        ({"formatting": "sharegpt"}, "remote names no data; give it a file_name"),
    ],
)
def test_registry_entries_with_keys_that_cannot_work_are_refused(tmp_path, entry, message):
    with pytest.raises(DatasetError, match=message):
        registry(registry_dir(tmp_path, {"remote": entry}))
