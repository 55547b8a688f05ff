"""Fixtures and collection rules shared by the whole suite.

Test modules own their specific fixtures; what lives here is what several
areas need: the repository root, an environment in which the real tools
(jupyter-book, nbgrader, alembic) are found on PATH, whether we run in CI
(where a missing system tool is a failure rather than a skip), single-threaded
torch for the model tests, and the book built once per test run.

The suite runs in parallel under pytest-xdist (``-n auto --dist loadgroup`` in
pyproject.toml). Three rules, applied at collection below, keep that cheap and
safe:

* a test that uses a module- or session-scoped fixture defined in its own test
  module joins one xdist group with every other user of that fixture (one group
  per fixture parameter), so the fixture is set up on one worker only;
* the book is built once per run for all workers (``built_book``: the first
  worker to need it builds it under a file lock in the run's shared temporary
  folder, the others wait and read it);
* tests that need the built book or the graded course are ``slow``, and tests
  parametrized by an assignment or a book page get its marker (``a3``,
  ``ch07``), so ``-m "not slow"`` and ``-m a3`` select the right tests.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The browser tests and bench/reader_report.py open pages with the same helpers (bench/browser_pages.py).
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.browser_pages import CHROMIUM, CHROMIUM_ARGS, toc_pages  # noqa: E402 - needs the repository on sys.path

VENV_BIN = Path(sys.executable).parent

# nbgrader runs `alembic` (and the kernels run `python`) from PATH.
os.environ["PATH"] = str(VENV_BIN) + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Under pytest-xdist one worker per core already keeps every core busy: torch's
# other threads would only oversubscribe the CPU (its OpenMP threads spin while
# they wait), which measured about 40 % more CPU time on the torch-heavy tests.
# Set before torch is first imported; kernels, the book build and the grader's
# runs started by a worker inherit it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

#: the grading secret of every course the suite grades, so that each run draws the same hidden inputs and a
#: failure can be reproduced; tests/test_grading_secret.py removes it to test the course's secret file.
GRADING_SECRET = bytes(range(32))
os.environ["COURSEKIT_GRADING_SECRET"] = GRADING_SECRET.hex()


def in_ci() -> bool:
    """True when running under CI (CI=true), where missing tools must fail, not skip."""
    return os.environ.get("CI", "").lower() == "true"


def require_system_tool(path_or_name: str, why: str) -> str:
    """Return the tool's path; skip (or fail under CI) with ``why`` when it is missing."""
    found = shutil.which(path_or_name) or (path_or_name if Path(path_or_name).exists() else None)
    if found is None:
        message = f"{path_or_name} not found: {why}"
        if in_ci():
            pytest.fail(message + " (CI=true: a missing tool is a failure)")
        pytest.skip(message)
    return found


def require_sandbox() -> None:
    """Skip (or fail under CI) when the grader's bubblewrap sandbox cannot be set up here."""
    from coursekit.grading.sandbox import sandbox_available

    ok, reason = sandbox_available()
    if not ok:
        if in_ci():
            pytest.fail(f"the sandbox is required in CI: {reason}")
        pytest.skip(f"the sandbox is not available here: {reason}")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Run the test with torch on one thread (bit-for-bit reproducible CPU training), then restore."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- The built book, shared by tests/test_book.py and tests/test_browser.py ---------------

# Files that are not in _toc.yml and must not become pages (only_build_toc_files), written
# into the temporary copy before the build. The hidden one is the case sphinx-external-toc
# misses (it lists candidate files with glob, which skips hidden folders).
STRAY_SOURCES = (".pytest_cache/README.md", "scratch/notes.md")




class BuiltBook:
    """A book built from a temporary copy of the repository."""

    def __init__(self, root: Path, seconds: float, reused_cache: bool) -> None:
        self.root = root
        self.html = root / "_build" / "html"
        self.seconds = seconds
        self.reused_cache = reused_cache

    def page(self, docname: str) -> Path:
        return self.html / f"{docname}.html"

    def read(self, docname: str) -> str:
        return self.page(docname).read_text(encoding="utf-8")


