"""`datagen.stats`: field coverage, token lengths counted by the model's tokenizer, a histogram and a report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmkit.datagen.stats import coverage, dataset_stats, write_report
from llmkit.jsonl import write_jsonl

DATA = Path(os.environ["LLMKIT_SHARED_DATA"]) / "llama-factory"


@pytest.fixture(scope="module")
def tokenizer():
    from llmkit.hub import resolve
    from llmkit.models.loading import load_tokenizer

    return load_tokenizer(resolve("default"))


def test_coverage_counts_filled_fields_by_dotted_path_without_meta():
    records = [
        {"question": "长城在哪里？", "answer": {"city": "北京", "note": ""}, "_meta": {"attempt": 1}},
        {"question": "", "answer": {"city": None}, "tags": []},
        {"question": "Where is K2?", "answer": {"city": "—", "height": 8611}, "tags": ["mountain"]},
        {"question": "Where is Lhasa?", "answer": {}},
    ]
    assert coverage(records) == {
        "question": 0.75,
        "answer.city": 0.5,
        "answer.note": 0.0,
        "tags": 0.25,
        "answer.height": 0.25,
        "answer": 0.0,  # present but empty in the last record only
    }


def test_token_lengths_are_the_tokenizers_and_the_histogram_is_drawn(tokenizer, tmp_path):
    records = json.loads((DATA / "alpaca_zh_demo.json").read_text(encoding="utf-8"))[:10]
    records += json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))[:10]
    write_jsonl(tmp_path / "data.jsonl", [{**record, "_meta": {"model": "default"}} for record in records])
    stats = dataset_stats([tmp_path / "data.jsonl"], tokenizer, histogram=tmp_path / "lengths.png")

    texts = ["\n".join((r["instruction"], r["input"], r["output"])) for r in records]
    lengths = [len(tokenizer(text, add_special_tokens=False).input_ids) for text in texts]
    assert (stats.tokens.min, stats.tokens.max) == (min(lengths), max(lengths))
    assert stats.tokens.mean == pytest.approx(sum(lengths) / len(lengths))
    assert stats.records == 20 and stats.coverage["instruction"] == 1.0 and "_meta" not in stats.coverage
    assert (tmp_path / "lengths.png").read_bytes().startswith(b"\x89PNG")

    only_questions = dataset_stats([tmp_path / "data.jsonl"], tokenizer, fields=["instruction"])
    assert only_questions.tokens.max < stats.tokens.max

    write_report(stats, tmp_path / "report" / "stats.md")
    markdown = (tmp_path / "report" / "stats.md").read_text(encoding="utf-8")
    assert "| `instruction` | 100.0% |" in markdown and "](../lengths.png)" in markdown
    write_report(stats, tmp_path / "stats.json")
    assert json.loads((tmp_path / "stats.json").read_text(encoding="utf-8"))["tokens"]["max"] == max(lengths)
