"""Benchmark: how long the book takes to build, from clean and when little changed.

Three builds of one temporary copy of the repository, through the same driver
``make book`` uses (:func:`coursekit.bookbuild.build_book`, ``-W -n
--keep-going``): a clean build with every page executed, a rebuild with nothing
changed (goal: under 30 s: no page may execute again), and a rebuild after one
chapter's code changed (only that chapter may execute again). Which pages ran
is read from jupyter-cache's records, not inferred from the times.

Tiny mode (a smoke run) builds a one-page book made in the temporary folder
with the repository's configuration, instead of the whole book.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

from bench._common import markdown_table
from coursekit.bookbuild import build_book, copy_sources

REPO_ROOT = Path(__file__).resolve().parents[1]
TOUCHED_CHAPTER = "book/ch01_token_to_sequence.md"
# What a one-page build reads besides its page: the configuration, and what the build driver
# publishes with every book (the Binder environment: the lock, and a wheel of coursekit built
# from pyproject.toml, README.md and the package's sources).
TINY_BUILD_FILES = ("_config.yml", "references.bib", "pyproject.toml", "README.md", "requirements.lock")
TINY_PAGE = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
# A one-page book

```{code-cell} ipython3
from coursekit.losses import perplexity
float(perplexity(2.0))
```
"""


def _prepare(root: Path, tiny: bool) -> str:
    """Lay out the sources under ``root``; return the page whose code will be touched."""
    assets = REPO_ROOT / "_build" / "assets"
    if not (assets / "_static" / "mathjax" / "tex-chtml.js").exists():
        raise RuntimeError("MathJax is missing under _build/assets: run `make book` first (it installs the pinned mathjax npm package there)")
    if tiny:
        root.mkdir(parents=True)
        for name in TINY_BUILD_FILES:
            shutil.copy2(REPO_ROOT / name, root / name)
        shutil.copytree(REPO_ROOT / "book" / "_ext", root / "book" / "_ext")
        shutil.copytree(REPO_ROOT / "coursekit", root / "coursekit", ignore=shutil.ignore_patterns("__pycache__"))
        (root / "book" / "page.md").write_text(TINY_PAGE)
        (root / "_toc.yml").write_text("format: jb-book\nroot: book/page\n")
        page = "book/page.md"
    else:
        copy_sources(REPO_ROOT, root)
        page = TOUCHED_CHAPTER
    shutil.copytree(assets / "_static" / "mathjax", root / "_build" / "assets" / "_static" / "mathjax")
    return page


def _executed_since(root: Path, since: dt.datetime) -> list[str]:
    from jupyter_cache import get_cache

    cache = get_cache(str(root / "_build" / ".jupyter_cache"))
    return sorted(Path(r.uri).stem for r in cache.list_cache_records() if r.created >= since)


def _timed_build(root: Path, *, force: bool) -> tuple[float, list[str]]:
    since = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    start = time.perf_counter()
    build_book(root, force=force, quiet=True)
    return time.perf_counter() - start, _executed_since(root, since)


def run(*, tiny: bool, out_dir: Path) -> str:
    """Time the three builds; return a markdown section and save ``book_build.png`` into ``out_dir``."""
    with tempfile.TemporaryDirectory(prefix="coursekit-bench-book-") as tmp:
        root = Path(tmp) / "book"
        page = _prepare(root, tiny)
        clean_s, clean_pages = _timed_build(root, force=True)
        unchanged_s, unchanged_pages = _timed_build(root, force=False)
        with (root / page).open("a") as source:
            source.write("\n```{code-cell} ipython3\n# a changed line of code\n```\n")
        touched_s, touched_pages = _timed_build(root, force=False)

    rows = [
        ["clean, every page executed", f"{clean_s:.1f}", len(clean_pages), ""],
        ["nothing changed", f"{unchanged_s:.1f}", len(unchanged_pages),
         "goal: under 30 s, nothing executed: " + ("met" if unchanged_s < 30 and not unchanged_pages else "NOT met")],
        [f"code of {Path(page).stem} changed", f"{touched_s:.1f}", len(touched_pages),
         "executed: " + (", ".join(touched_pages) or "none")],
    ]
    _plot(out_dir, [clean_s, unchanged_s, touched_s])
    scope = "a one-page book (tiny smoke run)" if tiny else "the whole book"
    return "\n".join([
        "## 4. Book build",
        "",
        f"Builds of {scope} through `coursekit.bookbuild.build_book` (`-W -n --keep-going`) in a temporary copy; "
        "pages executed are counted from jupyter-cache's records.",
        "",
        markdown_table(["build", "seconds", "pages executed", "note"], rows),
        "",
        "![book build times](book_build.png)",
    ])


def _plot(out_dir: Path, seconds: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3))
    ax.bar(["clean", "unchanged", "one chapter\nchanged"], seconds, color=["tab:gray", "tab:green", "tab:blue"])
    ax.set_ylabel("wall time (s)")
    ax.set_title("Book build time")
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "book_build.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    import sys

    print(run(tiny="--tiny" in sys.argv, out_dir=Path(tempfile.mkdtemp())))
