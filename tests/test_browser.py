"""The built book in a real browser: headless Debian Chromium driven by Playwright.

Pages are served from a local http.server on 127.0.0.1 (random port) over the
session's book build (``built_book`` in conftest.py). Every request that would
leave 127.0.0.1 is blocked and recorded, so a page that needs the network fails
here exactly as it would for an offline reader.

Each page is read as a reader would: on a phone (390 px) and a desktop (1280 px),
in light and dark mode (the system setting, which the book follows), by keyboard,
and with axe-core (the npm package pinned in package-lock.json) looking for
WCAG 2 A/AA violations. The ``view`` fixture loads a page once per mode and width, in
the tab it keeps for that mode and width (each page with empty storage and without the
HTTP cache, as on a first visit), and keeps what the tests look at. The API
reference's pages, about a hundred, are loaded in one tab on a phone, in both
modes, each with empty storage as on a first visit (``api_views``); the quiz test
also reads the pages in one tab.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urljoin

import pytest

from bench.browser_pages import (
    ANSWER_QUIZZES, DESKTOP, MEASURE, PHONE, RUN_AXE, SERIOUS,
    PageLog, Tab, open_page, overflowing, serve, toc_pages,
)
from conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.browser]

AXE = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
PAGES = toc_pages()
CHAPTERS = [page for page in PAGES if re.search(r"/ch\d\d_", page)]
MODES = ("light", "dark")
WIDTHS = (PHONE, DESKTOP)
COMBINATIONS = [(mode, width) for mode in MODES for width in WIDTHS]
# Budget of one chapter, everything it loads counted uncompressed.
CHAPTER_BYTES = 2_500_000
CHAPTER_REQUESTS = 35


@pytest.fixture(scope="session")
def site(built_book) -> Iterator[str]:
    """Base URL of the built HTML, served on 127.0.0.1 for the session."""
    with serve(built_book.html) as url:
        yield url


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.fail("axe-core is missing under node_modules: run `npm ci` (it installs the pinned version; `make book` and `make test` run it)")
    return AXE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def api_pages(built_book) -> list[str]:
    """The API reference's module pages (generated at build time, so not in _toc.yml)."""
    pages = sorted(f"book/api/{path.stem}" for path in (built_book.html / "book" / "api").glob("*.html"))
    assert len(pages) >= 30, pages
    return pages


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
        return overflowing(self.measured)


def read_page(page, log: PageLog, axe_source: str) -> PageView:
    """What the tests look at on a loaded page: its measurements, then axe's findings once every quiz is answered."""
    measured = page.evaluate(MEASURE)
    page.evaluate(ANSWER_QUIZZES)
    page.add_script_tag(content=axe_source)
    return PageView(log, measured, page.evaluate(RUN_AXE))


@pytest.fixture(scope="session")
def view(chromium, site, axe_source) -> Iterator:
    """``view(docname, mode, width)``: the page loaded, measured and checked by axe, once per session.

    Each mode and width has a tab of its own (:class:`bench.browser_pages.Tab`) that opens its
    pages one after the other, each with empty storage and without the HTTP cache, as on a first
    visit: cheaper than a fresh browser context per page, as ``api_views`` measured. The light
    desktop tab weighs what it loads (the chapters' budget is checked there).
    """
    views: dict[tuple[str, str, int], PageView] = {}
    tabs: dict[tuple[str, int], Tab] = {}

    def load(docname: str, mode: str = "light", width: int = DESKTOP) -> PageView:
        key = (docname, mode, width)
        if key not in views:
            if (mode, width) not in tabs:
                tabs[mode, width] = Tab(chromium, mode=mode, width=width, weigh=(mode, width) == ("light", DESKTOP))
            tab = tabs[mode, width]
            try:
                views[key] = read_page(tab.page, tab.visit(f"{site}/{docname}.html"), axe_source)
            except Exception as error:
                error.add_note(f"while opening or reading {docname} in {mode} mode at {width} px")
                raise
        return views[key]

    try:
        yield load
    finally:
        for tab in tabs.values():
            tab.close()


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


@pytest.fixture(scope="session")
def api_views(chromium, site, axe_source, api_pages: list[str]) -> dict[tuple[str, str], PageView]:
    """Every API page on a phone in both modes, by (docname, mode): loaded, measured and checked by axe.

    The pages are loaded one after the other in one tab (:class:`bench.browser_pages.Tab`), each
    with empty storage as on a first visit, rather than each in a fresh browser context: a page,
    in both modes, cost about 2.5 CPU-s instead of 5.3 (medians, measured side by side on a 2-core
    machine), and these are most of the pages the browser tests read.
    """
    views = {}
    tab = Tab(chromium, width=PHONE)
    try:
        for docname in api_pages:
            for mode in MODES:
                try:
                    views[docname, mode] = read_page(tab.page, tab.visit(f"{site}/{docname}.html", mode=mode), axe_source)
                except Exception as error:
                    error.add_note(f"while opening or reading {docname} in {mode} mode")
                    raise
    finally:
        tab.close()
    return views


