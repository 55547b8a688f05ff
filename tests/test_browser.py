"""The built book in a real browser: headless Debian Chromium driven by Playwright.

Pages are served from a local http.server on 127.0.0.1 (random port) over the
session's book build (``built_book`` in conftest.py). Every request that would
leave 127.0.0.1 is blocked and recorded, so a page that needs the network fails
here exactly as it would for an offline reader.

Each page is read as a reader would: on a phone (390 px) and a desktop (1280 px),
in light and dark mode (the system setting, which the book follows), by keyboard,
and with axe-core (the npm package pinned in package-lock.json) looking for
WCAG 2 A/AA violations. A page is loaded once per mode and width and what the
tests look at is kept (``view``).
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Iterator
from urllib.parse import urljoin, urlparse

import pytest

from conftest import REPO_ROOT, require_system_tool, toc_pages

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]
AXE = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
PAGES = toc_pages()
CHAPTERS = [page for page in PAGES if re.search(r"/ch\d\d_", page)]
MODES = ("light", "dark")
PHONE, DESKTOP = 390, 1280
WIDTHS = (PHONE, DESKTOP)
COMBINATIONS = [(mode, width) for mode in MODES for width in WIDTHS]
# Budget of one chapter, everything it loads counted uncompressed.
CHAPTER_BYTES = 2_500_000
CHAPTER_REQUESTS = 35
SERIOUS = ("critical", "serious")
PATIENCE_MS = 120_000


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


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.fail("axe-core is missing under node_modules: run `make venv` (npm ci installs the pinned version)")
    return AXE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def api_pages(built_book) -> list[str]:
    """The API reference's module pages (generated at build time, so not in _toc.yml)."""
    pages = sorted(f"book/api/{path.stem}" for path in (built_book.html / "book" / "api").glob("*.html"))
    assert len(pages) >= 30, pages
    return pages


@dataclass
class PageLog:
    """What went wrong while a page loaded, and what it loaded."""

    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    loaded: list[tuple[str, int]] = field(default_factory=list)


def open_page(chromium, url: str, *, mode: str = "light", width: int = DESKTOP, weigh: bool = False):
    """Open ``url`` in a fresh context (``mode`` as the system colour scheme), blocking requests
    that leave 127.0.0.1; wait until MathJax has typeset and coursebook.js has fitted the equations.

    With ``weigh``, every response's body size is recorded in ``log.loaded``.
    """
    context = chromium.new_context(viewport={"width": width, "height": 900}, color_scheme=mode)
    log = PageLog()

    def guard(route) -> None:
        target = urlparse(route.request.url)
        if target.scheme in ("http", "https", "ws", "wss") and target.hostname != "127.0.0.1":
            log.outside_requests.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    def finished(request) -> None:
        response = request.response()
        log.loaded.append((request.url, len(response.body()) if (weigh and response) else 0))

    context.route("**/*", guard)
    # Generous: the suite shares a busy machine, and a slow load is not what these tests judge.
    context.set_default_timeout(PATIENCE_MS)
    context.set_default_navigation_timeout(PATIENCE_MS)
    page = context.new_page()
    page.on("console", lambda message: message.type == "error" and log.console_errors.append(message.text))
    page.on("pageerror", lambda error: log.console_errors.append(f"uncaught: {error}"))
    page.on("requestfailed", lambda request: log.failed_requests.append(f"{request.url}: {request.failure}"))
    page.on("requestfinished", finished)
    page.on("response", lambda response: response.status >= 400 and log.failed_requests.append(f"{response.url}: HTTP {response.status}"))
    page.goto(url, wait_until="load")
    # Sphinx loads MathJax only on pages with mathematics (and on the search page).
    if page.locator("script[src*='mathjax']").count():
        page.wait_for_function("() => window.MathJax && window.MathJax.startup && window.MathJax.startup.promise")
        page.evaluate("() => window.MathJax.startup.promise.then(() => true)")
    page.wait_for_function("() => document.documentElement.dataset.ckEquationsReady === 'true'")
    page.wait_for_load_state("networkidle")
    return context, page, log