def run_shared_dir(factory: pytest.TempPathFactory) -> Path:
    """A folder that every worker of this test run sees, and no other run.

    Under pytest-xdist each worker's base temporary folder lies inside the
    controller's, which is made afresh for each run; without xdist the base
    temporary folder itself is the run's.
    """
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) across processes."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_book_copy(root: Path) -> dict:
    """Copy the repository to ``root`` and build the book there; return what BuiltBook needs, or the error."""
    from coursekit.bookbuild import build_book, build_lock, copy_sources, execution_key, kernel_environment

    # Left over when a worker died mid-build (its lock went with it): start again.
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    copy_sources(REPO_ROOT, root)
    assets = REPO_ROOT / "_build" / "assets"
    if not (assets / "_static" / "mathjax" / "tex-chtml.js").exists():
        return {"error": "MathJax is missing under _build/assets: run `make book` first (it installs the pinned mathjax npm package there)"}
    for stray in STRAY_SOURCES:
        (root / stray).parent.mkdir(parents=True, exist_ok=True)
        (root / stray).write_text("# A stray page\n\nNot in _toc.yml, so it must not be built.\n")

    reused = False
    stamp = REPO_ROOT / "_build" / ".coursekit-hash"
    cache = REPO_ROOT / "_build" / ".jupyter_cache"
    # Shared: the book build of a `make book` running in the repository holds it exclusively (not the
    # Makefile's MathJax step before it); a test run started beside one waits here (pytest_sessionstart says so).
    try:
        key = execution_key(root, kernel_environment(root / "_build"))
    except RuntimeError as error:
        return {"error": f"the book build failed:\n{error}"}
    with build_lock(REPO_ROOT / "_build", shared=True):
        shutil.copytree(assets, root / "_build" / "assets")
        if not in_ci() and cache.is_dir() and stamp.exists():
            if stamp.read_text().strip() == key:
                shutil.copytree(cache, root / "_build" / ".jupyter_cache")
                shutil.copy2(stamp, root / "_build" / ".coursekit-hash")
                reused = True

    started = time.monotonic()
    try:
        build_book(root, force=not reused, quiet=True)
    except RuntimeError as error:
        return {"error": f"the book build failed:\n{error}"}
    return {"error": None, "seconds": time.monotonic() - started, "reused_cache": reused}


@pytest.fixture(scope="session")
def built_book(tmp_path_factory: pytest.TempPathFactory) -> BuiltBook:
    """The book, built once per test run with ``-W -n --keep-going`` (coursekit.bookbuild).

    The copy gets the repository's files and ``_build/assets`` (MathJax, student
    notebooks). Locally, the repository's own execution cache is reused when it was
    made from the same coursekit source with the same CPU kernels (its stamp, bookbuild's
    execution_key, matches), so unchanged pages
    are not executed again; under CI=true every page is executed.

    Every xdist worker of the run shares one build: the first to get here builds
    under a file lock and records the outcome (a failure too, so that it is not
    retried by every worker); the others wait on the lock and read it. Tests only
    read the built copy.
    """
    shared = run_shared_dir(tmp_path_factory)
    root, outcome_file = shared / "built-book", shared / "built-book.json"
    with exclusive_lock(shared / "built-book.lock"):
        if not outcome_file.exists():
            outcome_file.write_text(json.dumps(_build_book_copy(root)))
        outcome = json.loads(outcome_file.read_text())
    if outcome["error"]:
        pytest.fail(outcome["error"])
    return BuiltBook(root, outcome["seconds"], outcome["reused_cache"])


# --- Collection: markers and xdist groups -----------------------------------------------------