@pytest.mark.parametrize("mode", MODES)
def test_every_api_page_passes_axe_and_fits_a_phone(api_views, api_pages: list[str], mode: str) -> None:
    problems = {}
    for docname in api_pages:
        phone = api_views[docname, mode]
        if (phone.serious or phone.log.console_errors or phone.log.failed_requests or phone.log.outside_requests
                or phone.measured["pageWidth"] > PHONE or phone.measured["theme"] != mode):
            problems[docname] = (phone.serious, phone.log.console_errors, phone.log.failed_requests, phone.log.outside_requests,
                                 phone.measured["pageWidth"], phone.measured["widest"], phone.measured["theme"])
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


@pytest.mark.parametrize("docname", PAGES)
def test_no_formula_is_a_tab_stop(view, docname: str) -> None:
    assert view(docname).measured["formulaTabStops"] == 0


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


# --- Code: what a reader reads is shown, plumbing and plotting are not ------------------------------

# The same test as coursebook.codecells.PLOTTING: a cell that calls pyplot or an Axes method of plotting.
PLOTTING = re.compile(r"\bplt\.|\.(subplots|savefig|set_xlabel|set_ylabel|legend|imshow)\(")


@pytest.mark.parametrize("docname", PAGES)
def test_code_shows_no_build_plumbing_and_folds_plotting(view, docname: str) -> None:
    for cell in view(docname).measured["code"]:
        assert not re.search(r"\bglue\(|myst_nb", cell["text"]), f"build plumbing shown: {cell['text'][:200]}"
        if PLOTTING.search(cell["text"]):
            assert cell["folded"], f"plotting code not folded: {cell['text'][:200]}"


@pytest.mark.parametrize("docname", PAGES)
def test_a_long_reference_listing_is_folded(view, docname: str) -> None:
    for listing in view(docname).measured["listings"]:
        assert listing["lines"] <= 30 or listing["folded"], listing


def test_chapter_3_shows_its_short_excerpt_of_batch_loss_in_view(view) -> None:
    # Chapter 3 quotes the one line of batch_loss that selects the real tokens: a short excerpt
    # is read in place; only a long listing goes behind a "Show the source of" button.
    listings = view("book/ch03_batches_reductions").measured["listings"]
    excerpt = [listing for listing in listings if "torch.where(counted" in listing["first"]]
    assert len(excerpt) == 1, listings
    assert excerpt[0]["lines"] <= 30 and not excerpt[0]["folded"], excerpt


# --- Weight -------------------------------------------------------------------------------------

@pytest.mark.parametrize("docname", CHAPTERS)
def test_a_chapter_loads_at_most_2_5_mb_in_35_requests(view, docname: str) -> None:
    log = view(docname).log
    biggest = [(item.url, item.size) for item in sorted(log.loaded, key=lambda item: -item.size)[:5]]
    assert len(log.loaded) <= CHAPTER_REQUESTS, f"{len(log.loaded)} requests: {[item.url for item in log.loaded]}"
    assert log.total_size <= CHAPTER_BYTES, f"{log.total_size} bytes; largest: {biggest}"


def test_a_chapter_loads_one_icon_source_and_no_search_index(view) -> None:
    urls = [item.url for item in view("book/ch01_token_to_sequence").log.loaded]
    assert not any("fontawesome.js" in url for url in urls)
    assert not any(re.search(r"searchindex\.js|searchtools\.js", url) for url in urls)


def test_links_to_github_draw_no_icon_from_the_brands_font(view) -> None:
    # Chapter 3 cites transformers' pull requests: the theme marks such links with a brands glyph.
    measured = view("book/ch03_batches_reductions")
    urls = [item.url for item in measured.log.loaded]
    assert measured.measured["githubLinks"] >= 1
    assert not any("fa-brands" in url for url in urls), urls


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
        assert not explanation.inner_text().rstrip().endswith(".."), explanation.inner_text()
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
    # The pages one after the other in one tab, each as on a first visit (empty storage).
    tab = Tab(chromium)
    try:
        for docname in PAGES:
            log = tab.visit(f"{site}/{docname}.html")
            tab.page.wait_for_function("() => [...document.querySelectorAll('.ck-quiz')].every(q => q.dataset.quizReady)")
            quizzes = tab.page.locator(".ck-quiz").all()
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
        tab.close()
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
        # Chapter 1's maximum-likelihood quiz: the reverse divergence, $\mathrm{KL}(p_\theta \Vert p_{\mathcal{D}})$.
        option = page.locator("#ch01-quiz-ml-kl .ck-quiz-option").nth(1)
        assert option.locator("mjx-container").count() == 1
        assert option.get_attribute("aria-label") == "KL(p_θ ‖ p_D)"
        assert page.get_by_role("button", name="KL(p_θ ‖ p_D)").count() == 1
        # Every option whose only content is a formula is named in words, not TeX.
        unnamed = page.evaluate("""() => [...document.querySelectorAll('.ck-quiz-option')].filter(b => {
            const copy = b.cloneNode(true); copy.querySelectorAll('mjx-container, .math').forEach(m => m.remove());
            return copy.textContent.trim() === '' && !/^[^\\\\]+$/.test(b.getAttribute('aria-label') || '');
        }).map(b => b.outerHTML.slice(0, 200))""")
        assert unnamed == []
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


@pytest.mark.parametrize("docname", PAGES)
def test_every_solution_toggle_names_its_exercise(view, docname: str) -> None:
    labels = view(docname).measured["solutionToggles"]
    assert all(re.fullmatch(r"Show solution to Exercise \d+\.\d+", label or "") for label in labels), labels


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