# What the tests read from a loaded page. Each display equation: its number, the start of
# its TeX, the width of the formula and of the space it has, and how it shows that it scrolls.
MEASURE = """() => {
  const items = window.MathJax && MathJax.startup && MathJax.startup.document
    ? MathJax.startup.document.getMathItemsWithin(document.body) : [];
  const tex = (box) => { const item = items.find(i => box.contains(i.typesetRoot)); return item ? item.math.trim() : box.textContent; };
  const equations = [...document.querySelectorAll('main div.math')].map(box => {
    const wrapper = box.querySelector(':scope > .ck-math-scroll');
    const number = box.querySelector(':scope > .eqno');
    const formula = wrapper ? wrapper.getBoundingClientRect() : null;
    const place = number ? number.getBoundingClientRect() : null;
    return {
      id: box.id, number: number ? number.textContent.replace(/[#\\s]/g, '') : '', tex: tex(box).replace(/\\s+/g, ' ').slice(0, 60),
      wrapped: !!wrapper, formula: wrapper ? wrapper.scrollWidth : 0, room: wrapper ? wrapper.clientWidth : box.clientWidth,
      scrolls: !!wrapper && wrapper.classList.contains('ck-scrolls'), tabindex: wrapper ? wrapper.getAttribute('tabindex') : null,
      mask: wrapper ? getComputedStyle(wrapper).maskImage || getComputedStyle(wrapper).webkitMaskImage : 'none',
      numberBelow: !!(place && formula && place.top >= formula.bottom - 1),
    };
  });
  const math = [...document.querySelectorAll('article .math, main .math')];
  return {
    theme: document.documentElement.dataset.theme,
    pageWidth: document.documentElement.scrollWidth,
    widest: [...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
              && !e.closest('.ck-math-scroll, pre, .highlight, .cell_output, .table-wrapper, table, .output'))
              .slice(0, 3).map(e => e.tagName + '.' + e.className + ': ' + e.textContent.slice(0, 50)),
    equations,
    mathTotal: math.length,
    untypeset: math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
    rawDisplayMath: (document.querySelector('main') || document.body).innerText.includes('$$'),
    images: [...document.querySelectorAll('main article img')].map(i => ({
      src: i.currentSrc || i.src, complete: i.complete, natural: i.naturalWidth, shown: i.getBoundingClientRect().width,
      alt: (i.getAttribute('alt') || '').trim(), in_figure: !!i.closest('figure'),
      link: i.closest('a') ? i.closest('a').href : null, link_class: i.closest('a') ? i.closest('a').className : ''})),
  };
}"""

# Answer every choice quiz once (a wrong option, then the right one), so that axe also
# checks the feedback and the explanations as a reader sees them after answering.
ANSWER_QUIZZES = """() => {
  document.querySelectorAll('.ck-quiz[data-quiz-type="choice"]').forEach(quiz => {
    const wrong = quiz.querySelector('.ck-quiz-option[data-correct="false"]');
    if (wrong) wrong.click();
    quiz.querySelector('.ck-quiz-option[data-correct="true"]').click();
  });
}"""

RUN_AXE = """async () => {
  const result = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}});
  return result.violations.map(v => ({id: v.id, impact: v.impact,
    nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ') + ': ' + (n.failureSummary || '').split('\\n').slice(0, 2).join(' '))}));
}"""


@dataclass
class PageView:
    """One page, in one mode, at one width."""

    log: PageLog
    measured: dict
    violations: list[dict]

    @property
    def serious(self) -> list[dict]:
        return [v for v in self.violations if v["impact"] in SERIOUS]

    @property
    def overflowing(self) -> list[dict]:
        return [e for e in self.measured["equations"] if e["formula"] > e["room"] + 1]


@pytest.fixture(scope="session")
def view(chromium, site, axe_source):
    """``view(docname, mode, width)``: the page loaded, measured and checked by axe, once per session."""
    views: dict[tuple[str, str, int], PageView] = {}

    def load(docname: str, mode: str = "light", width: int = DESKTOP) -> PageView:
        key = (docname, mode, width)
        if key not in views:
            chapter = docname in CHAPTERS and mode == "light" and width == DESKTOP
            context, page, log = open_page(chromium, f"{site}/{docname}.html", mode=mode, width=width, weigh=chapter)
            try:
                measured = page.evaluate(MEASURE)
                page.evaluate(ANSWER_QUIZZES)
                page.add_script_tag(content=axe_source)
                violations = page.evaluate(RUN_AXE)
            finally:
                context.close()
            views[key] = PageView(log, measured, violations)
        return views[key]

    return load


def _equations(equations: list[dict]) -> str:
    return "; ".join(f"{e['number'] or e['id'] or '-'} {e['tex'][:40]!r}: {e['formula']} px in {e['room']} px" for e in equations)


# --- Every page loads offline, typesets its maths, and passes axe ---------------------------------

