"""LLaMA-Factory's chat templates as Hugging Face Jinja: a `TemplateSpec` (its slots, copied from LLaMA-Factory's
`register_template`) becomes one self-contained template that renders the string LLaMA-Factory trains on.

The Jinja follows LLaMA-Factory's `Template._encode`: prefix, then the system slot holding the system prompt (or the
default one) with the tool descriptions appended, then each message through its role's slot. An assistant turn with
`tool_calls` goes through the function slot, the calls written in the template's tool format; a `tool` message
through the observation slot. The assistant header is part of the user slot, as in LLaMA-Factory, so the
generation prompt adds nothing (save a reasoning template's empty thought when `enable_thinking` is false).
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass

CONTENT = "{{content}}"
# LLaMA-Factory writes {"bos_token"} / {"eos_token"} in slots; here they are placeholders like the content's.
BOS, EOS = "{{bos_token}}", "{{eos_token}}"
THOUGHT_OPEN, THOUGHT_CLOSE = "<think>\n", "\n</think>\n\n"
_SLOT_FIELDS = re.compile(r"(\{\{content\}\}|\{\{bos_token\}\}|\{\{eos_token\}\})")
_SLOT_NAMES = {CONTENT: "content", BOS: "bos", EOS: "eos"}


@dataclass(frozen=True)
class TemplateSpec:
    """One LLaMA-Factory template: its slots (with `{{content}}`, `{{bos_token}}`, `{{eos_token}}`), default
    system prompt, stop words and behaviours, under LLaMA-Factory's names and defaults."""

    name: str
    user: str = CONTENT
    assistant: str | None = None  # default: content + EOS (content alone with efficient_eos)
    system: str = CONTENT
    function: str | None = None  # default: the assistant slot
    observation: str | None = None  # default: the user slot
    prefix: str = ""
    tool_format: str = "default"
    default_system: str = ""
    stop_words: tuple[str, ...] = ()
    efficient_eos: bool = False  # no EOS in the slots: LLaMA-Factory appends one after the conversation
    replace_eos: bool = False  # the first stop word becomes the tokenizer's EOS
    system_in_first_user: bool = False  # LLaMA-Factory's Llama2Template
    reasoning: bool = False  # LLaMA-Factory's ReasoningTemplate: an empty thought where an answer has none

    @property
    def assistant_slot(self) -> str:
        return self.assistant or (CONTENT if self.efficient_eos else CONTENT + EOS)


# Tool formats of LLaMA-Factory's tool_utils.py: prompts verbatim (Python format strings), and Jinja that sets
# `tool_text` from `tools` and a `render_calls(calls)` macro writing an assistant turn's calls.
DEFAULT_TOOL_PROMPT = (
    "You have access to the following tools:\n{tool_text}"
    "Use the following format if using a tool:\n"
    "```\n"
    "Action: tool name (one of [{tool_names}])\n"
    "Action Input: the input to the tool, in a JSON format representing the kwargs "
    """(e.g. ```{{"input": "hello world", "num_beams": 5}}```)\n"""
    "```\n"
)
GLM4_TOOL_PROMPT = (
    "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱 AI 公司训练的语言模型 GLM-4 模型开发的，"
    "你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具{tool_text}"
)
LLAMA3_TOOL_PROMPT = (
    "Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n"
    "You have access to the following functions. To call a function, please respond with JSON for a function call. "
    """Respond in the format {{"name": function name, "parameters": dictionary of argument name and its value}}. """
    "Do not use variables.\n\n{tool_text}"
)
QWEN_TOOL_PROMPT = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tool_text}"
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    """<tool_call></tool_call> XML tags:\n<tool_call>\n{{"name": <function-name>, """
    """"arguments": <args-json-object>}}\n</tool_call>"""
)

# A call's arguments as JSON text: a mapping through tojson (json.dumps, as LLaMA-Factory), a string as it is.
_ARGUMENTS = "(call.arguments if call.arguments is string else call.arguments | tojson)"
_CALL = "{%- set call = call.function if call.function is defined else call -%}"
_WRAPPED = "{%- set tool = tool if tool.get('type') == 'function' else {'type': 'function', 'function': tool} -%}"


def _concat(format_string: str, **expressions: str) -> str:
    """A Jinja expression joining a Python format string's text with Jinja `expressions` in place of its fields."""
    parts, text = [], ""
    for literal, field, _, _ in string.Formatter().parse(format_string):
        text += literal
        if field is not None:
            parts += [json.dumps(text, ensure_ascii=False)] * bool(text) + [f"({expressions[field]})"]
            text = ""
    return " ~ ".join(parts + [json.dumps(text, ensure_ascii=False)] * bool(text)) or "''"


@dataclass(frozen=True)
class ToolFormat:
    """One of LLaMA-Factory's tool formats in Jinja: `describe` sets `tool_text` from `tools` (for the system slot),
    `calls` is the body of the `render_calls(calls)` macro that writes an assistant turn's calls."""

    describe: tuple[str, ...]
    calls: tuple[str, ...]


