"""Reading the built book in headless Chromium: shared by the browser tests and the reader report.

:func:`serve` serves a built HTML folder on 127.0.0.1 (a free port); :func:`open_page`
opens one page in a fresh browser context (a colour mode, a viewport width), blocks
and records every request that would leave 127.0.0.1, and waits until MathJax has
typeset, coursebook.js has fitted the equations, no request has been in flight for
half a second and no CSS transition runs. A :class:`Tab` does the same for page
after page in one browser tab. The JavaScript snippets read
what the tests and ``bench/reader_report.py`` look at: the equations and their
widths, images, sideways scrolling (:data:`MEASURE`), and axe-core's WCAG 2 A/AA
violations (:data:`RUN_AXE`) after every choice quiz is answered (:data:`ANSWER_QUIZZES`).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parents[1]
PHONE, DESKTOP = 390, 1280
SERIOUS = ("critical", "serious")
PATIENCE_MS = 120_000
#: how long no request may be in flight before a page counts as loaded (Playwright's ``networkidle`` waits as long).
QUIET_MS = 500
# gzip level of the compressed sizes: zlib's default, the level the instructors' page quotes
# (a server compressing on the fly may use another).
GZIP_LEVEL = 6


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        """Keep the output clean; failed requests are recorded by the browser."""


@contextlib.contextmanager
def serve(html: Path) -> Iterator[str]:
    """Serve the folder ``html`` on 127.0.0.1 (a free port) while the block runs; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class Loaded:
    """One response a page loaded: its body's size as served (uncompressed) and gzip-compressed."""

    url: str
    size: int
    gzip_size: int


@dataclass
class PageLog:
    """What went wrong while a page was open, and what it loaded (while it loaded, and after)."""

    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    loaded: list[Loaded] = field(default_factory=list)

    @property
    def total_size(self) -> int:
        return sum(item.size for item in self.loaded)

    @property
    def total_gzip_size(self) -> int:
        return sum(item.gzip_size for item in self.loaded)


