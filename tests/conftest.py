"""Fixtures shared by the whole suite.

Test modules own their specific fixtures; what lives here is what several
areas need: the repository root, an environment in which the real tools
(jupyter-book, nbgrader, alembic) are found on PATH, and whether we run in CI
(where a missing system tool is a failure rather than a skip).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The browser tests and bench/reader_report.py open pages with the same helpers (bench/browser_pages.py).
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.browser_pages import toc_pages  # noqa: E402 - needs the repository on sys.path

VENV_BIN = Path(sys.executable).parent

# nbgrader runs `alembic` (and the kernels run `python`) from PATH.
os.environ["PATH"] = str(VENV_BIN) + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


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


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


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


@pytest.fixture(scope="session")
def built_book(tmp_path_factory: pytest.TempPathFactory) -> BuiltBook:
    """Build the book once per session with ``-W -n --keep-going`` (coursekit.bookbuild).

    The copy gets the repository's files and ``_build/assets`` (MathJax, student
    notebooks). Locally, the repository's own execution cache is reused when it was
    made from the same coursekit source (its hash stamp matches), so unchanged pages
    are not executed again; under CI=true every page is executed.
    """
    import time

    from coursekit.bookbuild import build_book, copy_sources, package_hash

    root = tmp_path_factory.mktemp("book")
    copy_sources(REPO_ROOT, root)
    assets = REPO_ROOT / "_build" / "assets"
    if not (assets / "_static" / "mathjax" / "tex-chtml.js").exists():
        pytest.fail("MathJax is missing under _build/assets: run `make venv` first")
    shutil.copytree(assets, root / "_build" / "assets")
    for stray in STRAY_SOURCES:
        (root / stray).parent.mkdir(parents=True, exist_ok=True)
        (root / stray).write_text("# A stray page\n\nNot in _toc.yml, so it must not be built.\n")

    reused = False
    stamp = REPO_ROOT / "_build" / ".coursekit-hash"
    cache = REPO_ROOT / "_build" / ".jupyter_cache"
    if not in_ci() and cache.is_dir() and stamp.exists() and stamp.read_text().strip() == package_hash(REPO_ROOT):
        shutil.copytree(cache, root / "_build" / ".jupyter_cache")
        shutil.copy2(stamp, root / "_build" / ".coursekit-hash")
        reused = True

    started = time.monotonic()
    try:
        build_book(root, force=not reused, quiet=True)
    except RuntimeError as error:
        pytest.fail(f"the book build failed:\n{error}")
    return BuiltBook(root, time.monotonic() - started, reused)
