"""LLaMA-Factory's chat templates by name (`template: qwen`, `--chat-template llama3`), and what a template changes
about a tokenizer: its stop words end generation, and the first one becomes EOS where LLaMA-Factory replaces it.

The slots below are LLaMA-Factory's `register_template` arguments (data/template.py), copied verbatim; fields left
out take LLaMA-Factory's defaults (see `TemplateSpec`).
"""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path
from typing import Any

from llmkit.models.template_jinja import BOS, CONTENT, EOS, TemplateSpec, build_jinja

_CHATML_USER = "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n"
_CHATML_SYSTEM = "<|im_start|>system\n{{content}}<|im_end|>\n"
_QWEN = {
    "user": _CHATML_USER,
    "assistant": "{{content}}<|im_end|>\n",
    "system": _CHATML_SYSTEM,
    "function": "{{content}}<|im_end|>\n",
    "observation": "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
    "tool_format": "qwen",
    "stop_words": ("<|im_end|>",),
    "replace_eos": True,
}
_GEMMA = {
    "user": "<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n",
    "assistant": "{{content}}<end_of_turn>\n",
    "system": "{{content}}\n\n",
    "observation": "<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n",
    "prefix": BOS,
    "stop_words": ("<end_of_turn>",),
    "replace_eos": True,
    "system_in_first_user": True,
}

TEMPLATES: dict[str, TemplateSpec] = {
    spec.name: spec
    for spec in [
        TemplateSpec(
            "alpaca",
            user="### Instruction:\n{{content}}\n\n### Response:\n",
            assistant=CONTENT + EOS + "\n\n",
            default_system=(
                "Below is an instruction that describes a task. "
                "Write a response that appropriately completes the request.\n\n"
            ),
        ),
        TemplateSpec(
            "chatml",
            user=_CHATML_USER,
            assistant="{{content}}<|im_end|>\n",
            system=_CHATML_SYSTEM,
            observation="<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
            stop_words=("<|im_end|>", "<|im_start|>"),
            replace_eos=True,
        ),
        TemplateSpec(
            "default",
            user="Human: {{content}}" + EOS + "\nAssistant:",
            assistant=CONTENT + EOS + "\n",
            system="System: {{content}}" + EOS + "\n",
        ),
        TemplateSpec("deepseek3", user="<｜User｜>{{content}}<｜Assistant｜>", prefix=BOS),
        TemplateSpec("empty", assistant=CONTENT),
        TemplateSpec("gemma", **_GEMMA),
        TemplateSpec("gemma3", **_GEMMA),
        TemplateSpec(
            "glm4",
            user="<|user|>\n{{content}}<|assistant|>",
            assistant="\n{{content}}",
            system="<|system|>\n{{content}}",
            function=CONTENT,
            observation="<|observation|>\n{{content}}<|assistant|>",
            prefix="[gMASK]<sop>",
            tool_format="glm4",
            stop_words=("<|user|>", "<|observation|>"),
            efficient_eos=True,
        ),
        TemplateSpec(
            "llama2", user=BOS + "[INST] {{content}} [/INST]", system="<<SYS>>\n{{content}}\n<</SYS>>\n\n",
            system_in_first_user=True,
        ),
        TemplateSpec(
            "llama3",
            user="<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            assistant="{{content}}<|eot_id|>",
            system="<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>",
            function="{{content}}<|eot_id|>",
            observation="<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            prefix=BOS,
            tool_format="llama3",
            stop_words=("<|eot_id|>", "<|eom_id|>"),
            replace_eos=True,
        ),
        TemplateSpec(
            "mistral",
            user="[INST] {{content}}[/INST]",
            assistant=" {{content}}" + EOS,
            system="{{content}}\n\n",
            function="[TOOL_CALLS] {{content}}" + EOS,
            observation='[TOOL_RESULTS] {"content": {{content}}}[/TOOL_RESULTS]',
            prefix=BOS,
            tool_format="mistral",
            system_in_first_user=True,
        ),
        TemplateSpec("qwen", default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", **_QWEN),
        TemplateSpec("qwen3", reasoning=True, **_QWEN),
        TemplateSpec("qwen3_nothink", **_QWEN),
        TemplateSpec(
            "vicuna",
            user="USER: {{content}} ASSISTANT:",
            default_system=(
                "A chat between a curious user and an artificial intelligence assistant. "
                "The assistant gives helpful, detailed, and polite answers to the user's questions."
            ),
        ),
    ]
}


def named_template(name: str | Path | None) -> TemplateSpec | None:
    """The LLaMA-Factory template called `name`; None for anything else: a file (even one named like a template),
    inline Jinja, None."""
    if name is None or str(name) not in TEMPLATES or Path(name).is_file():
        return None
    return TEMPLATES[str(name)]


@cache
def template_jinja(name: str) -> str:
    """The Jinja text of the named template."""
    return build_jinja(TEMPLATES[name])


def unknown_template_hint(name: str) -> str:
    """What to say about a template that is neither a name nor a readable file: the closest names, then all."""
    close = difflib.get_close_matches(name, TEMPLATES, n=3)
    guess = f"did you mean {' or '.join(close)}? " if close else ""
    return f"{guess}LLaMA-Factory's template names here: {', '.join(sorted(TEMPLATES))}"


def single_token_ids(tokenizer: Any, words: tuple[str, ...]) -> list[int]:
    """The ids of those `words` the tokenizer holds as one token (a stop word split into pieces cannot stop)."""
    ids = []
    for word in words:
        encoded = tokenizer.encode(word, add_special_tokens=False)
        if len(encoded) == 1:
            ids.append(encoded[0])
    return ids


def apply_template_tokens(tokenizer: Any, template: str | Path | None) -> None:
    """Make the named template's first stop word the tokenizer's EOS where LLaMA-Factory does (`replace_eos`).

    LLaMA-Factory adds a stop word the vocabulary lacks as a new token; that needs new embedding rows (full
    training of the embeddings), so here only a stop word that is already one token replaces EOS."""
    spec = named_template(template)
    if spec is not None and spec.replace_eos and single_token_ids(tokenizer, spec.stop_words[:1]):
        tokenizer.eos_token = spec.stop_words[0]


def stop_token_ids(tokenizer: Any, template: str | Path | None) -> list[int]:
    """The tokens that end an answer: the tokenizer's EOS and the named template's single-token stop words."""
    spec = named_template(template)
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return list(dict.fromkeys(ids + single_token_ids(tokenizer, spec.stop_words if spec else ())))


def stop_word_note(tokenizer: Any, template: str | Path | None) -> str | None:
    """One line naming the named template's stop words that are not single tokens of `tokenizer` (generation
    cannot stop on them: the template is probably another model family's); None when all are."""
    spec = named_template(template)
    if spec is None:
        return None
    split = [word for word in spec.stop_words if not single_token_ids(tokenizer, (word,))]
    if not split:
        return None
    return (f"template {spec.name}: stop word {', '.join(split)} is not one token of this tokenizer, so generation "
            "cannot stop on it; use the template of this model's family")
