"""Entity extraction and word segmentation over a user lexicon, in Chinese, English and both at once."""

from __future__ import annotations

import json
import subprocess
import sys

import jieba
import pytest

from llmkit.errors import LLMKitError
from llmkit.segment import Lexicon, LexiconEntry, extract_entities, find_entities, segment

SYMBOLS = [LexiconEntry("指挥所", "symbol"), LexiconEntry("营指挥所", "symbol", "battalion command post")]
CITIES = [
    LexiconEntry("York", "city"),
    LexiconEntry("New York", "city", "纽约", id="5128581"),
    LexiconEntry("北京", "city", id="1816670"),
    LexiconEntry("Beijing", "city", "北京", id="1816670"),
]


def found(text: str, lexicon: Lexicon) -> list[tuple[str, str]]:
    return [(entity.text, entity.canonical) for entity in extract_entities(text, lexicon)]


def test_the_longest_term_wins():
    entities = extract_entities("一营指挥所与二连指挥所", Lexicon(SYMBOLS))
    assert [(e.text, e.start, e.end, e.type) for e in entities] == [
        ("营指挥所", 1, 5, "symbol"),
        ("指挥所", 8, 11, "symbol"),
    ]
    assert entities[0].canonical == "battalion command post" and entities[1].canonical == "指挥所"


def test_english_matches_whole_words_in_any_case():
    lexicon = Lexicon(CITIES)
    assert found("Flights to NEW YORK, then york.", lexicon) == [("NEW YORK", "纽约"), ("york", "York")]
    assert found("Yorkshire, New Yorker, Yorks and NewYork", lexicon) == []
    assert found("York's minster; (York)", lexicon) == [("York", "York"), ("York", "York")]


def test_overlapping_candidates_are_taken_left_to_right_without_overlap():
    lexicon = Lexicon([LexiconEntry(term) for term in ("集结", "集结地域", "地域", "域外", "外军")])
    # 集结地域 (the longest term at 0) is taken first; 域外 overlaps it and is skipped; 外军 starts where it ends.
    assert [e.text for e in extract_entities("集结地域外军", lexicon)] == ["集结地域", "外军"]
    assert [e.text for e in extract_entities("地域外军", lexicon)] == ["地域", "外军"]


def test_mixed_chinese_and_english_text():
    lexicon = Lexicon(CITIES + SYMBOLS)
    text = "把营指挥所从Beijing迁到New York附近，York不变"
    entities = extract_entities(text, lexicon)
    assert [(e.text, e.canonical, e.id) for e in entities] == [
        ("营指挥所", "battalion command post", None),
        ("Beijing", "北京", "1816670"),
        ("New York", "纽约", "5128581"),
        ("York", "York", None),
    ]
    assert all(text[e.start : e.end] == e.text for e in entities)


def test_a_chinese_term_is_found_next_to_latin_letters_and_digits():
    assert found("A营指挥所2", Lexicon(SYMBOLS)) == [("营指挥所", "battalion command post")]


def test_segment_keeps_lexicon_terms_whole():
    text = "一营指挥所设在New York以北"
    assert "营指挥所" not in segment(text)  # jieba alone cuts 一营 / 指挥所
    assert segment(text, Lexicon(CITIES + SYMBOLS)) == ["一", "营指挥所", "设在", "New York", "以北"]


def test_segment_leaves_jiebas_global_dictionary_alone():
    segment("营指挥所", Lexicon(SYMBOLS))
    assert "营指挥所" not in jieba.lcut("一营指挥所")


def test_segment_is_quiet_on_stderr():
    probe = "from llmkit.segment import segment; print(segment('我们在北京'))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "['我们', '在', '北京']" and result.stderr == ""


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("lexicon.csv", "term,type,canonical,id,grid\n营指挥所,symbol,,,\nBeijing,city,北京,1816670,50SMK\n"),
        ("lexicon.tsv", 'term\ttype\tcanonical\tid\tgrid\n营指挥所\tsymbol\t\t\t\nBeijing\tcity\t北京\t1816670\t50SMK\n'),
        (
            "lexicon.jsonl",
            '{"term": "营指挥所", "type": "symbol"}\n\n'
            '{"term": "Beijing", "type": "city", "canonical": "北京", "id": 1816670, "grid": "50SMK"}\n',
        ),
        ("lexicon.txt", "营指挥所\tsymbol\nBeijing\tcity\n\n"),
    ],
)
def test_lexicon_files(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    entities = extract_entities("Beijing的营指挥所", Lexicon.from_file(path))
    assert [(e.text, e.type) for e in entities] == [("Beijing", "city"), ("营指挥所", "symbol")]
    if name != "lexicon.txt":
        assert (entities[0].canonical, entities[0].id, entities[0].extra) == ("北京", "1816670", {"grid": "50SMK"})


def test_find_entities_transform(tmp_path):
    path = tmp_path / "symbols.jsonl"
    path.write_text("\n".join(json.dumps({"term": e.term, "type": e.type}) for e in SYMBOLS) + "\n", encoding="utf-8")
    record = {"id": 7, "input": "一营指挥所"}
    result = find_entities(record, lexicon=str(path))
    assert result == {**record, "entities": [
        {"text": "营指挥所", "start": 1, "end": 5, "type": "symbol", "canonical": "营指挥所", "id": None, "extra": {}}
    ]}
    assert record == {"id": 7, "input": "一营指挥所"}  # the input record is not changed
    path.unlink()  # the lexicon was cached: a second record does not read the file again
    assert find_entities({"question": "指挥所"}, lexicon=str(path), field="question", into="found")["found"][0]["text"] == "指挥所"
    with pytest.raises(LLMKitError, match="no text field 'input'"):
        find_entities({"question": "指挥所"}, lexicon=str(path))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "cannot read"),
        ("lexicon.xlsx", "", "a lexicon is a .csv, .tsv, .jsonl, .json, .txt file"),
        ("lexicon.csv", "name,type\n北京,city\n", "row 1: no 'term' \\(its fields: name, type\\)"),
        ("lexicon.jsonl", '{"term": "北京"}\n{"term": "北京\n', "line 2: not valid JSON"),
        ("lexicon.jsonl", '["北京"]\n', "line 1: expected an object with a 'term', got list"),
        ("lexicon.txt", "York\nyork\n", "line 2: 'york' is listed twice"),
        ("lexicon.txt", "\n\n", "holds no terms"),
        ("lexicon.csv", b"term\n\xff\xfe\n", "not UTF-8"),
    ],
)
def test_a_bad_lexicon_file_is_one_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(LLMKitError, match=message):
        Lexicon.from_file(path)
