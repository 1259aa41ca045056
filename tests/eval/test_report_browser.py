"""Evaluation reports as a reader sees them: `report.html` opened from disk in headless Chromium (Debian's `chromium`
through Playwright) shows the summary, the chart and the per-subject table, shows model text as text and runs none of
it, and loads nothing from anywhere. Skips only where Playwright or Chromium is missing or Chromium cannot start."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

from llmkit.eval.compare import Comparison, compare
from llmkit.eval.multiple_choice import multiple_choice
from llmkit.eval.runs import Evaluation

try:
    from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright
    from playwright.sync_api import Error as PlaywrightError
except ImportError:  # the browser fixture skips
    sync_playwright = None

pytestmark = pytest.mark.slow

DATA = Path(os.environ["LLMKIT_SHARED_DATA"])
ALPACA = DATA / "llama-factory" / "alpaca_en_demo.json"
SHOPBENCH = DATA / "shopbench" / "sample.jsonl"

# Model output that would run script or fetch an image if the page ever treated it as markup.
SCRIPT_ANSWER = '<script>window.__pwned = "script"</script> She is working & <b>not bold</b> "at the company".'
IMAGE_ANSWER = '<img src="https://example.invalid/pixel.png" onerror="window.__pwned = \'img\'">fair play'
HTML_SUBJECT = 'html <tags> & "quotes"'
HTML_QUESTION = {  # MMLU style, beside the ShopBench records: a subject and an option that hold markup
    "question": "Which tag runs code when a page loads?",
    "choices": ["<script>window.__pwned = 'mc'</script>", "<b>bold</b>", "Tom & Jerry", '"quoted"'],
    "answer": 0,
    "subject": HTML_SUBJECT,
}


@dataclass
class Visit:
    """A report opened in a fresh browser context, with every request it made and every error it logged."""

    url: str
    page: Page
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions


@pytest.fixture(scope="module")
def browser(chromium: dict) -> Iterator[Browser]:
    """One headless Chromium for the module."""
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(**chromium)
        except PlaywrightError as error:
            pytest.skip(f"Chromium cannot start: {error.message.splitlines()[0]}")
        yield browser
        browser.close()


def visit(browser: Browser, report: Path) -> Visit:
    """Open `report` from disk, as a reader double-clicking it would, and wait for it (and its chart) to load."""
    context = browser.new_context()
    seen = Visit(report.resolve().as_uri(), context.new_page())
    seen.page.on("request", lambda request: seen.requests.append(request.url))
    seen.page.on("console", lambda message: _log_error(seen, message))
    seen.page.on("pageerror", lambda error: seen.errors.append(str(error)))
    seen.page.goto(seen.url, wait_until="load")
    return seen


def _log_error(seen: Visit, message: ConsoleMessage) -> None:
    if message.type == "error":
        seen.errors.append(message.text)


def table_after(page: Page, heading: str) -> tuple[list[str], list[list[str]]]:
    """The header and body cells, as the reader sees their text, of the table that follows the `heading` h2."""
    table = page.locator("h2", has_text=heading).locator("xpath=following-sibling::table[1]")
    header = table.locator("thead th").all_text_contents()
    rows = table.locator("tbody tr").evaluate_all("rows => rows.map(row => [...row.cells].map(c => c.textContent))")
    return header, rows


def no_model(model: str) -> NoReturn:
    """The `load_model` of a run whose results are all saved: loading anything is a failure."""
    raise AssertionError(f"every result is saved, yet {model} was loaded")


# --- A comparison of two models ---


@pytest.fixture(scope="module")
def comparison(tmp_path_factory) -> Comparison:
    """`compare` on four real alpaca records, finishing a run whose answers were saved: it loads no model, scores
    the saved answers (two of them hostile HTML) and writes the reports."""
    records = json.loads(ALPACA.read_text(encoding="utf-8"))
    chosen = [records[i] for i in (1, 16, 22, 25)]
    folder = tmp_path_factory.mktemp("compare")
    data = folder / "held_out.jsonl"
    data.write_text("".join(json.dumps(record) + "\n" for record in chosen), encoding="utf-8")
    answers = {
        "base": [chosen[0]["output"], "She works at the company.", IMAGE_ANSWER, "Fiction: Alice's Adventures"],
        "tuned": ["the car  ACCELERATED rapidly.", SCRIPT_ANSWER, 'The antonym is "fair play".', chosen[3]["output"]],
    }
    out = folder / "out"
    out.mkdir()
    rows = [
        {"index": i, "role": role, "answer": text} for role, texts in answers.items() for i, text in enumerate(texts)
    ]
    (out / "answers.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return compare("default", str(folder / "sft"), str(data), out, metrics=("exact", "rouge_l", "f1"),
                   load_model=no_model)


@pytest.fixture(scope="module")
def compare_page(browser, comparison) -> Visit:
    return visit(browser, comparison.files["html"])


def test_compare_report_shows_its_title_and_the_summary_of_scores_json(compare_page, comparison):
    page = compare_page.page
    assert page.title() == "Base vs tuned model"
    assert page.locator("h1").text_content() == "Base vs tuned model"
    header, rows = table_after(page, "Summary")
    assert header == ["metric", "base", "tuned", "Δ (tuned − base)"]
    summary = json.loads(comparison.files["scores"].read_text(encoding="utf-8"))["summary"]
    assert [row[0] for row in rows] == ["exact", "rouge_l", "f1"]
    for metric, base, tuned, delta in rows:
        means = summary[metric]
        assert float(base) == pytest.approx(means["base"], abs=5e-4)
        assert float(tuned) == pytest.approx(means["tuned"], abs=5e-4)
        assert float(delta) == pytest.approx(means["tuned"] - means["base"], abs=1e-3)
    assert rows[0][1:] == ["0.250", "0.500", "+0.250"]  # exact: 1 of 4 base answers, 2 of 4 tuned ones


def test_compare_report_chart_is_an_inline_png_that_loaded(compare_page):
    chart = compare_page.page.locator('img[alt="summary chart"]')
    image = chart.evaluate("img => ({src: img.src, complete: img.complete, width: img.naturalWidth, "
                           "height: img.naturalHeight})")
    assert image["src"].startswith("data:image/png;base64,")
    assert image["complete"] and image["width"] > 0 and image["height"] > 0
    assert chart.bounding_box()["width"] > 0  # laid out, not hidden


def test_model_output_is_shown_as_text_and_never_runs(compare_page):
    page = compare_page.page
    assert page.evaluate("() => window.__pwned") is None
    assert page.evaluate("() => document.scripts.length") == 0
    assert page.locator("img").count() == 1  # the chart; the answer's <img> is text
    assert page.locator("td b").count() == 0
    cells = page.locator("td").all_text_contents()
    assert SCRIPT_ANSWER in cells and IMAGE_ANSWER in cells  # character for character, as the model wrote it
    sample_header, samples = table_after(page, "Samples")
    assert sample_header[:5] == ["#", "prompt", "reference", "base", "tuned"]
    assert samples[1][4] == SCRIPT_ANSWER  # record 1, the tuned model's answer


# --- Multiple choice: a per-subject table ---


@pytest.fixture(scope="module")
def mc_result(tmp_path_factory) -> Evaluation:
    """`multiple_choice` on real ShopBench questions (one with "&" in it), a question whose subject and option hold
    markup, and a ShopBench ranking record (skipped), finishing a run whose choice scores were saved: the
    log-likelihoods below (with the options' lengths) make the per-subject scores known, and no model loads."""
    records = [json.loads(line) for line in SHOPBENCH.read_text(encoding="utf-8").splitlines()]
    big_and_tall = next(r for r in records if "Big & Tall" in r["input_field"])
    chosen = [r for r in records if r["task_name"] == "task2"] + [big_and_tall, HTML_QUESTION]
    chosen.append(next(r for r in records if r["task_type"] == "ranking"))
    folder = tmp_path_factory.mktemp("mc")
    data = folder / "questions.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chosen), encoding="utf-8")
    saved = [  # line: log-likelihoods of the choices, (their lengths in characters); right answers 0, 3, 1, 0
        (1, [-5, -4, -15, -12]),  # (9, 5, 19, 11): wrong by sum, right per character
        (2, [-9, -9, -12, -3]),  # (11, 11, 21, 10): right both ways
        (3, [-5, -1, -9, -2]),  # (18, 6, 10, 22): right by sum, wrong per character
        (4, [-1, -3, -4, -2]),  # letters A–D: right, the <script> option
    ]
    out = folder / "out"
    out.mkdir()
    rows = [{"index": line, "logprobs": logprobs} for line, logprobs in saved]
    (out / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return multiple_choice("default", data, out, load_model=no_model)


@pytest.fixture(scope="module")
def mc_page(browser, mc_result) -> Visit:
    return visit(browser, mc_result.files["html"])


def shown(value: float | str) -> str:
    """A score as the report shows it: three decimals, or lm-eval's "N/A" as it is."""
    return value if isinstance(value, str) else f"{value:.3f}"


def test_mc_report_shows_accuracy_per_subject_as_scores_json_has_it(mc_page, mc_result):
    page = mc_page.page
    assert page.title() == "Multiple choice"
    header, rows = table_after(page, "Summary")
    assert header == ["metric", "default"]  # one model: no difference column
    subjects = json.loads(mc_result.files["scores"].read_text(encoding="utf-8"))["subjects"]
    assert rows == [[metric, f"{subjects['overall'][metric]:.3f}"] for metric in ("acc", "acc_norm")]
    header, rows = table_after(page, "By subject")
    assert header == ["subject", "questions", "acc", "acc_stderr", "acc_norm", "acc_norm_stderr"]
    assert rows == [  # subjects sorted, then overall; the markup in a subject shown as text
        [HTML_SUBJECT, "1", "1.000", "N/A", "1.000", "N/A"],
        ["task2", "2", "0.500", "0.500", "1.000", "0.000"],
        ["task5", "1", "1.000", "N/A", "0.000", "N/A"],
        ["overall", "4", "0.750", "0.250", "0.750", "0.250"],  # sqrt(0.75 · 0.25 / 3) = 0.25
    ]
    columns = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr")
    assert rows == [[name, str(s["questions"]), *(shown(s[column]) for column in columns)]
                    for name, s in subjects.items()]
    assert page.locator("h2", has_text="Notes").count() == 1
    assert "not multiple-choice" in page.locator("li").first.text_content()


def test_mc_report_shows_shopbench_text_and_markup_in_questions_as_text(mc_page):
    page = mc_page.page
    assert page.evaluate("() => window.__pwned") is None
    assert page.evaluate("() => document.scripts.length") == 0
    cells = page.locator("td").all_text_contents()
    assert any("Big & Tall" in cell for cell in cells)
    assert "A. <script>window.__pwned = 'mc'</script>" in cells  # the right answer of the markup question
    assert page.locator("td b, td script").count() == 0


# --- Both reports ---


@pytest.mark.parametrize("report", ["compare_page", "mc_page"])
def test_report_loads_nothing_from_outside_and_logs_no_errors(report, request):
    seen: Visit = request.getfixturevalue(report)
    assert seen.url in seen.requests  # the page itself: the listener saw its requests
    outside = [url for url in seen.requests if url != seen.url and not url.startswith("data:")]
    assert outside == []
    assert seen.errors == []