ASSIGNMENT_ID = re.compile(r"^(a\d+)_[a-z0-9_]+$")
CHAPTER_PAGE = re.compile(r"^book/(ch\d\d)_[a-z0-9_]+$")
# Session fixtures so expensive that every test using one is slow: the whole book
# executed and built, and the nbgrader course with every assignment autograded.
SLOW_FIXTURES = ("built_book", "graded_course")


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """A headless Chromium (skipped when missing, a failure under CI=true), shared by the browser tests.

    One per worker: Playwright's synchronous API runs one instance per process.
    """
    executable = require_system_tool(CHROMIUM, "the browser tests drive Debian's chromium (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def chapter_markers() -> list[str]:
    """``chNN`` for every numbered chapter page in ``_toc.yml``."""
    return sorted({m[1] for page in toc_pages() if (m := CHAPTER_PAGE.match(page))})


def pytest_sessionstart(session: pytest.Session) -> None:
    """Say on the terminal when a build of the book holds the repository's _build (the workers' output is captured)."""
    from coursekit.bookbuild import build_lock_is_held

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not hasattr(session.config, "workerinput") and reporter is not None and build_lock_is_held(REPO_ROOT / "_build"):
        reporter.write_line(f"{REPO_ROOT / '_build' / '.build.lock'} is held (a `make book` is running?): the tests "
                            "that need the book wait for it to finish", yellow=True)


def pytest_configure(config: pytest.Config) -> None:
    for chapter in chapter_markers():
        config.addinivalue_line("markers", f"{chapter}: tests of book chapter {chapter[2:]}'s page")
    config.pluginmanager.register(_RunOrder(), "coursekit-run-order")


def _module_fixture_group(item: pytest.Item) -> str | None:
    """The xdist group of a test that uses a module- or session-scoped fixture of its own module.

    Such a fixture (the graded nbgrader course, a module's graded class, the
    browser) is set up once on every worker that runs one of its tests: putting
    all the module's users of such fixtures on one worker sets each up once. A
    parametrized fixture gives one group per parameter, so that its variants
    (one graded course per assignment) can still run side by side.
    """
    if not isinstance(item, pytest.Function):
        return None
    shares, variant = False, []
    # _fixtureinfo is where pytest keeps a test's resolved fixtures (there is no public accessor).
    for name, definitions in sorted(item._fixtureinfo.name2fixturedefs.items()):
        definition = definitions[-1]
        if definition.scope == "function" or getattr(definition.func, "__module__", None) != item.module.__name__:
            continue
        shares = True
        if definition.params:
            variant.append(f"{name}={item.callspec.params[name]}")
    if not shares:
        return None
    # No "]" in the name: pytest-xdist finds the group after the last "@" that follows the last "]".
    return "::".join([item.nodeid.split("::")[0], *variant])


def _parameter_markers(item: pytest.Item) -> set[str]:
    """``aN`` for a test parametrized by an assignment, ``chNN`` for one parametrized by a chapter page."""
    callspec = getattr(item, "callspec", None)
    found = set()
    for value in (callspec.params.values() if callspec else ()):
        if isinstance(value, str) and (match := ASSIGNMENT_ID.match(value) or CHAPTER_PAGE.match(value)):
            found.add(match[1])
    return found


def registered_markers(config: pytest.Config) -> set[str]:
    """Names of the markers declared in pyproject.toml or by pytest_configure hooks."""
    return {line.split(":")[0].split("(")[0].strip() for line in config.getini("markers")}


def _xdist_group(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("xdist_group")
    return marker.args[0] if marker is not None and marker.args else None


def _run_order(items: list[pytest.Item]) -> list[pytest.Item]:
    """The order in which the workers take the tests (pytest-xdist keeps it: --no-loadscope-reorder).

    The largest group of the book's tests that share one worker's fixtures (the
    browser's) goes first, as one unit of work: the worker that takes it builds
    the book in its first test and goes straight on to the rest of the group,
    so the longest chain of the run (the build, then every page in the browser)
    starts at once and never waits on another worker, nor ends the run alone.
    Without such a group, the first test that needs the book goes first. The
    other slow tests follow, then the rest of the book's tests (by when it is
    built), and the many fast tests last, where they even out the workers'
    finishing times. Within each class the collection order stays.
    """
    needs_book = ["built_book" in getattr(item, "fixturenames", ()) for item in items]
    book_groups = [_xdist_group(item) for item, needs in zip(items, needs_book) if needs and _xdist_group(item)]
    # dict.fromkeys: ties go to the first group, the same in every worker (a set's order is not).
    lead = max(dict.fromkeys(book_groups), key=book_groups.count) if book_groups else None
    first_book_test = needs_book.index(True) if any(needs_book) and lead is None else None

    def rank(index: int) -> int:
        if index == first_book_test or (lead is not None and _xdist_group(items[index]) == lead):
            return 0
        if items[index].get_closest_marker("slow") is None:
            return 3
        return 2 if needs_book[index] else 1

    return [items[i] for i in sorted(range(len(items)), key=rank)]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # tryfirst: the markers must be on the items before `-m` deselects and before
    # pytest-xdist reads the xdist_group markers.
    registered = registered_markers(config)
    for item in items:
        for name in sorted(_parameter_markers(item) & registered):
            item.add_marker(getattr(pytest.mark, name))
        if any(name in getattr(item, "fixturenames", ()) for name in SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)
        group = _module_fixture_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


class _RunOrder:
    """Orders the tests once ``-m`` and ``-k`` have deselected theirs (trylast), so that the lead group is one
    that runs (grader review r30, F8)."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        items[:] = _run_order(items)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a grouped test that pytest-xdist did not group: it would share a fixture with tests on another worker."""
    if (item.config.getoption("loadgroup", default=False) and item.get_closest_marker("xdist_group") is not None
            and "@" not in item.nodeid):
        pytest.fail("pytest-xdist ignored this test's xdist_group under --dist loadgroup: this pytest and "
                    "pytest-xdist do not work together (see requirements.in); run with -n 0", pytrace=False)
