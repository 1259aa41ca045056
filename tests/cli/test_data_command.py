"""`llmkit data preview`: training examples as `llmkit train` sees them, the untrained parts marked."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_preview_shows_rendered_examples_with_trained_token_counts(llmkit):
    result = llmkit("data", "preview", str(ROOT / "examples/train/sft_lora.yaml"), f"dataset_dir={ROOT / 'examples/train/data'}", "-n", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("example ") == 2 and "trained" in result.stdout
    assert "<|im_start|>assistant" in result.stdout
    assert "Hello! I am Lumen, an AI assistant developed by the llmkit team." in result.stdout


def test_preview_of_a_bad_config_is_one_error_line(llmkit, tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text("dataset: identity\nlearning_rate: fast\n")
    result = llmkit("data", "preview", str(config))
    assert result.returncode == 2
    assert "learning_rate" in result.stderr and "Traceback" not in result.stderr
