"""A reward function for examples/train/grpo_lora.yaml, in TRL's form: f(prompts, completions, **columns) -> scores.

Completions arrive as chat messages ([{"role": "assistant", "content": ...}]); `reference` is the dataset's own
answer to each prompt (alpaca `output`, or a sharegpt conversation's last assistant turn), None where it has none.
"""

from __future__ import annotations


def reference_overlap(completions: list[list[dict]], reference: list[str | None], **kwargs) -> list[float]:
    """The share of the reference answer's distinct words that the completion uses (0 to 1)."""
    scores = []
    for completion, answer in zip(completions, reference, strict=True):
        wanted = set((answer or "").lower().split())
        said = set(completion[0]["content"].lower().split())
        scores.append(len(wanted & said) / len(wanted) if wanted else 0.0)
    return scores