@pytest.mark.parametrize(("mode", "width"), COMBINATIONS, ids=[f"{m}-{w}" for m, w in COMBINATIONS])
@pytest.mark.parametrize("docname", PAGES)
def test_page_loads_without_errors_or_requests_outside_localhost(view, docname: str, mode: str, width: int) -> None:
    log = view(docname, mode, width).log
    assert log.console_errors == []
    assert log.failed_requests == []
    assert log.outside_requests == []


@pytest.mark.parametrize(("mode", "width"), COMBINATIONS, ids=[f"{m}-{w}" for m, w in COMBINATIONS])
@pytest.mark.parametrize("docname", PAGES)
def test_axe_finds_no_critical_or_serious_violation(view, docname: str, mode: str, width: int) -> None:
    assert view(docname, mode, width).serious == []


@pytest.mark.parametrize("mode", MODES)
def test_every_api_page_passes_axe_and_fits_a_phone(view, api_pages: list[str], mode: str) -> None:
    problems = {}
    for docname in api_pages:
        phone = view(docname, mode, PHONE)
        if phone.serious or phone.log.console_errors or phone.measured["pageWidth"] > PHONE:
            problems[docname] = (phone.serious, phone.log.console_errors, phone.measured["pageWidth"], phone.measured["widest"])
    assert problems == {}


@pytest.mark.parametrize("mode", MODES)
def test_the_colour_mode_follows_the_system_setting(view, mode: str) -> None:
    assert view("book/ch01_token_to_sequence", mode, DESKTOP).measured["theme"] == mode


@pytest.mark.parametrize("docname", PAGES)
def test_mathjax_typesets_every_equation(view, docname: str) -> None:
    measured = view(docname).measured
    assert measured["untypeset"] == []
    assert not measured["rawDisplayMath"], "raw $$ left in the page text"


def test_pages_with_mathematics_exist(view) -> None:
    assert view("book/ch01_token_to_sequence").measured["mathTotal"] >= 20
    assert view("book/appendix_notation").measured["mathTotal"] >= 10


# --- Phone layout: the contents, equations and long code --------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_phone_navigation_button_shows_the_chapter_list(chromium, site, mode: str) -> None:
    context, page, _ = open_page(chromium, f"{site}/book/ch01_token_to_sequence.html", mode=mode, width=PHONE)
    try:
        chapter_list = page.locator("nav.bd-docs-nav").get_by_role("link", name=re.compile("Conditioning and masking"))
        assert page.locator("button.primary-toggle").count() == 1, "one header, one navigation button"
        assert not any(link.is_visible() for link in chapter_list.all())
        page.locator("button.primary-toggle").click()
        page.locator("#pst-primary-sidebar-modal").get_by_role("link", name=re.compile("Conditioning and masking")).wait_for(state="visible")
    finally:
        context.close()


@pytest.mark.parametrize("mode", MODES)
def test_desktop_navigation_button_hides_and_shows_the_chapter_list(chromium, site, mode: str) -> None:
    context, page, _ = open_page(chromium, f"{site}/book/ch01_token_to_sequence.html", mode=mode, width=DESKTOP)
    try:
        sidebar = page.locator("#pst-primary-sidebar")
        assert sidebar.is_visible()
        page.locator("button.primary-toggle").click()
        sidebar.wait_for(state="hidden")
        page.locator("button.primary-toggle").click()
        sidebar.wait_for(state="visible")
    finally:
        context.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("docname", PAGES)
