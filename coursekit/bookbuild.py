"""Build the course book: ``python -m coursekit.bookbuild`` (what ``make book`` runs).

jupyter-cache keys a page's cached outputs on the page's own code, so a page
executed against an older ``coursekit`` would be served stale. This driver
therefore keys the cache on a hash of the package as well: when any file of
``coursekit`` changes (or ``--force`` is given, as CI does), the execution cache
and Sphinx's saved environment are dropped and every page runs again. The build fails on any Sphinx warning or
cell error (``-W -n --keep-going``) and on any execution report left behind.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE_SUFFIXES = (".py", ".pt", ".json", ".txt")


def package_hash(root: Path) -> str:
    """SHA-256 over the path and bytes of every source and data file of ``coursekit``."""
    digest = hashlib.sha256()
    for path in sorted((root / "coursekit").rglob("*")):
        if path.is_file() and path.suffix in PACKAGE_SUFFIXES and "__pycache__" not in path.parts:
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def copy_sources(source: Path, target: Path) -> None:
    """Copy the files git would commit (tracked plus untracked-but-not-ignored) to ``target``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=source, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        path = source / name
        if path.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / name)


def tree_hash(paths: list[Path], root: Path) -> str:
    """SHA-256 over the relative path and bytes of every file under ``paths``."""
    digest = hashlib.sha256()
    for top in paths:
        files = sorted(top.rglob("*")) if top.is_dir() else [top]
        for path in files:
            if path.is_file() and ".ipynb_checkpoints" not in path.parts:
                digest.update(path.relative_to(root).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def publish_student_versions(root: Path, destination: Path) -> None:
    """Generate every assignment's student notebook into ``destination``.

    The book links ``_static/assignments/<assignment>.ipynb``; generating them
    here with nbgrader on each build (when the course's sources changed) means
    those links can never point to a stale or missing notebook.
    """
    course = root / "assignments"
    if not (course / "nbgrader_config.py").is_file():
        return
    from coursekit.course.student_versions import generate_student_versions

    stamp = root / "_build" / ".assignments-hash"
    current = tree_hash([course / "nbgrader_config.py", course / "source"], root)
    if stamp.exists() and stamp.read_text().strip() == current:
        return
    shutil.rmtree(destination, ignore_errors=True)
    generate_student_versions(destination, course_dir=course)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(current)


def drop_execution_state(build_dir: Path) -> None:
    """Forget every page's executed outputs, so that the next build runs every page again.

    Two stores keep them: jupyter-cache's database, and Sphinx's saved environment
    (``.doctrees``), with which Sphinx re-reads, and so re-executes, only the pages whose
    source changed. Dropping the cache alone would leave the other pages' old outputs in place.

    Args:
        build_dir: the book's ``_build`` folder.
    """
    shutil.rmtree(build_dir / ".jupyter_cache", ignore_errors=True)
    shutil.rmtree(build_dir / ".doctrees", ignore_errors=True)


def build_book(root: Path, *, force: bool = False, quiet: bool = False) -> Path:
    """Build the book under ``root/_build/html`` and return the path of ``index.html``.

    Raises:
        RuntimeError: the build failed, or a page left an execution report.
    """
    root = root.resolve()
    build_dir = root / "_build"
    cache_dir = build_dir / ".jupyter_cache"
    stamp = build_dir / ".coursekit-hash"
    current = package_hash(root)
    if force or not stamp.exists() or stamp.read_text().strip() != current:
        drop_execution_state(build_dir)
    reports = build_dir / "html" / "reports"
    shutil.rmtree(reports, ignore_errors=True)
    mathjax = build_dir / "assets" / "_static" / "mathjax"
    if not (mathjax / "tex-chtml.js").exists():
        raise RuntimeError(
            f"MathJax is missing under {mathjax}: run `make venv` "
            "(it installs the pinned mathjax npm package there)"
        )

    publish_student_versions(root, mathjax.parent / "assignments")

    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    # The kernels must keep Jupyter's inline backend: under an inherited
    # MPLBACKEND=Agg (as the test suite sets) figures have no image output and
    # every glued or displayed figure would be pasted as "<Figure size ...>".
    env.pop("MPLBACKEND", None)
    command = [
        str(Path(sys.executable).parent / "jupyter-book"),
        "build", str(root), "--path-output", str(root),
        "-W", "-n", "--keep-going",
    ]
    output = None if not quiet else subprocess.PIPE
    result = subprocess.run(command, cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
    leftover = sorted(reports.glob("**/*")) if reports.exists() else []
    if result.returncode != 0 or leftover:
        detail = result.stdout[-20000:] if quiet and result.stdout else ""
        names = ", ".join(p.name for p in leftover)
        raise RuntimeError(
            f"jupyter-book build failed (exit {result.returncode}); execution reports: {names or 'none'}\n{detail}"
        )
    stamp.write_text(current)
    return build_dir / "html" / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: .)")
    parser.add_argument("--html", default="_build/html", help="(informational) where the HTML lands")
    parser.add_argument("--force", action="store_true", help="re-execute every page")
    args = parser.parse_args(argv)
    force = args.force or os.environ.get("CI", "").lower() == "true"
    try:
        index = build_book(args.root, force=force)
    except RuntimeError as error:
        print(f"make book: {error}", file=sys.stderr)
        return 1
    print(f"Book built: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
