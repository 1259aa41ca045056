"""`llmkit generate` end to end: the installed console script with the embedded default model."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"
GREEDY = ("-t", "0", "-n", "8")  # SmolLM2-135M-Instruct continues PROMPT with " Paris.\n\nThe answer is:"
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def plain(llmkit):
    return llmkit("generate", PROMPT, *GREEDY)


@pytest.fixture(scope="module")
def as_json(llmkit):
    """The same request as `plain`, printed as JSON with two alternatives per token."""
    result = llmkit("generate", PROMPT, *GREEDY, "--json", "--logprobs", "2")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_prompt_argument_is_continued(plain):
    assert plain.returncode == 0, plain.stderr
    assert "Paris" in plain.stdout


def test_chat_prompt_from_stdin(llmkit):
    result = llmkit("generate", "--chat", "-t", "0", "-n", "16", stdin="What is the capital of France?")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


def test_json_result(as_json, plain):
    output = as_json["outputs"][0]
    assert as_json["finished"] and as_json["prompt_token_ids"]
    assert len(output["token_ids"]) == 8 and output["finish_reason"] == "length"
    assert output["text"].strip() == plain.stdout.strip()  # --json and streaming decode the same tokens


def test_json_logprobs(as_json):
    output = as_json["outputs"][0]
    assert [entry["token_id"] for entry in output["logprobs"]] == output["token_ids"]
    for entry in output["logprobs"]:
        assert len(entry["top"]) == 2
        assert entry["logprob"] <= 0
        assert entry["logprob"] == max(entry["top"].values())  # greedy takes the most likely token


def test_stop_string_truncates(llmkit):
    result = llmkit("generate", PROMPT, *GREEDY, "--stop", ".")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Paris"


def test_chinese_round_trips_as_utf8(llmkit):
    # The runner decodes stdout as strict UTF-8; the model echoes the question in Chinese.
    result = llmkit("generate", "--chat", "请用中文回答：法国的首都是哪里？", "-t", "0", "-n", "16")
    assert result.returncode == 0, result.stderr
    text = result.stdout.strip()
    assert CJK.search(text), text
    # Only a character cut off by --max-new-tokens may decode as U+FFFD (see IncrementalDetokenizer.flush).
    assert "\ufffd" not in text.removesuffix("\ufffd"), text


# ---- user errors: exit code 2 and one line on stderr -------------------------------------------

ERRORS = {
    "top-p above 1": (["generate", "x", "--top-p", "1.5"], "", "top_p"),
    "negative temperature": (["generate", "x", "-t", "-1"], "", "temperature"),
    "beams with sampling": (["generate", "x", "--num-beams", "2", "-t", "0.8", "-n", "2"], "", "beam"),
    "beams with negative temperature": (["generate", "x", "--num-beams", "2", "-t", "-1"], "", "temperature"),
    "unknown model": (["generate", "x", "--model", "does/not/exist"], "", "unknown model 'does/not/exist'"),
    "empty prompt": (["generate"], "  \n", "prompt is empty"),
    "unknown dtype": (["generate", "x", "--dtype", "float8"], "", "float8"),
}


@pytest.fixture(scope="module")
def error_runs(llmkit):
    """Every ERRORS case, two at a time: each is a cold start (imports dominate) that fails fast."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(llmkit, *args, stdin=stdin) for name, (args, stdin, _) in ERRORS.items()}
    return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", ERRORS)
def test_user_error_is_one_line_and_exit_2(error_runs, case):
    result = error_runs[case]
    lines = result.stderr.splitlines()
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert ERRORS[case][2] in lines[0]
    assert "Traceback" not in result.stderr
