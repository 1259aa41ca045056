"""Write llamafactory_templates.json: the strings LLaMA-Factory's own templates render for a few conversations with
the default model's tokenizer, which tests/models/test_named_templates.py compares llmkit's named templates with.

Needs LLaMA-Factory's source importable beside llmkit's environment (not installed into it), for example:

    git clone https://github.com/hiyouga/LLaMA-Factory /tmp/lf && mkdir -p /tmp/lfstubs/torchaudio
    touch /tmp/lfstubs/torchaudio/__init__.py   # imported by its multimodal plugins, unused here
    DISABLE_VERSION_CHECK=1 PYTHONPATH=/tmp/lf/src:/tmp/lfstubs .venv/bin/python \
        tests/models/data/make_llamafactory_templates.py [LLaMA-Factory commit]

Per template and conversation it records LLaMA-Factory's training input (`SupervisedDatasetProcessor`), its
(prompt, response) pairs (`Template.encode_multiturn`) and the inference prompt for the conversation without its
last answer (`Template.encode_oneturn`), all decoded from LLaMA-Factory's token ids.
"""

from __future__ import annotations

import copy
import json
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

from llamafactory.data.mm_plugin import get_mm_plugin
from llamafactory.data.processor import SupervisedDatasetProcessor
from llamafactory.data.template import TEMPLATES, get_template_and_fix_tokenizer
from transformers import AutoTokenizer

from llmkit.hub import resolve
from llmkit.models.named_templates import TEMPLATES as NAMED

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city name."},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
CONVERSATIONS = {
    "single": {"messages": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"}]},
    "thought": {
        "messages": [
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "<think>\nA greeting.\n</think>\n\nHello!"},
        ]
    },
    "system_multiturn": {
        "messages": [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Italy?"},
            {"role": "assistant", "content": "Rome."},
        ]
    },
    "tools": {
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}
                ],
            },
            {"role": "tool", "content": '{"temperature": 21}'},
            {"role": "assistant", "content": "It is 21 °C in Paris."},
        ],
    },
}


def llamafactory_messages(messages: list[dict]) -> tuple[str | None, list[dict]]:
    """The system prompt and LLaMA-Factory's message list (function / observation roles) for OpenAI-style messages."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    converted = []
    for message in messages[1:] if system is not None else messages:
        if message.get("tool_calls"):
            calls = [call["function"] for call in message["tool_calls"]]
            converted.append({"role": "function", "content": json.dumps(calls, ensure_ascii=False)})
        else:
            role = {"tool": "observation"}.get(message["role"], message["role"])
            converted.append({"role": role, "content": message["content"]})
    return system, converted


def render(name: str, conversation: dict, directory: Path, enable_thinking: bool = True) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(directory)
    arguments = SimpleNamespace(
        template=name, train_on_prompt=False, mask_history=False, tool_format=None, default_system=None,
        enable_thinking=enable_thinking, preserve_thinking=False, cutoff_len=4096,
    )
    template = copy.deepcopy(TEMPLATES[name])
    template.mm_plugin = get_mm_plugin(name="base")  # text only: gemma3's plugin wants an image processor
    TEMPLATES[name], original = template, TEMPLATES[name]
    try:
        template = get_template_and_fix_tokenizer(tokenizer, arguments)
    finally:
        TEMPLATES[name] = original
    system, messages = llamafactory_messages(conversation["messages"])
    tools = json.dumps(conversation["tools"], ensure_ascii=False) if "tools" in conversation else None

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    processor = SupervisedDatasetProcessor(template=template, tokenizer=tokenizer, processor=None, data_args=arguments)
    input_ids, _ = processor._encode_data_example(messages[:-1], messages[-1:], system, tools, [], [], [])
    pairs = template.encode_multiturn(tokenizer, messages, system, tools)
    prompt, _ = template.encode_oneturn(tokenizer, [*messages[:-1], {"role": "assistant", "content": ""}], system, tools)
    return {
        "text": decode(input_ids),
        "turns": [[decode(source), decode(target)] for source, target in pairs],
        "generation": decode(prompt),
    }


def main() -> None:
    directory = resolve("default")
    rendered = {name: {key: render(name, conversation, directory) for key, conversation in CONVERSATIONS.items()}
                for name in sorted(NAMED)}
    out = {
        "llamafactory_commit": sys.argv[1] if len(sys.argv) > 1 else "unknown",
        "date": datetime.now().strftime("%d %b %Y"),  # in the llama3 tool prompt (`Today Date:`)
        "conversations": CONVERSATIONS,
        "templates": rendered,
        "qwen3_thinking_off": {
            key: render("qwen3", conversation, directory, enable_thinking=False) for key, conversation in CONVERSATIONS.items()
        },
    }
    path = Path(__file__).with_name("llamafactory_templates.json")
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
