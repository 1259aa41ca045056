"""Stop strings: found once across delta boundaries, and never partly streamed before they complete."""

from __future__ import annotations

import random

import pytest

from llmkit.engine.stop_strings import StopStrings


def stream(stops: StopStrings, chunks: list[str]) -> tuple[str, bool]:
    """Drive StopStrings as the engine does; return the emitted text and whether a stop string ended it."""
    text, emitted = "", 0
    out = []
    for chunk in chunks:
        previous = len(text)
        text += chunk
        hit = stops.find(text, previous)
        if hit is not None:
            out.append(text[emitted:hit])
            return "".join(out), True
        safe = len(text) - stops.holdback(text)
        assert safe >= emitted, "holdback must never take back text already emitted"
        out.append(text[emitted:safe])
        emitted = safe
    out.append(text[emitted:])  # end of generation: nothing is pending any more
    return "".join(out), False


def truncated(text: str, stops: list[str]) -> str:
    hits = [text.find(s) for s in stops if s in text]
    return text[: min(hits)] if hits else text


def test_stop_spanning_the_previous_delta() -> None:
    stops = StopStrings(["###"])
    text = "answer #"
    assert stops.find(text, 0) is None
    assert stops.holdback(text) == 1
    text += "## more"
    assert stops.find(text, len("answer #")) == len("answer ")


def test_find_ignores_occurrences_that_ended_before_start() -> None:
    stops = StopStrings(["ab"])
    assert stops.find("ab xx ab", 2) == 6
    assert stops.find("ab xx ab", 1) == 0  # ends at 2, after position 1


def test_earliest_stop_wins() -> None:
    stops = StopStrings(["world", "lo w", "xyz"])
    assert stops.find("hello world xyz", 0) == 3
    assert stream(stops, ["hel", "lo wor", "ld xyz"]) == ("hel", True)


def test_stop_at_the_very_start() -> None:
    stops = StopStrings(["</s>", "User:"])
    assert stops.find("User: hi", 0) == 0
    assert stream(stops, ["Us", "er", ": hi"]) == ("", True)


def test_overlapping_prefixes() -> None:
    stops = StopStrings(["aab", "abc"])
    assert stops.holdback("xaa") == 2
    assert stops.holdback("xa") == 1
    assert stops.holdback("xab") == 2  # "ab" may still become "abc"
    assert stream(stops, ["a", "a", "a", "b"]) == ("a", True)
    assert stream(stops, ["x", "a", "bd"]) == ("xabd", False)


def test_chinese_stop_strings() -> None:
    stops = StopStrings(["。", "结束了"])
    assert stops.find("你好，世界。今天", 0) == 5
    assert stops.holdback("天气很好结束") == 2
    assert stream(stops, ["天气", "很好结", "束", "了吗"]) == ("天气很好", True)


def test_no_stops() -> None:
    stops = StopStrings([])
    assert not stops
    assert stops.find("anything", 0) is None and stops.holdback("anything") == 0


def test_empty_stop_is_rejected() -> None:
    with pytest.raises(ValueError):
        StopStrings(["ok", ""])


@pytest.mark.parametrize("seed", range(300))
def test_random_chunkings_emit_exactly_the_truncated_text(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab c。好"
    stop_list = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 12)))) if len(text) > 1 else []
    chunks = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
    emitted, stopped = stream(StopStrings(stop_list), chunks)
    assert emitted == truncated(text, stop_list)
    assert stopped == any(s in text for s in stop_list)


def test_kept_stop_strings_end_the_text_after_the_first_to_complete() -> None:
    assert StopStrings(["world", "lo w", "lo"]).cut("hello world", 0) == 3
    kept = StopStrings(["world", "lo w", "lo"], keep=True)
    assert kept.cut("hello world", 0) == 5  # "lo" completed before "lo w"
    assert StopStrings(["结束了"], keep=True).cut("say 结束了吗", 2) == len("say 结束了")
    assert kept.cut("nothing here", 0) is None
