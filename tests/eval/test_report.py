"""Reports: markdown tables stay tables whatever the model wrote; the HTML page is self-contained and escaped."""

from __future__ import annotations

import re

from llmkit.eval.report import (
    MARKDOWN_TEXT_LIMIT,
    Report,
    Sample,
    to_html,
    to_markdown,
    write_report,
)

ANSWER = 'a | b\nsecond line <b>bold?</b> & "quoted"'


def report(models: list[str]) -> Report:
    sample = Sample(7, {"prompt": "Q?", "answer": ANSWER, "long": "x" * 1000}, {m: {"exact": 1.0} for m in models})
    return Report("Demo", models, {"exact": {m: 0.25 * (i + 1) for i, m in enumerate(models)}}, [sample], {"data": "d"})


def test_markdown_cells_keep_the_table_intact_and_long_text_is_shortened():
    markdown = to_markdown(report(["base", "tuned"]))
    row = next(line for line in markdown.splitlines() if line.startswith("| 7 |"))
    assert "a \\| b<br>second line &lt;b&gt;bold?&lt;/b&gt; &amp; \"quoted\"" in row
    assert row.count(" | ") == len(["#", "prompt", "answer", "long", "exact"]) - 1
    assert "x" * (MARKDOWN_TEXT_LIMIT - 1) + "…" in row and "x" * MARKDOWN_TEXT_LIMIT not in row
    assert "| exact | 0.250 | 0.500 | +0.250 |" in markdown


def test_the_difference_column_appears_only_for_two_models():
    assert "Δ" not in to_markdown(report(["a", "b", "c"]))
    assert "| exact | 0.250 | 0.500 | 0.750 |" in to_markdown(report(["a", "b", "c"]))


def test_html_holds_every_text_escaped_and_fetches_nothing(tmp_path):
    page = to_html(report(["base", "tuned"]))
    assert "a | b\nsecond line &lt;b&gt;bold?&lt;/b&gt; &amp; &quot;quoted&quot;" in page
    assert "x" * 1000 in page  # not shortened
    assert "<b>" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched from outside
    markdown, html = write_report(report(["base", "tuned"]), tmp_path / "new")
    assert markdown.read_text(encoding="utf-8").startswith("# Demo") and html.read_text(encoding="utf-8") == page
