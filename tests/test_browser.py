"""The built book in a real browser: headless Debian Chromium driven by Playwright.

Pages are served from a local http.server on 127.0.0.1 (random port) over the
session's book build (``built_book`` in conftest.py). Every request that would
leave 127.0.0.1 is blocked and recorded, so a page that needs the network fails
here exactly as it would for an offline reader.
"""

from __future__ import annotations

import functools
import http.server
import threading
from dataclasses import dataclass, field
from typing import Iterator
from urllib.parse import urlparse

import pytest

from conftest import require_system_tool, toc_pages

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]
PAGES = toc_pages()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        """Keep pytest's output clean; failed requests are recorded by the browser."""


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """A headless Chromium (skipped when missing, a failure under CI=true)."""
    executable = require_system_tool(CHROMIUM, "the browser tests drive Debian's chromium (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def site(built_book) -> Iterator[str]:
    """Base URL of the built HTML, served on 127.0.0.1 for the session."""
    handler = functools.partial(_QuietHandler, directory=str(built_book.html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@dataclass
class PageLog:
    """What went wrong while a page loaded."""

    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)


def open_page(chromium, url: str):
    """Open ``url`` in a fresh context, blocking requests that leave 127.0.0.1; wait for MathJax."""
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    log = PageLog()

    def guard(route) -> None:
        target = urlparse(route.request.url)
        if target.scheme in ("http", "https", "ws", "wss") and target.hostname != "127.0.0.1":
            log.outside_requests.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", guard)
    page = context.new_page()
    page.on("console", lambda message: message.type == "error" and log.console_errors.append(message.text))
    page.on("pageerror", lambda error: log.console_errors.append(f"uncaught: {error}"))
    page.on("requestfailed", lambda request: log.failed_requests.append(f"{request.url}: {request.failure}"))
    page.on("response", lambda response: response.status >= 400 and log.failed_requests.append(f"{response.url}: HTTP {response.status}"))
    page.goto(url, wait_until="load")
    # Sphinx loads MathJax only on pages with mathematics.
    if page.locator("script[src*='mathjax']").count():
        page.wait_for_function("() => window.MathJax && window.MathJax.startup && window.MathJax.startup.promise", timeout=30_000)
        page.evaluate("() => window.MathJax.startup.promise.then(() => true)")
    return context, page, log


@dataclass
class PageReport:
    log: PageLog
    math_total: int
    math_untypeset: list[str]
    raw_display_math: bool
    images: list[dict]


@pytest.fixture(scope="session")
def page_report(chromium, site):
    """Load each page once and keep what the tests below look at."""
    reports: dict[str, PageReport] = {}

    def report(docname: str) -> PageReport:
        if docname not in reports:
            context, page, log = open_page(chromium, f"{site}/{docname}.html")
            math = page.evaluate("""() => {
                const all = [...document.querySelectorAll('article .math, main .math')];
                return {total: all.length,
                        untypeset: all.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80))};
            }""")
            raw = page.evaluate("() => (document.querySelector('main') || document.body).innerText.includes('$$')")
            images = page.evaluate("""() => [...document.images].map(i => ({
                src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth, alt: (i.getAttribute('alt') || '').trim(),
                in_figure: i.closest('figure') !== null}))""")
            reports[docname] = PageReport(log, math["total"], math["untypeset"], raw, images)
            context.close()
        return reports[docname]

    return report


@pytest.mark.parametrize("docname", PAGES)
def test_page_loads_without_errors_or_requests_outside_localhost(page_report, docname: str) -> None:
    log = page_report(docname).log
    assert log.console_errors == []
    assert log.failed_requests == []
    assert log.outside_requests == []


@pytest.mark.parametrize("docname", PAGES)
def test_mathjax_typesets_every_equation(page_report, docname: str) -> None:
    report = page_report(docname)
    assert report.math_untypeset == []
    assert not report.raw_display_math, "raw $$ left in the page text"


def test_pages_with_mathematics_exist(page_report) -> None:
    assert page_report("book/ch01_token_to_sequence").math_total >= 20
    assert page_report("book/appendix_notation").math_total >= 10


@pytest.mark.parametrize("docname", PAGES)
def test_every_image_loads_and_has_alt_text(page_report, docname: str) -> None:
    for image in page_report(docname).images:
        assert image["complete"] and image["width"] > 0, f"image did not load: {image['src']}"
        assert image["alt"], f"image without alt text: {image['src']}"


def test_chapter_1_figures_are_drawn(page_report) -> None:
    figures = [image for image in page_report("book/ch01_token_to_sequence").images if image["in_figure"]]
    assert len(figures) >= 2 and all(image["width"] >= 300 for image in figures)


def test_search_finds_perplexity(chromium, site) -> None:
    context, page, log = open_page(chromium, f"{site}/search.html?q=perplexity")
    try:
        page.wait_for_selector("#search-results ul.search li a", timeout=30_000)
        hits = page.locator("#search-results ul.search li a").all_inner_texts()
        assert any("token loss to sequence loss" in hit.lower() or "glossary" in hit.lower() for hit in hits), hits
        assert log.console_errors == [] and log.outside_requests == []
    finally:
        context.close()


def test_exercise_solution_opens_on_click(chromium, site) -> None:
    context, page, _ = open_page(chromium, f"{site}/book/ch01_token_to_sequence.html")
    try:
        solution = page.locator(".solution.dropdown").first
        body = solution.locator("p:not(.admonition-title)").first
        page.wait_for_selector(".solution.dropdown .toggle-button", timeout=10_000)
        assert not body.is_visible()
        solution.locator(".toggle-button").first.click()
        body.wait_for(state="visible", timeout=5_000)
        assert body.is_visible()
    finally:
        context.close()


def test_quiz_feedback_keeps_the_mathematics_of_the_explanation(chromium, site) -> None:
    context, page, _ = open_page(chromium, f"{site}/book/ch01_token_to_sequence.html")
    try:
        quiz = page.locator("#ch01-quiz-mean")
        quiz.locator(".ck-quiz-option[data-correct='true']").click()
        feedback = quiz.locator(".ck-quiz-feedback").inner_text()
        assert feedback.startswith("Correct: 0.25.") and "= 1.0 / 4" in feedback, feedback
    finally:
        context.close()


def _check_choice_quiz(quiz) -> int:
    clicks = 0
    for option in quiz.locator(".ck-quiz-option").all():
        option.click()
        clicks += 1
        correct = option.get_attribute("data-correct") == "true"
        feedback = quiz.locator(".ck-quiz-feedback").inner_text()
        assert feedback.startswith("Correct" if correct else "Incorrect"), feedback
        explanation = quiz.page.locator(f"[id='{option.get_attribute('aria-describedby')}']")
        assert explanation.is_visible() and len(explanation.inner_text()) > 12
        assert "ck-correct" in option.get_attribute("class") if correct else "ck-incorrect" in option.get_attribute("class")
    return clicks


def _check_match_quiz(quiz) -> int:
    feedback = quiz.locator(".ck-quiz-feedback")
    quiz.locator(".ck-quiz-definition").first.click()
    assert feedback.inner_text().startswith("First click a term")
    clicks = 1
    for term in quiz.locator(".ck-quiz-term").all():
        pair = term.get_attribute("data-pair")
        term.click()
        wrong = quiz.locator(f".ck-quiz-definition:not([data-pair='{pair}']):not(.ck-matched)")
        if wrong.count():
            wrong.first.click()
            assert feedback.inner_text().startswith("Incorrect"), feedback.inner_text()
            clicks += 1
        quiz.locator(f".ck-quiz-definition[data-pair='{pair}']").click()
        assert feedback.inner_text().startswith("Correct"), feedback.inner_text()
        assert "ck-matched" in term.get_attribute("class")
        clicks += 2
    assert "All pairs matched" in feedback.inner_text()
    return clicks


def test_every_quiz_answers_every_click_with_feedback(chromium, site) -> None:
    quizzes_seen = 0
    for docname in PAGES:
        context, page, log = open_page(chromium, f"{site}/{docname}.html")
        try:
            page.wait_for_function("() => [...document.querySelectorAll('.ck-quiz')].every(q => q.dataset.quizReady)")
            quizzes = page.locator(".ck-quiz").all()
            for index, quiz in enumerate(quizzes):
                kind = quiz.get_attribute("data-quiz-type")
                clicks = _check_match_quiz(quiz) if kind == "match" else _check_choice_quiz(quiz)
                assert clicks >= 2, f"{docname}: quiz {index} has too few answers"
                # Quizzes are independent: the ones not yet clicked still show no feedback.
                for later in quizzes[index + 1:]:
                    assert later.locator(".ck-quiz-feedback").inner_text() == "", f"{docname}: quiz {index} changed another quiz"
            quizzes_seen += len(quizzes)
            assert log.console_errors == [], f"{docname}: {log.console_errors}"
        finally:
            context.close()
    assert quizzes_seen >= 4