TOOL_FORMATS: dict[str, ToolFormat] = {
    "default": ToolFormat(
        describe=(
            "{%- set ns = namespace(text='', names=[]) -%}",
            "{%- for tool in tools -%}",
            "{%- set tool = tool.get('function', '') if tool.get('type') == 'function' else tool -%}",
            "{%- set args = namespace(text='') -%}",
            "{%- for name, param in tool['parameters']['properties'].items() -%}",
            "{%- set required = ', required' if name in tool['parameters'].get('required', []) else '' -%}",
            "{%- set enum = ', should be one of [' ~ param['enum'] | join(', ') ~ ']' if param.get('enum') else '' -%}",
            (
                "{%- set items = ', where each item should be ' ~ param['items'].get('type', '') "
                "if param.get('items') else '' -%}"
            ),
            (
                "{%- set args.text = args.text ~ '  - ' ~ name ~ ' (' ~ param.get('type', '') ~ required ~ '): ' ~ "
                "param.get('description', '') ~ enum ~ items ~ '\\n' -%}"
            ),
            "{%- endfor -%}",
            (
                "{%- set ns.text = ns.text ~ '> Tool Name: ' ~ tool['name'] ~ '\\nTool Description: ' ~ "
                "tool.get('description', '') ~ '\\nTool Args:\\n' ~ args.text ~ '\\n' -%}"
            ),
            "{%- set ns.names = ns.names + [tool['name']] -%}",
            "{%- endfor -%}",
            "{%- set tool_text = " + _concat(DEFAULT_TOOL_PROMPT, tool_text="ns.text", tool_names="ns.names | join(', ')")
            + " -%}",
        ),
        calls=(
            "{%- for call in calls -%}",
            _CALL,
            "{{- '\\n' if not loop.first -}}",
            "{{- 'Action: ' ~ call.name ~ '\\nAction Input: ' ~ " + _ARGUMENTS + " -}}",
            "{%- endfor -%}",
        ),
    ),
    "qwen": ToolFormat(
        describe=(
            "{%- set ns = namespace(text='') -%}",
            "{%- for tool in tools -%}",
            _WRAPPED,
            "{%- set ns.text = ns.text ~ '\\n' ~ tool | tojson -%}",
            "{%- endfor -%}",
            "{%- set tool_text = " + _concat(QWEN_TOOL_PROMPT, tool_text="ns.text") + " -%}",
        ),
        calls=(
            "{%- for call in calls -%}",
            _CALL,
            "{{- '\\n' if not loop.first -}}",
            "{{- '<tool_call>\\n{\"name\": ' ~ call.name | tojson ~ ', \"arguments\": ' ~ " + _ARGUMENTS
            + " ~ '}\\n</tool_call>' -}}",
            "{%- endfor -%}",
        ),
    ),
    "llama3": ToolFormat(
        describe=(
            "{%- set ns = namespace(text='') -%}",
            "{%- for tool in tools -%}",
            _WRAPPED,
            "{%- set ns.text = ns.text ~ tool | tojson(indent=4) ~ '\\n\\n' -%}",
            "{%- endfor -%}",
            "{%- set tool_text = " + _concat(LLAMA3_TOOL_PROMPT, date="strftime_now('%d %b %Y')", tool_text="ns.text")
            + " -%}",
        ),
        calls=(
            "{{- '[' if calls | length > 1 -}}",
            "{%- for call in calls -%}",
            _CALL,
            "{{- ', ' if not loop.first -}}",
            "{{- '{\"name\": ' ~ call.name | tojson ~ ', \"parameters\": ' ~ " + _ARGUMENTS + " ~ '}' -}}",
            "{%- endfor -%}",
            "{{- ']' if calls | length > 1 -}}",
        ),
    ),
    "mistral": ToolFormat(
        describe=(
            "{%- set ns = namespace(tools=[]) -%}",
            "{%- for tool in tools -%}",
            _WRAPPED,
            "{%- set ns.tools = ns.tools + [tool] -%}",
            "{%- endfor -%}",
            "{%- set tool_text = '[AVAILABLE_TOOLS] ' ~ ns.tools | tojson ~ '[/AVAILABLE_TOOLS]' -%}",
        ),
        calls=(
            "{{- '[' -}}",
            "{%- for call in calls -%}",
            _CALL,
            "{{- ', ' if not loop.first -}}",
            "{{- '{\"name\": ' ~ call.name | tojson ~ ', \"arguments\": ' ~ " + _ARGUMENTS + " ~ '}' -}}",
            "{%- endfor -%}",
            "{{- ']' -}}",
        ),
    ),
    "glm4": ToolFormat(
        describe=(
            "{%- set ns = namespace(text='') -%}",
            "{%- for tool in tools -%}",
            "{%- set tool = tool.get('function', '') if tool.get('type') == 'function' else tool -%}",
            (
                "{%- set ns.text = ns.text ~ '\\n\\n## ' ~ tool['name'] ~ '\\n\\n' ~ tool | tojson(indent=4) ~ "
                "'\\n在调用上述函数时，请使用 Json 格式表示调用的参数。' -%}"
            ),
            "{%- endfor -%}",
            "{%- set tool_text = " + _concat(GLM4_TOOL_PROMPT, tool_text="ns.text") + " -%}",
        ),
        calls=(
            "{%- if calls | length > 1 -%}",
            "{{- raise_exception('GLM-4 does not support parallel functions.') -}}",
            "{%- endif -%}",
            "{%- set call = calls[0] -%}",
            _CALL,
            "{{- call.name ~ '\\n' ~ " + _ARGUMENTS + " -}}",
        ),
    ),
}


