"""`make publish` pushes the built book to a gh-pages branch (tested against a local bare remote)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, VENV_BIN

pytestmark = [pytest.mark.slow, pytest.mark.book]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_publish_pushes_the_built_book_to_gh_pages_of_the_remote(built_book, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git("init", "--bare", "-q", str(remote), cwd=tmp_path)
    clone = tmp_path / "clone"
    git("clone", "-q", str(REPO_ROOT), str(clone), cwd=tmp_path)
    git("remote", "add", "pages", str(remote), cwd=clone)

    result = subprocess.run(
        ["make", "--no-print-directory", "gh-pages", f"BIN={VENV_BIN}", "REMOTE=pages", f"HTML={built_book.html}"],
        cwd=clone, capture_output=True, text=True, timeout=300,
        env={"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path),
             "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
             "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"},
    )
    assert result.returncode == 0, result.stdout + result.stderr

    published = set(git("ls-tree", "-r", "--name-only", "gh-pages", cwd=remote).split())
    built = {p.relative_to(built_book.html).as_posix() for p in built_book.html.rglob("*") if p.is_file()}
    assert "index.html" in published and ".nojekyll" in published
    assert built <= published, sorted(built - published)[:10]
    # The launch buttons open the pages' notebooks on gh-pages, and Binder builds from its binder/.
    assert {"_sources/book/ch01_token_to_sequence.ipynb", "binder/requirements.txt", "binder/runtime.txt"} <= published
    assert git("ls-tree", "gh-pages", "binder/postBuild", cwd=remote).startswith("100755 "), "postBuild must be executable"
    message = git("log", "-1", "--format=%s", "gh-pages", cwd=remote)
    assert message.startswith("Publish the book built from ")


def test_publish_refuses_without_a_built_book(tmp_path: Path) -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO_ROOT), "gh-pages", f"HTML={tmp_path / 'nothing'}"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "run make book first" in result.stdout + result.stderr