def test_no_page_scrolls_sideways_on_a_phone(view, docname: str, mode: str) -> None:
    measured = view(docname, mode, PHONE).measured
    assert measured["pageWidth"] <= PHONE, measured["widest"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("docname", PAGES)
def test_a_cut_off_equation_on_a_phone_shows_that_it_scrolls(view, docname: str, mode: str) -> None:
    for equation in view(docname, mode, PHONE).overflowing:
        where = _equations([equation])
        assert equation["wrapped"] and equation["scrolls"], where
        assert equation["tabindex"] == "0", f"a keyboard cannot scroll {where}"
        assert equation["mask"] not in ("", "none"), f"no fade at the cut edge of {where}"
        if equation["number"]:
            assert equation["numberBelow"], f"the number covers {where}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("docname", PAGES)
def test_no_display_equation_overflows_on_a_desktop(view, docname: str, mode: str) -> None:
    overflowing = view(docname, mode, DESKTOP).overflowing
    assert overflowing == [], f"wider than the column at {DESKTOP} px: {_equations(overflowing)}"


def test_an_equation_that_fits_is_not_a_tab_stop(view) -> None:
    equations = view("book/ch01_token_to_sequence", "light", DESKTOP).measured["equations"]
    fitting = [e for e in equations if e["formula"] <= e["room"] + 1]
    assert fitting and all(e["tabindex"] is None and not e["scrolls"] for e in fitting)


# --- Figures ------------------------------------------------------------------------------------

@pytest.mark.parametrize("docname", PAGES)
def test_every_image_loads_and_has_alt_text(view, docname: str) -> None:
    for image in view(docname).measured["images"]:
        assert image["complete"] and image["natural"] > 0, f"image did not load: {image['src']}"
        assert image["alt"], f"image without alt text: {image['src']}"


def test_chapter_1_figures_are_drawn(view) -> None:
    figures = [image for image in view("book/ch01_token_to_sequence").measured["images"] if image["in_figure"]]
    assert len(figures) >= 2 and all(image["shown"] >= 300 for image in figures)


@pytest.mark.parametrize("docname", CHAPTERS)
def test_figures_are_sharp_and_open_at_full_size(view, docname: str) -> None:
    images = view(docname).measured["images"]
    assert images, "a chapter has figures"
    for image in images:
        sharp = image["src"].endswith(".svg") or image["natural"] >= 2 * image["shown"] - 2
        assert sharp, f"{image['src']}: {image['natural']} px drawn at {image['shown']} px"
        assert image["link"] == image["src"], f"not linked to its full-size file: {image}"


# --- Weight -------------------------------------------------------------------------------------

@pytest.mark.parametrize("docname", CHAPTERS)
def test_a_chapter_loads_at_most_2_5_mb_in_35_requests(view, docname: str) -> None:
    loaded = view(docname).log.loaded
    total = sum(size for _, size in loaded)
    biggest = sorted(loaded, key=lambda item: -item[1])[:5]
    assert len(loaded) <= CHAPTER_REQUESTS, f"{len(loaded)} requests: {[url for url, _ in loaded]}"
    assert total <= CHAPTER_BYTES, f"{total} bytes; largest: {biggest}"


def test_a_chapter_loads_one_icon_source_and_no_search_index(view) -> None:
    urls = [url for url, _ in view("book/ch01_token_to_sequence").log.loaded]
    assert not any("fontawesome.js" in url for url in urls)
    assert not any(re.search(r"searchindex\.js|searchtools\.js", url) for url in urls)


# --- Launching and downloading the notebook --------------------------------------------------------

def test_launch_menu_opens_the_pages_notebook_on_colab_and_binder(chromium, site, built_book) -> None:
    context, page, _ = open_page(chromium, f"{site}/book/ch01_token_to_sequence.html", width=PHONE)
    try:
        page.locator(".dropdown-launch-buttons button.dropdown-toggle").click()
        links = page.locator(".dropdown-launch-buttons .dropdown-menu a")
        links.first.wait_for(state="visible")
        hrefs = {links.nth(i).inner_text().strip(): links.nth(i).get_attribute("href") for i in range(links.count())}
    finally:
        context.close()
    notebook = "_sources/book/ch01_token_to_sequence.ipynb"
    assert hrefs == {
        "Binder": f"https://mybinder.org/v2/gh/coursekit/sequence-level-loss/gh-pages?urlpath=lab/tree/{notebook}",
        "Colab": f"https://colab.research.google.com/github/coursekit/sequence-level-loss/blob/gh-pages/{notebook}",
    }
    # gh-pages holds the built site: the notebook and Binder's environment are in it.
    assert (built_book.html / notebook).is_file()
    assert (built_book.html / "binder" / "requirements.txt").is_file()


def test_download_menu_serves_the_readers_notebook(chromium, site) -> None:
    context, page, _ = open_page(chromium, f"{site}/book/ch01_token_to_sequence.html", width=DESKTOP)
    try:
        link = page.locator(".dropdown-download-buttons a", has_text=".ipynb")
        href = urljoin(page.url, link.get_attribute("href"))
        notebook = json.loads(page.request.get(href).text())
    finally:
        context.close()
    text = "".join("".join(cell["source"]) for cell in notebook["cells"])
    assert "{prf:" not in text and ":::" not in text and "glue" not in text and "correct: true" not in text


# --- Quizzes ------------------------------------------------------------------------------------

def _check_choice_quiz(quiz) -> int:
    clicks = 0
    for option in quiz.locator(".ck-quiz-option").all():
        explanation = quiz.page.locator(f"[id='{option.get_attribute('data-explain')}']")
        assert option.get_attribute("aria-describedby") is None, "described before it is answered"
        assert not explanation.is_visible()
        option.click()
        clicks += 1
        correct = option.get_attribute("data-correct") == "true"
        assert quiz.locator(".ck-quiz-verdict").inner_text() == ("Correct" if correct else "Incorrect")
        assert option.get_attribute("aria-describedby") == explanation.get_attribute("id")
        assert explanation.is_visible() and len(explanation.inner_text()) > 12
        assert "\\" not in explanation.inner_text() and "\\" not in quiz.locator(".ck-quiz-feedback").inner_text()
        assert ("ck-correct" if correct else "ck-incorrect") in option.get_attribute("class")
    return clicks


def _check_match_quiz(quiz) -> int:
    feedback = quiz.locator(".ck-quiz-feedback")
    quiz.locator(".ck-quiz-definition").first.click()
    assert feedback.inner_text().startswith("First choose a term")
    clicks = 1
    for term in quiz.locator(".ck-quiz-term").all():
        pair = term.get_attribute("data-pair")
        term.click()
        wrong = quiz.locator(f".ck-quiz-definition:not([data-pair='{pair}']):not(.ck-matched)")
        if wrong.count():
            wrong.first.click()
            assert quiz.locator(".ck-quiz-verdict").inner_text() == "Incorrect"
            clicks += 1
        quiz.locator(f".ck-quiz-definition[data-pair='{pair}']").click()
        assert quiz.locator(".ck-quiz-verdict").inner_text() == "Correct"
        assert "ck-matched" in term.get_attribute("class")
        clicks += 2
    assert "all pairs matched" in feedback.inner_text()
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


def test_quiz_feedback_says_the_verdict_and_typesets_the_explanation(chromium, site) -> None:
    context, page, _ = open_page(chromium, f"{site}/book/ch01_token_to_sequence.html")
    try:
        quiz = page.locator("#ch01-quiz-mean")
        quiz.locator(".ck-quiz-option[data-correct='true']").click()
        assert quiz.locator(".ck-quiz-verdict").inner_text() == "Correct"
        explanation = page.locator("#" + quiz.locator(".ck-quiz-option[data-correct='true']").get_attribute("data-explain"))
        assert explanation.locator("mjx-container").count() >= 1
        # A screen reader hears the explanation after the verdict, its formula as MathML, not TeX.
        spoken = quiz.locator(".ck-quiz-feedback .ck-visually-hidden")
        assert spoken.locator("mjx-container mjx-assistive-mml math").count() >= 1
        assert "\\text" not in spoken.text_content()
    finally:
        context.close()


def test_quiz_option_that_is_only_a_formula_has_a_spoken_label(chromium, site) -> None:
    context, page, _ = open_page(chromium, f"{site}/book/ch01_token_to_sequence.html")
    try:
        option = page.locator("#ch01-quiz-mean .ck-quiz-option").nth(3)
        assert option.get_attribute("aria-label") == "e^(-1.0) ≈ 0.368"
        assert page.get_by_role("button", name="e^(-1.0) ≈ 0.368").count() == 1
    finally:
        context.close()


# --- Keyboard -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_tab_moves_between_controls_and_never_stops_on_a_formula(chromium, site, mode: str) -> None:
    context, page, _ = open_page(chromium, f"{site}/book/ch01_token_to_sequence.html", mode=mode)
    try:
        assert page.locator("mjx-container[tabindex='0']").count() == 0
        stops = []
        for _ in range(120):
            page.keyboard.press("Tab")
            stops.append(page.evaluate("() => { const e = document.activeElement; return e.closest('mjx-container') ? 'formula' : e.tagName; }"))
        assert "formula" not in stops
        # Space scrolls the page; it opens no formula menu.
        page.locator("main p").first.click()
        page.keyboard.press("Space")
        page.wait_for_timeout(300)
        assert page.locator(".CtxtMenu_Menu").count() == 0
    finally:
        context.close()


def test_solution_toggles_say_which_solution_they_show(chromium, site) -> None:
    context, page, _ = open_page(chromium, f"{site}/book/ch01_token_to_sequence.html")
    try:
        toggles = page.locator(".solution button.toggle-button")
        labels = [toggles.nth(i).get_attribute("aria-label") for i in range(toggles.count())]
        assert len(labels) >= 3 and all(re.fullmatch(r"Show solution to Exercise 1\.\d+", label or "") for label in labels), labels
        first = toggles.first
        first.focus()
        page.keyboard.press("Enter")
        page.wait_for_function("(e) => e.getAttribute('aria-expanded') === 'true'", arg=first.element_handle())
        assert first.get_attribute("aria-label") == labels[0].replace("Show", "Hide")
    finally:
        context.close()


@pytest.mark.parametrize("mode", MODES)
def test_a_focused_control_shows_a_focus_ring(chromium, site, mode: str) -> None:
    context, page, _ = open_page(chromium, f"{site}/book/ch01_token_to_sequence.html", mode=mode)
    try:
        for selector in (".solution button.toggle-button", ".ck-quiz-option"):
            # Focus a link shortly before the control, then Tab to it: focus that came from the keyboard.
            page.evaluate("""(selector) => {
                const target = document.querySelector(selector);
                const links = [...document.querySelectorAll('main a[href]')].filter(a => a.offsetParent &&
                    (a.compareDocumentPosition(target) & Node.DOCUMENT_POSITION_FOLLOWING));
                links[links.length - 1].focus();
            }""", selector)
            for _ in range(30):
                page.keyboard.press("Tab")
                if page.evaluate("(selector) => document.activeElement.matches(selector)", selector):
                    break
            ring = page.evaluate("""(selector) => {
                const e = document.activeElement; const s = getComputedStyle(e);
                return {matches: e.matches(selector), style: s.outlineStyle, width: parseFloat(s.outlineWidth)};
            }""", selector)
            assert ring["matches"] and ring["style"] != "none" and ring["width"] >= 2, (selector, ring)
    finally:
        context.close()


# --- Search -------------------------------------------------------------------------------------

def _search(chromium, site, query: str) -> list[dict]:
    context, page, log = open_page(chromium, f"{site}/search.html?q={query}")
    try:
        page.wait_for_function("() => /finished|did not match/i.test((document.querySelector('.search-summary') || {}).innerText || '')")
        page.wait_for_function("""() => [...document.querySelectorAll('#search-results ul.search li')]
            .every(li => li.querySelector('p.context, span'))""")
        page.evaluate("() => window.MathJax.startup.promise.then(() => MathJax.typesetPromise())")
        results = page.evaluate("""() => [...document.querySelectorAll('#search-results ul.search li')].map(li => ({
            href: li.querySelector('a').getAttribute('href'), title: li.querySelector('a').innerText,
            snippet: li.querySelector('p.context') ? li.querySelector('p.context').innerText : '',
            formulas: li.querySelectorAll('p.context mjx-container').length}))""")
        assert log.console_errors == [] and log.outside_requests == []
        return results
    finally:
        context.close()


def test_search_finds_perplexity(chromium, site) -> None:
    hits = [result["title"] for result in _search(chromium, site, "perplexity")]
    assert any("token loss to sequence loss" in hit.lower() or "glossary" in hit.lower() for hit in hits), hits


@pytest.mark.parametrize("query", ["label smoothing", "perplexity", "epsilon"])
def test_search_snippets_show_typeset_formulas_not_tex(chromium, site, query: str) -> None:
    results = _search(chromium, site, query)
    assert results
    for result in results:
        assert not re.search(r"\\[()\[\]]|\\[a-zA-Z]+", result["snippet"]), result
    assert any(result["formulas"] for result in results), "no snippet holds a formula"


def test_search_lists_each_page_once(chromium, site) -> None:
    results = _search(chromium, site, "label smoothing")
    hrefs = [result["href"] for result in results]
    assert len(hrefs) == len(set(hrefs)), hrefs
    chapter = [result for result in results if result["href"] == "book/ch05_label_smoothing.html"]
    assert len(chapter) == 1 and "Contents" not in chapter[0]["snippet"], chapter
    assert len(chapter[0]["snippet"]) > 100, chapter


# --- Exercises ----------------------------------------------------------------------------------

def test_exercise_solution_opens_on_click(chromium, site) -> None:
    context, page, _ = open_page(chromium, f"{site}/book/ch01_token_to_sequence.html")
    try:
        solution = page.locator(".solution.dropdown").first
        body = solution.locator("p:not(.admonition-title)").first
        page.wait_for_selector(".solution.dropdown .toggle-button")
        assert not body.is_visible()
        solution.locator(".toggle-button").first.click()
        body.wait_for(state="visible")
        assert body.is_visible()
    finally:
        context.close()