_EMPTY_THOUGHT = "{{- " + json.dumps(THOUGHT_OPEN + THOUGHT_CLOSE) + " -}}"
# LLaMA-Factory's ReasoningTemplate: an answer without a thought gets an empty one, supervised with thinking on; with
# `enable_thinking=false` every thought is removed and the empty one ends the prompt instead.
_THOUGHT = [
    "{%- if no_thinking -%}",
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') -%}",
    _EMPTY_THOUGHT,
    "{%- elif '<think>' not in content and '</think>' not in content -%}",
    _EMPTY_THOUGHT,
    "{%- endif -%}",
]
_THINKING_OFF_PROMPT = [
    "{%- if add_generation_prompt and no_thinking and loop_messages and loop_messages[-1]['role'] != 'assistant' -%}",
    _EMPTY_THOUGHT,
    "{%- endif -%}",
]


def _expression(slot: str) -> str:
    """A slot as a Jinja expression, `content`, `bos` and `eos` standing for the message's text and the tokens."""
    pieces = [piece for piece in _SLOT_FIELDS.split(slot) if piece]
    return " ~ ".join(_SLOT_NAMES.get(piece) or json.dumps(piece, ensure_ascii=False) for piece in pieces) or "''"


def _output(slot: str) -> str:
    return "{{- " + _expression(slot) + " -}}" if slot else ""


def build_jinja(spec: TemplateSpec) -> str:
    """The Hugging Face chat template (Jinja text) that renders what LLaMA-Factory's template `spec` renders."""
    system_part = (
        [f"{{%- set system_text = {_expression(spec.system)} -%}}"] if spec.system_in_first_user
        else [_output(spec.system)]
    )
    tool_format = TOOL_FORMATS[spec.tool_format]
    user_content = (
        "{%- set content = (system_text if loop.first and system_text is defined else '') ~ message['content'] -%}"
        if spec.system_in_first_user else "{%- set content = message['content'] -%}"
    )
    lines = [
        f"{{#- LLaMA-Factory's chat template {spec.name!r}, as llmkit writes it (llmkit.models.named_templates) -#}}",
        "{%- set bos = bos_token or '' -%}",
        "{%- set eos = eos_token or '' -%}",
        *(["{%- set no_thinking = enable_thinking is defined and enable_thinking is false -%}"] if spec.reasoning else []),
        "{%- if messages[0]['role'] == 'system' -%}",
        "{%- set system = messages[0]['content'] -%}",
        "{%- set loop_messages = messages[1:] -%}",
        "{%- else -%}",
        "{%- set system = '' -%}",
        "{%- set loop_messages = messages -%}",
        "{%- endif -%}",
        f"{{%- set system = system or {json.dumps(spec.default_system, ensure_ascii=False)} -%}}",
        "{%- set tool_text = '' -%}",
        "{%- if tools -%}",
        *tool_format.describe,
        "{%- endif -%}",
        "{%- macro render_calls(calls) -%}",
        *tool_format.calls,
        "{%- endmacro -%}",
        _output(spec.prefix),
        "{%- if system or tools -%}",
        "{%- set content = system ~ tool_text -%}",
        *system_part,
        "{%- endif -%}",
        "{%- for message in loop_messages -%}",
        "{%- if message['role'] == 'system' -%}",
        "{{- raise_exception('only the first message may be a system message') -}}",
        "{%- elif message['role'] == 'user' -%}",
        user_content,
        _output(spec.user),
        "{%- elif message['role'] == 'assistant' -%}",
        "{%- set content = message['content'] or '' -%}",
        *(_THOUGHT if spec.reasoning else []),
        "{%- if message.tool_calls -%}",
        "{%- set content = content ~ render_calls(message.tool_calls) -%}",
        _output(spec.function or spec.assistant_slot),
        "{%- else -%}",
        _output(spec.assistant_slot),
        "{%- endif -%}",
        # LLaMA-Factory ends the conversation with EOS; here every answer gets one, so a turn ends the same inside
        # the conversation as at its end (the turn's loss then covers the EOS that LLaMA-Factory labels there).
        "{{- eos -}}" if spec.efficient_eos else "",
        "{%- elif message['role'] == 'tool' -%}",
        "{%- set content = message['content'] -%}",
        _output(spec.observation or spec.user),
        "{%- endif -%}",
        "{%- endfor -%}",
        *(_THINKING_OFF_PROMPT if spec.reasoning else []),
    ]
    return "\n".join(line for line in lines if line) + "\n"

