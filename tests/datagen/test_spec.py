"""Generation specs: the example loads with its paths resolved; a bad one is one `SpecError` naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmkit.datagen.fields import draw_fields
from llmkit.datagen.spec import SpecError, load_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples/data/spec.yaml"
MINIMAL = "count: 2\nprompt:\n  template: 'Say hi as JSON.'\n"


def write_spec(folder: Path, text: str) -> Path:
    path = folder / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_spec_loads_with_paths_relative_to_it():
    spec = load_spec(EXAMPLE)
    assert spec.count == 40 and spec.concurrency == 4 and spec.endpoint.base_url is None
    assert spec.output == EXAMPLE.parent / "landmarks.jsonl"
    assert spec.failed_output == EXAMPLE.parent / "landmarks.failed.jsonl"
    assert set(spec.fields) == {"id", "landmark", "style", "visit_date"}
    assert spec.json_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_prompt_shows_the_fields_and_examples_with_chinese_as_written():
    spec = load_spec(EXAMPLE)
    fields = draw_fields(spec.fields, spec.seed)
    system, user = spec.prompt.render(fields)
    assert system["role"] == "system" and user["role"] == "user"
    landmark = fields["landmark"]
    assert f"Landmark: {landmark['name_en']} ({landmark['name_zh']}), {landmark['city']}" in user["content"]
    assert f"Record id: {fields['id']}" in user["content"]
    assert '"question_zh": "悉尼歌剧院晚上可以参观吗？"' in user["content"] and "\\u" not in user["content"]


def test_overrides_replace_the_file_values(tmp_path):
    spec = load_spec(EXAMPLE, {"count": 3, "output": tmp_path / "out.jsonl", "concurrency": None})
    assert (spec.count, spec.output, spec.concurrency) == (3, tmp_path / "out.jsonl", 4)


def test_defaults_json_object_mode_and_an_output_beside_the_spec(tmp_path):
    spec = load_spec(write_spec(tmp_path, MINIMAL))
    assert spec.json_schema is None and spec.fields == {} and spec.max_retries == 3
    assert spec.output == tmp_path / "generated.jsonl"


def test_an_inline_schema_and_a_template_file(tmp_path):
    (tmp_path / "ask.j2").write_text("Describe {{ city }}.", encoding="utf-8")
    text = ("count: 1\nprompt: {template_file: ask.j2}\nfields: {city: {type: choice, values: [成都]}}\n"
            "schema: {type: object, required: [name]}\n")
    spec = load_spec(write_spec(tmp_path, text))
    assert spec.json_schema == {"type": "object", "required": ["name"]}
    assert spec.prompt.render({"city": "成都"}) == [{"role": "user", "content": "Describe 成都."}]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("count: 1\nprompt: {tmplate: hi}\n",
         "prompt.tmplate: unknown key (allowed: system, template, template_file, examples)"),
        (MINIMAL + "temprature: 0.5\n", "temprature: unknown key (allowed: endpoint, prompt, count, fields, schema"),
        ("count: many\nprompt: {template: hi}\n", "count: Input should be a valid integer"),
        ("count: 0\nprompt: {template: hi}\n", "count: Input should be greater than or equal to 1"),
        ("prompt: {template: hi}\n", "count: required"),
        (MINIMAL + "fields: {n: {type: integer, min: 3, max: 1}}\n", "fields.n: min (3) must not exceed max (1)"),
        (MINIMAL + "fields: {n: {type: dice}}\n", "fields.n.type: must be one of uuid, choice, integer, number, date, csv"),
        (MINIMAL + "fields: {n: {type: integer, min: 1, max: 2, step: 1}}\n",
         "fields.n.step: unknown key (allowed: type, min, max)"),
        (MINIMAL + "sampling: {temperature: 3}\n", "sampling.temperature: Input should be less than or equal to 2"),
        (MINIMAL + "endpoint: {url: http://x}\n", "endpoint.url: unknown key (allowed: base_url, model, api_key_env"),
        ("count: 1\nprompt: {template: hi, template_file: a.j2}\n", "prompt: give either template"),
        ("count: 1\nprompt: {template: '{{ city '}\n", "prompt: Jinja syntax error on line 1"),
        (MINIMAL + "schema: {type: 12}\n", "schema: not a valid JSON schema"),
        (MINIMAL + "schema: missing.json\n", "schema: cannot read"),
        (MINIMAL + "fields: {examples: {type: uuid}}\n", "fields: 'examples' is taken by prompt.examples"),
    ],
)
def test_a_malformed_spec_is_one_line_naming_the_key(tmp_path, text, expected):
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(tmp_path, text))
    message = str(caught.value)
    assert expected in message and "\n" not in message


def test_a_missing_template_file_names_the_file(tmp_path):
    with pytest.raises(SpecError, match=r"prompt: cannot read .*nowhere\.j2: No such file or directory"):
        load_spec(write_spec(tmp_path, "count: 1\nprompt: {template_file: nowhere.j2}\n"))


def test_unreadable_yaml_and_files_are_spec_errors(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "absent.yaml")
    with pytest.raises(SpecError, match=r"is not valid YAML: .*\(line 2, column 1\)"):
        load_spec(write_spec(tmp_path, "count: [1\n"))
    with pytest.raises(SpecError, match="must be a mapping of keys to values, not list"):
        load_spec(write_spec(tmp_path, "- count\n"))


def test_a_name_the_template_uses_but_no_field_defines_is_a_spec_error(tmp_path):
    spec = load_spec(write_spec(tmp_path, "count: 1\nprompt: {template: 'About {{ city }}'}\n"))
    with pytest.raises(SpecError, match="'city' is undefined"):
        spec.prompt.render({})
