"""The reader's report on a built book: accessibility, equations that overflow, page weight.

Every page of ``_toc.yml`` is opened in headless Chromium (Debian's
``/usr/bin/chromium``), served from 127.0.0.1, in light and dark mode at 390 and
1280 px, exactly as ``tests/test_browser.py`` opens it; the API reference's module
pages are opened in light mode at both widths. For each page it prints:

* axe-core's critical and serious WCAG 2 A/AA violations (after every choice quiz
  is answered), per mode, and the rule ids found;
* how many display equations are wider than their column at 390 and at 1280 px
  (at 390 px they scroll, with a fade; the tests allow none at 1280 px);
* what the page loads at 1280 px in light mode: requests, bytes as served
  (uncompressed) and the same bodies gzip-compressed (level 6; GitHub Pages
  compresses text responses on the fly, see the instructors' page).

Run it on a built book (``make book`` first)::

    make reader-report            # or: .venv/bin/python -m bench.reader_report [--html _build/html]

It measures and prints; the limits are checked by the browser tests.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError

from bench._common import markdown_table
from bench.browser_pages import (
    ANSWER_QUIZZES, CHROMIUM, CHROMIUM_ARGS, DESKTOP, MEASURE, PHONE, RUN_AXE, SERIOUS, open_page, overflowing, serve,
    toc_pages,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
AXE = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
MODES = ("light", "dark")


@dataclass
class PageReport:
    """What one page showed, over the modes and widths it was opened in."""

    docname: str
    serious: dict[str, int] = field(default_factory=dict)
    rules: set[str] = field(default_factory=set)
    overflowing: dict[int, int] = field(default_factory=dict)
    equations: int = 0
    requests: int = 0
    size: int = 0
    gzip_size: int = 0
    html_size: int = 0
    errors: list[str] = field(default_factory=list)


def measure_page(browser, site: str, html: Path, docname: str, axe: str, modes: tuple[str, ...]) -> PageReport:
    """Open ``docname`` in every mode at both widths; weigh it once (light, 1280 px)."""
    report = PageReport(docname, html_size=(html / f"{docname}.html").stat().st_size)
    for mode in modes:
        report.serious[mode] = 0
        for width in (PHONE, DESKTOP):
            weigh = mode == "light" and width == DESKTOP
            sys.stderr.write(f"{docname} {mode} {width} px\n")
            try:
                context, page, log = open_page(browser, f"{site}/{docname}.html", mode=mode, width=width, weigh=weigh)
            except PlaywrightError as error:
                # A page that never settles is reported as such; the other pages are still measured.
                report.errors.append(f"{mode} {width} px: {str(error).splitlines()[0]}")
                continue
            try:
                measured = page.evaluate(MEASURE)
                page.evaluate(ANSWER_QUIZZES)
                page.add_script_tag(content=axe)
                violations = [v for v in page.evaluate(RUN_AXE) if v["impact"] in SERIOUS]
            finally:
                context.close()
            report.serious[mode] = max(report.serious[mode], len(violations))
            report.rules.update(f"{v['id']} ({v['impact']})" for v in violations)
            report.overflowing[width] = max(report.overflowing.get(width, 0), len(overflowing(measured)))
            report.equations = len(measured["equations"])
            if weigh:
                report.requests, report.size, report.gzip_size = len(log.loaded), log.total_size, log.total_gzip_size
    return report


def _kb(size: int) -> str:
    return f"{size / 1000:,.0f} kB"


def render(pages: list[PageReport], api: list[PageReport]) -> str:
    """The report as Markdown: one table of the book's pages, one line per API summary."""
    rows = [[p.docname, str(p.serious["light"]), str(p.serious["dark"]),
             "; ".join(sorted(p.rules) + [f"did not load: {e}" for e in p.errors]) or "-",
             f"{p.overflowing.get(PHONE, '?')} / {p.equations}", str(p.overflowing.get(DESKTOP, "?")),
             str(p.requests), _kb(p.size), _kb(p.gzip_size), _kb(p.html_size)] for p in pages]
    lines = ["## The reader's report", "",
             "Axe: critical + serious WCAG 2 A/AA rules violated (light, dark; worst of 390 and 1280 px). "
             "Overflowing: display equations wider than their column. Weight: everything the page loads "
             "at 1280 px, light mode, as served and gzip-compressed.", "",
             markdown_table(["page", "axe light", "axe dark", "rules", "overflow 390 px / equations",
                             "overflow 1280 px", "requests", "bytes", "gzip", "HTML"], rows)]
    chapters = [p for p in pages if "/ch" in p.docname]
    if chapters:
        heaviest = max(chapters, key=lambda p: p.size)
        lines += ["", f"Heaviest chapter: {heaviest.docname}: {heaviest.size:,} bytes ({heaviest.gzip_size:,} gzip) "
                      f"in {heaviest.requests} requests; most requests: {max(p.requests for p in chapters)}."]
    if api:
        heaviest = max(api, key=lambda p: p.size)
        lines += [f"API reference: {len(api)} module pages; axe critical+serious (light): "
                  f"{sum(p.serious['light'] for p in api)}; pages wider than a phone are checked by the tests. "
                  f"Heaviest: {heaviest.docname}: HTML {heaviest.html_size:,} bytes, loads {heaviest.size:,} bytes "
                  f"({heaviest.gzip_size:,} gzip) in {heaviest.requests} requests."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=REPO_ROOT / "_build" / "html", help="the built book (make book)")
    parser.add_argument("--pages", nargs="*", help="docnames to report (default: every page of _toc.yml)")
    parser.add_argument("--no-api", action="store_true", help="leave out the API reference's module pages")
    args = parser.parse_args(argv)
    if not (args.html / "index.html").is_file():
        parser.error(f"--html: no built book at {args.html} (expected index.html there); run `make book` first")
    if not AXE.is_file():
        parser.error(f"axe-core is missing at {AXE}: run `npm ci` (it installs the pinned version; `make book` and `make test` run it)")
    axe = AXE.read_text(encoding="utf-8")
    docnames = args.pages or toc_pages()
    api_names = [] if args.no_api else sorted(f"book/api/{p.stem}" for p in (args.html / "book" / "api").glob("*.html"))

    from playwright.sync_api import sync_playwright

    with serve(args.html) as site, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            pages = [measure_page(browser, site, args.html, name, axe, MODES) for name in docnames]
            api = [measure_page(browser, site, args.html, name, axe, ("light",)) for name in api_names]
        finally:
            browser.close()
    sys.stdout.write(render(pages, api))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
