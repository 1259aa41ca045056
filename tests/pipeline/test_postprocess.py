"""Post-processors on well-formed and malformed model answers, and the chain that runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmkit.pipeline.postprocess import (
    POSTPROCESSORS,
    choice_letter,
    digits_list,
    first_digit,
    json_object,
    numbered_items,
    permutation,
    regex,
    run_chain,
    split_list,
    strip,
)
from llmkit.pipeline.steps import StepError, parse_step

SHOPBENCH = Path(os.environ["LLMKIT_SHARED_DATA"]) / "shopbench" / "sample.jsonl"


def shop_record(task_type: str) -> dict:
    with SHOPBENCH.open(encoding="utf-8") as lines:
        return next(record for record in map(json.loads, lines) if record["task_type"] == task_type)


def step(value, **options):
    return parse_step({value: options} if options else value, POSTPROCESSORS, "post-processor", 2)


def test_strip():
    assert strip("  Paris.\n\n", {}) == "Paris."
    assert strip("", {}) == ""


@pytest.mark.parametrize(("text", "expected"), [
    ("2", 2), ("The answer is 3. garbage bin", 3), ("Option 0", 0), ("no idea", None), ("", None),
])
def test_first_digit(text, expected):
    assert first_digit(text, {}) == expected


def test_digits_list_dedupes_keeps_order_range_and_k():
    assert digits_list("6, 9, 6, 15", {}, k=3) == [6, 9, 15]
    assert digits_list("20, 6, 0, 9, 16, 3, 1", {}, k=3, high=15) == [6, 9, 3]  # 20, 0 and 16 are out of range
    assert digits_list("1. roomy 2. compact", {}) == [1, 2]
    assert digits_list("none of them", {}, k=3) == []


def test_digits_list_takes_its_range_from_the_numbered_list_in_the_prompt():
    record = shop_record("retrieval")  # "numbered list of 15 potential review snippets"
    assert numbered_items(record["input_field"]) == 15
    assert digits_list("16, 15, 3, 15, 99, 7", record, k=3, items_field="input_field") == [15, 3, 7]


@pytest.mark.parametrize(("text", "expected"), [
    ("3, 1, 2, 5, 4", [3, 1, 2, 5, 4]),  # already a permutation
    ("3, 1, 3, 1, 2", [3, 1, 2, 4, 5]),  # repeats dropped, missing 4 and 5 appended in order
    ("2 > 7 > 5", [2, 5, 1, 3, 4]),  # 7 is out of range
    ("I cannot rank these.", [1, 2, 3, 4, 5]),  # nothing usable: the identity ranking
    ("", [1, 2, 3, 4, 5]),
])
def test_permutation_repairs_to_a_full_ranking(text, expected):
    assert permutation(text, {}, n=5) == expected


def test_permutation_reads_n_from_the_prompt_or_the_answer():
    record = shop_record("ranking")  # "numbered list of 5 products"
    assert permutation("Product 4 first, then 1", record, items_field="input_field") == [4, 1, 2, 3, 5]
    assert permutation("3, 1", {}) == [3, 1, 2]  # no n: the largest number named
    assert permutation("none", {}) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("B", "B"), ("(C) because it fits", "C"), ("D. the last one", "D"), ("A good choice is B.", "B"),
    ("The answer is (A)", "A"), ("B because it fits", "B"), ("answer: c", None), ("Neither", None), ("", None),
])
def test_choice_letter(text, expected):
    assert choice_letter(text, {}) == expected


def test_choice_letter_as_index_and_other_letters():
    assert choice_letter("(C)", {}, as_index=True) == 2
    assert choice_letter("Answer: E", {}, letters="ABCDE") == "E"


@pytest.mark.parametrize(("text", "expected"), [
    ('{"name": "shoe", "size": 42}', {"name": "shoe", "size": 42}),
    ('Here you go:\n```json\n{"a": [1, 2], "b": {"c": "}"}}\n```\nDone {"x": 1}', {"a": [1, 2], "b": {"c": "}"}}),
    ("{'name': 'O\\'Neill', 'ok': True, 'none': None}", {"name": "O'Neill", "ok": True, "none": None}),
    ('{"a": 1, "b": [1, 2,], }', {"a": 1, "b": [1, 2]}),  # trailing commas
    ('{"a": "say \\"hi\\"", "b": "it\'s"}', {"a": 'say "hi"', "b": "it's"}),  # quotes inside strings kept
    ('{"name": "red shoe", "tags": ["a", "b', {"name": "red shoe", "tags": ["a", "b"]}),  # cut off by max_tokens
    ('{"a": {"b": 1}, "c":', {"a": {"b": 1}, "c": None}),  # cut off after a key
    ('{"a": 1,', {"a": 1}),
    ('{"text": "ends with a backslash \\', {"text": "ends with a backslash "}),
])
def test_json_object_extracts_and_repairs(text, expected):
    assert json_object(text, {}) == expected


@pytest.mark.parametrize("text", ["no json here", "[1, 2, 3]", "{not: json at all", '{"a"', ""])
def test_json_object_gives_none_when_there_is_no_object_to_repair(text):
    assert json_object(text, {}) is None


def test_regex_groups_and_all():
    assert regex("Price: 42 EUR", {}, pattern=r"(\d+) EUR") == "42"
    assert regex("Price: 42 EUR", {}, pattern=r"\d+ EUR") == "42 EUR"
    assert regex("a=1 b=2", {}, pattern=r"(?P<key>\w)=(?P<value>\d)", group="value") == "1"
    assert regex("a=1 b=2", {}, pattern=r"\w=(\d)", all=True) == ["1", "2"]
    assert regex("nothing", {}, pattern=r"\d") is None


def test_split_list():
    assert split_list("tablette, asus", {}) == ["tablette", "asus"]
    assert split_list("- mens\n- Mens\n- mens\n\n'women',", {}) == ["mens", "Mens", "women"]
    assert split_list("a; b", {}, separator=";") == ["a", "b"]
    assert split_list("  ", {}) == []


def test_the_chain_passes_each_output_on_and_stops_at_none():
    steps = [step("regex", pattern=r"Answer: (.*)"), step("strip"), step("first_digit")]
    assert run_chain(steps, "Answer:  option 2 \n", {}) == (
        2, [{"step": "regex", "output": " option 2 "}, {"step": "strip", "output": "option 2"},
            {"step": "first_digit", "output": 2}]
    )
    assert run_chain(steps, "I do not know", {}) == (None, [{"step": "regex", "output": None}])
    assert run_chain([], "raw", {}) == ("raw", [])


def test_a_user_post_processor_by_file_path_gets_its_options(tmp_path):
    (tmp_path / "mine.py").write_text("def upper(text, record, *, suffix=''):\n    return text.upper() + suffix\n")
    user = parse_step({"mine.py:upper": {"suffix": "!"}}, POSTPROCESSORS, "post-processor", 2, tmp_path)
    assert run_chain([user], "ok", {}) == ("OK!", [{"step": "mine.py:upper", "output": "OK!"}])


def test_a_failing_step_names_itself():
    (failing,) = [step("regex", pattern="(")]  # an invalid pattern fails when it runs
    with pytest.raises(StepError, match=r"post-processor regex failed: error: missing \)"):
        run_chain([failing], "text", {})


@pytest.mark.parametrize(("value", "message"), [
    ("first_digits", "unknown post-processor 'first_digits': use one of strip, first_digit"),
    ({"digits_list": {"kk": 3}}, "digits_list: unknown option 'kk' (its options: k, low, high"),
    ({"regex": {}}, "regex: missing a required argument: 'pattern'"),
    ({"strip": 3}, "write a post-processor as a name, or as one `name: {option: value}` mapping"),
    ("no_such_module_xyz:fn", "cannot import"),
])
def test_bad_steps_are_refused_when_the_pipeline_loads(value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_step(value, POSTPROCESSORS, "post-processor", 2)
