"""`llmkit chat` end to end: the installed console script with the embedded default model, piped and in a terminal."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow

PROMPT = ">>> "
ANSWER_TIMEOUT_S = 120  # one answer of at most 40 tokens, on a shared 2-core machine
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# Greedy answers of SmolLM2-135M-Instruct (at most 24 tokens each); the last one is over 80 characters.
QUESTIONS = ["What is the capital of France?", "", "What is 2+2?", "Name a color."]


@pytest.fixture(scope="module")
def piped(llmkit):
    """One `llmkit chat` run with several questions on stdin (the blank line is skipped)."""
    return llmkit("chat", "-t", "0", "-n", "24", stdin="\n".join(QUESTIONS) + "\n")


def answer_lines(stdout: str) -> list[str]:
    """The non-blank lines of stdout: one per answered question."""
    return [line for line in stdout.splitlines() if line.strip()]


def test_piped_question_gets_an_answer(piped):
    assert piped.returncode == 0, piped.stderr
    assert "Paris" in answer_lines(piped.stdout)[0]


def test_piped_lines_get_one_answer_line_each(piped):
    lines = answer_lines(piped.stdout)
    assert "Paris" in lines[0] and "4" in lines[1], lines
    assert "Traceback" not in piped.stderr


def test_long_piped_answer_stays_on_one_line(piped):
    assert len(answer_lines(piped.stdout)) == 3, piped.stdout


def test_piped_stdout_holds_only_answers(piped):
    assert piped.stdout.splitlines()[0].strip(), repr(piped.stdout)


# ---- the REPL, through a pseudo-terminal ------------------------------------------------------


@pytest.fixture
def chat_tty(llmkit_tty):
    """`chat_tty(*flags)`: `llmkit chat` on a pseudo-terminal, at its first prompt; closed after the test."""
    children = []

    def start(*flags: str):
        child = llmkit_tty("chat", *flags)
        children.append(child)
        child.expect_exact(PROMPT)
        return child

    yield start
    for child in children:
        child.close(force=True)


def ask(child, line: str) -> list[str]:
    """Type `line` at the prompt; return what the REPL printed before its next prompt, in the pieces it arrived in."""
    child.sendline(line)
    child.expect_exact(line)  # the terminal's echo of what was typed
    pieces = [child.buffer]
    child.buffer = ""
    while PROMPT not in ANSI.sub("", "".join(pieces)):
        pieces.append(child.read_nonblocking(65536, timeout=ANSWER_TIMEOUT_S))
    printed = []
    for piece in (ANSI.sub("", piece) for piece in pieces):
        printed.append(piece.split(PROMPT)[0])
        if PROMPT in piece:
            break
    return [piece for piece in printed if piece.strip()]


def test_repl_session(chat_tty):
    child = chat_tty("-t", "0", "-n", "40")
    pieces = ask(child, "What is the capital of France?")
    assert "Paris" in "".join(pieces)
    assert len(pieces) > 1, f"the answer arrived in one piece, not streamed: {pieces}"

    params = "".join(ask(child, "/params"))
    assert "'max_new_tokens': 40" in params

    assert "system prompt set" in "".join(ask(child, "/system You are a pirate."))
    pirate = "".join(ask(child, "Who are you?")).lower()
    assert any(word in pirate for word in ("aye", "arr", "matey", "pirate", "captain")), pirate

    assert "conversation cleared" in "".join(ask(child, "/reset"))

    hint = "".join(ask(child, "/foo"))
    assert "unknown command /foo" in hint and "/exit" in hint

    child.sendline("/exit")
    child.read()  # to EOF
    child.close()
    assert child.exitstatus == 0


def test_ctrl_d_ends_the_repl(chat_tty):
    child = chat_tty("-t", "0")
    child.sendeof()
    child.read()  # to EOF
    child.close()
    assert child.exitstatus == 0 and child.signalstatus is None