def toc_pages(root: Path = REPO_ROOT) -> list[str]:
    """Docnames of every page in ``_toc.yml``, root first, in reading order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries or []:
            if "file" in entry:
                pages.append(str(entry["file"]).removesuffix(".md").removesuffix(".ipynb"))
            walk(entry.get("sections", []))
            walk(entry.get("chapters", []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    walk(toc.get("chapters", []))
    return pages


def overflowing(measured: dict) -> list[dict]:
    """The display equations of a page measured by :data:`MEASURE` that are wider than their room."""
    return [e for e in measured["equations"] if e["formula"] > e["room"] + 1]


def open_page(chromium, url: str, *, mode: str = "light", width: int = DESKTOP, weigh: bool = False):
    """Open ``url`` in a fresh context (``mode`` as the system colour scheme), blocking requests
    that leave 127.0.0.1, and wait as :meth:`Tab.visit` does.

    Every request that finishes while the context is open is recorded in ``log.loaded``, those that
    measuring, clicking or axe cause after the load too; with ``weigh``, with its body's size (and its gzip
    size). A redirect has no body to weigh; a body that cannot be read is weighed as empty and named in
    ``log.failed_requests``, except one still being read when the context closes, which is weighed as
    empty and may be recorded only after the close.
    Returns the browser context (close it), the page and its :class:`PageLog`.
    """
    tab = Tab(chromium, mode=mode, width=width, weigh=weigh)
    try:
        log = tab.visit(url)
    except BaseException:
        tab.close()
        raise
    return tab.context, tab.page, log


class Tab:
    """One browser tab, in a context of its own, that loads page after page, each as on a first visit.

    It blocks and records every request that would leave 127.0.0.1. Each :meth:`visit` first waits
    until the open page is quiet, so that what it started is reported, and then starts a new
    :class:`PageLog`: a request is recorded in the log that was current when it started, a console
    error in the log that is current when Playwright reports it. Every document starts with empty
    local and session storage (the theme keeps its colour scheme there).

    The pages share the context and its renderer process, which is what makes a tab cheaper than a
    fresh context per page (``api_views`` in tests/test_browser.py gives the measurement). Routing
    turns the browser's HTTP cache off, so each page still requests everything it needs.
    """

    def __init__(self, chromium, *, mode: str = "light", width: int = DESKTOP, weigh: bool = False) -> None:
        self.context = chromium.new_context(viewport={"width": width, "height": 900}, color_scheme=mode)
        self.weigh = weigh
        self.log = PageLog()
        self.traffic = _Traffic()
        self._logs: dict[object, PageLog] = {}
        try:
            self.context.route("**/*", self._guard)
            # Run in every new document before its own scripts. The tab's first, empty document has an
            # opaque origin, where reading the storage throws.
            self.context.add_init_script("try { localStorage.clear(); sessionStorage.clear(); } catch (error) {}")
            # Generous: the suite shares a busy machine, and a slow load is not what these tests judge.
            self.context.set_default_timeout(PATIENCE_MS)
            self.context.set_default_navigation_timeout(PATIENCE_MS)
            self.page = self.context.new_page()
            self.page.on("console", lambda message: message.type == "error" and self.log.console_errors.append(message.text))
            self.page.on("pageerror", lambda error: self.log.console_errors.append(f"uncaught: {error}"))
            self.page.on("request", self._started)
            self.page.on("requestfailed", self._failed)
            self.page.on("requestfinished", self._finished)
            self.page.on("response", self._responded)
        except BaseException:
            self.close()
            raise

    def visit(self, url: str, *, mode: str | None = None) -> PageLog:
        """Open ``url`` in this tab and return its new log once it is ready: MathJax has typeset,
        coursebook.js has fitted the equations, no request has been in flight for :data:`QUIET_MS`
        (see :class:`_Traffic`) and no CSS transition runs.

        ``mode`` sets the system colour scheme first; without it the page opens in the last one set
        (at first the tab's ``mode``).
        """
        self._settle()
        self.log = PageLog()
        if mode is not None:
            self.page.emulate_media(color_scheme=mode)
        self.page.goto(url, wait_until="load")
        # Sphinx loads MathJax only on pages with mathematics (and on the search page).
        if self.page.locator("script[src*='mathjax']").count():
            self.page.wait_for_function("() => window.MathJax && window.MathJax.startup && window.MathJax.startup.promise")
            self.page.evaluate("() => window.MathJax.startup.promise.then(() => true)")
        self.page.wait_for_function("() => document.documentElement.dataset.ckEquationsReady === 'true'")
        self.traffic.wait_until_quiet(self.page, url)
        self._wait_for_transitions()
        return self.log

    def close(self) -> None:
        """Close the tab's browser context (and with it the page)."""
        with contextlib.suppress(Exception):
            self.context.close()

    def _wait_for_transitions(self) -> None:
        """Wait until no CSS transition runs on the page (the theme's colour changes among them)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        try:
            self.page.wait_for_function("() => !document.getAnimations().some(a => a instanceof CSSTransition)")
        except PlaywrightTimeoutError as error:
            running = self.page.evaluate(
                "() => document.getAnimations().filter(a => a instanceof CSSTransition)"
                ".map(a => a.transitionProperty + ' on ' + (a.effect && a.effect.target ? a.effect.target.tagName : '?'))")
            raise PlaywrightTimeoutError(f"{self.page.url}: CSS transitions still running: {running}: {error}") from error

    def _settle(self) -> None:
        """Wait until the open page, if any, is quiet: its requests have ended and been reported."""
        if self.page.url != "about:blank":
            self.traffic.wait_until_quiet(self.page, self.page.url)

    def _take_log(self, request) -> PageLog:
        return self._logs.pop(request, self.log)

    def _guard(self, route) -> None:
        target = urlparse(route.request.url)
        if target.scheme in ("http", "https", "ws", "wss") and target.hostname != "127.0.0.1":
            self._logs.get(route.request, self.log).outside_requests.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    def _started(self, request) -> None:
        self._logs[request] = self.log
        self.traffic.started(request)

    def _responded(self, response) -> None:
        if response.status >= 400:
            self._logs.get(response.request, self.log).failed_requests.append(f"{response.url}: HTTP {response.status}")

    def _finished(self, request) -> None:
        log = self._take_log(request)
        body = b""
        try:
            response = request.response() if self.weigh else None
            if response is not None and not 300 <= response.status < 400:
                body = response.body()
        except Exception as error:  # noqa: BLE001 - recorded here: left to Playwright, it would be raised by the next call, maybe in another test
            if type(error).__name__ != "TargetClosedError":  # the test closed the page: nothing went wrong
                log.failed_requests.append(f"{request.url}: its body could not be read: {error}")
        finally:
            log.loaded.append(Loaded(request.url, len(body), len(gzip.compress(body, GZIP_LEVEL)) if body else 0))
            # Only now: the waits for quiet (in visit) then also wait for the body just read.
            self.traffic.ended(request)

    def _failed(self, request) -> None:
        self._take_log(request).failed_requests.append(f"{request.url}: {request.failure}")
        self.traffic.ended(request)


class _Traffic:
    """The requests of a page (or a tab's pages) that have started and not yet ended, and when that last changed.

    Used in place of Playwright's ``networkidle`` load state, which once waited out its whole
    :data:`PATIENCE_MS` on ch09 (CI at 4bb98aa, a busy machine; the page loads in 3 s here) without
    saying what it waited for. Like it, this sees the requests of the page and its frames but not a
    service worker's; unlike it, it would wait on an EventSource stream (the book opens none), and it
    names the requests still in flight when it gives up.
    """

    def __init__(self) -> None:
        self.in_flight: dict[object, str] = {}
        self.changed = time.monotonic()

    def started(self, request) -> None:
        self.in_flight[request] = request.url
        self.changed = time.monotonic()

    def ended(self, request) -> None:
        self.in_flight.pop(request, None)
        self.changed = time.monotonic()

    def wait_until_quiet(self, page, url: str) -> None:
        """Return once nothing has been in flight for :data:`QUIET_MS`; after :data:`PATIENCE_MS`, raise
        Playwright's ``TimeoutError`` (a ``playwright.sync_api.Error``, as its own waits raise), naming
        what is still in flight.

        Each poll is a round trip to Playwright's driver, which delivers the events it already has; a
        request that the browser has started but not yet reported to the driver is not seen (nor by
        Playwright's ``networkidle``).
        """
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        deadline = time.monotonic() + PATIENCE_MS / 1000
        while True:
            page.wait_for_timeout(50)
            if not self.in_flight and time.monotonic() - self.changed >= QUIET_MS / 1000:
                return
            if time.monotonic() > deadline:
                waiting = (f"requests still in flight: {sorted(self.in_flight.values())}" if self.in_flight else
                           f"requests kept starting, with never {QUIET_MS} ms without one")
                raise PlaywrightTimeoutError(f"{url}: after {PATIENCE_MS / 1000:.0f} s, {waiting}")


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
    formulaTabStops: [...document.querySelectorAll('mjx-container[tabindex]')].filter(e => e.tabIndex >= 0).length,
    solutionToggles: [...document.querySelectorAll('.solution button.toggle-button')].map(b => b.getAttribute('aria-label')),
    code: [...document.querySelectorAll('main .cell .cell_input')].map(c => ({
      text: c.textContent, folded: !!c.closest('details.hide')})),
    listings: [...document.querySelectorAll('main div.highlight-python')].filter(h => !h.closest('.cell, .ck-quiz'))
      .map(h => ({lines: h.textContent.trimEnd().split('\\n').length, first: h.textContent.trim().split('\\n')[0],
                  folded: !!h.closest('details')})),
    githubLinks: document.querySelectorAll('main a.github').length,
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
