"""Input transforms and message templates."""

from __future__ import annotations

import pytest

from llmkit.pipeline.steps import StepError, parse_step
from llmkit.pipeline.transforms import (
    TRANSFORMS,
    apply_transforms,
    compile_template,
    render,
    split,
)

SHOP_PROMPT = "Instructions: Tell me what this product category is about\nInput: Toggle Switch\nOutput:"


def transform(value, base_dir=None):
    return parse_step(value, TRANSFORMS, "transform", 1, *([base_dir] if base_dir else []))


def test_split_at_a_separator_or_a_pattern():
    record = {"prompt": SHOP_PROMPT, "id": 1}
    assert split(record, field="prompt", separator="\nInput:") == {
        **record, "instruction": "Instructions: Tell me what this product category is about",
        "input": "Toggle Switch\nOutput:",
    }
    assert split(record, field="prompt", pattern=r"\n(?:Input|Query):", into=["task", "text"])["text"] == (
        "Toggle Switch\nOutput:")


def test_split_without_the_separator_makes_the_whole_text_the_input():
    assert split({"prompt": " just a question "}, field="prompt", separator="\nInput:") == {
        "prompt": " just a question ", "instruction": "", "input": "just a question"}


@pytest.mark.parametrize(("options", "message"), [
    ({"field": "prompt"}, "either separator .* or pattern"),
    ({"field": "prompt", "separator": "x", "pattern": "y"}, "either separator .* or pattern"),
    ({"field": "missing", "separator": "x"}, "the record has no field 'missing'"),
    ({"field": "prompt", "separator": "x", "into": ["one"]}, "into names the two fields"),
])
def test_split_misuse_fails_the_record_with_a_reason(options, message):
    with pytest.raises(StepError, match=f"transform split failed: .*{message}"):
        apply_transforms([transform({"split": options})], {"prompt": "text"})


def test_user_transforms_run_in_order_and_must_return_the_record(tmp_path):
    (tmp_path / "prep.py").write_text(
        "def shout(record, *, field):\n    return {**record, field: record[field].upper()}\n\n"
        "def broken(record):\n    return None\n"
    )
    steps = [transform({"split": {"field": "prompt", "separator": "\nInput:"}}),
             transform({"prep.py:shout": {"field": "input"}}, tmp_path)]
    assert apply_transforms(steps, {"prompt": SHOP_PROMPT})["input"] == "TOGGLE SWITCH\nOUTPUT:"
    with pytest.raises(StepError, match="transform prep.py:broken returned NoneType, not the record"):
        apply_transforms([transform("prep.py:broken", tmp_path)], {"prompt": "x"})


def test_templates_see_the_fields_and_the_record_and_refuse_missing_names():
    template = compile_template("{{ instruction }} | {{ record['odd key'] }} | {{ items | join(', ') }}")
    assert render(template, {"instruction": "Pick", "odd key": 1, "items": ["a", "b"]}, "user") == "Pick | 1 | a, b"
    with pytest.raises(StepError, match="user template: 'instruction' is undefined .*record fields: items"):
        render(template, {"items": []}, "user")


def test_template_syntax_errors_and_non_text():
    with pytest.raises(ValueError, match="Jinja syntax error on line 1"):
        compile_template("{% if %}")
    with pytest.raises(ValueError, match="a template is text"):
        compile_template(3)
