"""The notebook form of each page (book/_ext/coursebook/notebooks.py) and Binder's environment.

What the download button serves and Colab and Binder open must be a notebook a
reader can read and run: no MyST directives or roles, no quiz answers in YAML, no
glue plumbing; the numbers, equations, figures and exercises the page shows; and
every cell running top to bottom in a fresh kernel. The whole-book tests share the
session's build (``built_book`` in conftest.py).
"""

from __future__ import annotations

import doctest
import importlib
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT, toc_pages

CHAPTERS = [page for page in toc_pages() if re.search(r"/ch\d\d_", page)]
# Source text that only MyST, the build or the quiz directive understands.
RAW_MYST = re.compile(
    r"^(?:> )*(?::::|```\{)|\{(?:glue|prf|term|eq|numref|ref|cite|doc)(?::[a-z]+)?\}`|^\(\S+\)=$|myst_nb|\bglue\(|correct: (?:true|false)",
    re.MULTILINE,
)
EXTENSION_MODULES = ["coursebook.mathtext", "coursebook.nbcode", "coursebook.nbmarkdown", "coursebook.notebooks", "coursebook.assets", "coursebook.figures"]


def reader_notebook(built_book, docname: str) -> dict:
    return json.loads((built_book.html / "_sources" / f"{docname}.ipynb").read_text(encoding="utf-8"))


@pytest.mark.book
@pytest.mark.parametrize("module", EXTENSION_MODULES)
def test_extension_examples_run(module: str) -> None:
    sys.path.insert(0, str(REPO_ROOT / "book" / "_ext"))
    try:
        result = doctest.testmod(importlib.import_module(module))
    finally:
        sys.path.remove(str(REPO_ROOT / "book" / "_ext"))
    assert result.failed == 0 and result.attempted >= 1


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.parametrize("docname", CHAPTERS)
def test_readers_notebook_holds_no_myst_and_no_build_plumbing(built_book, docname: str) -> None:
    import nbformat

    notebook = reader_notebook(built_book, docname)
    nbformat.validate(nbformat.from_dict(notebook))
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        assert not RAW_MYST.search(source), f"{cell['id']}: {RAW_MYST.search(source).group(0)!r} in {source[:300]!r}"


@pytest.mark.slow
@pytest.mark.book
def test_chapter_1_notebook_reads_like_the_page(built_book) -> None:
    notebook = reader_notebook(built_book, "book/ch01_token_to_sequence")
    markdown = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")
    assert markdown.startswith("# 1. From token loss to sequence loss")
    assert "**Definition 1.1 (Token-level loss)**" in markdown
    # Equation (1.1) sits in the definition's block quote.
    assert re.search(r"> \$\$\n> \\ell_t = -\\log p_\\theta.*?\\tag\{1\.1\}\n> \$\$", markdown, flags=re.S)
    assert "<script" not in markdown
    assert "**Exercise 1.1**" in markdown and "<summary>Solution to Exercise 1.1</summary>" in markdown
    # Glued numbers are pasted as the page shows them: 0.1 + 0.3 + 0.2 + 0.4 = 1.00 nats.
    assert "The **total** is 1.00" in markdown
    # The quiz lists its options and folds the answers away.
    assert "**Self-check.**" in markdown and "<summary>Answers</summary>" in markdown
    attached = [c for c in notebook["cells"] if c.get("attachments")]
    assert len(attached) >= 2, "figures travel with the notebook"
    assert "https://coursekit.github.io/sequence-level-loss/book/appendix_glossary.html#term-" in markdown


@pytest.mark.slow
@pytest.mark.book
def test_readers_notebook_starts_by_installing_coursekit_where_it_is_missing(built_book) -> None:
    from coursekit.bookbuild import wheel_filename

    notebook = reader_notebook(built_book, "book/ch01_token_to_sequence")
    setup = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    source = "".join(setup["source"])
    url = f"https://raw.githubusercontent.com/coursekit/sequence-level-loss/gh-pages/binder/{wheel_filename(REPO_ROOT)}"
    assert 'find_spec("coursekit") is None' in source and f"coursekit[eval] @ {url}" in source
    assert (built_book.html / "binder" / wheel_filename(REPO_ROOT)).is_file()


@pytest.mark.slow
@pytest.mark.book
def test_a_check_against_repository_files_stays_out_of_the_readers_notebook(built_book) -> None:
    # Chapter 9 checks its "Practise it" sentence against A5's source notebook, which only the
    # repository has: that cell is tagged build-only, and a reader's notebook must run without it.
    build_only = []
    for docname in CHAPTERS:
        executed = json.loads((built_book.html.parent / "jupyter_execute" / f"{docname}.ipynb").read_text(encoding="utf-8"))
        build_only += [(docname, "".join(c["source"])) for c in executed["cells"] if "build-only" in c["metadata"].get("tags", [])]
    assert any(docname == "book/ch09_alignment" and "../assignments/" in source for docname, source in build_only), build_only
    for docname in CHAPTERS:
        code = "\n".join("".join(c["source"]) for c in reader_notebook(built_book, docname)["cells"] if c["cell_type"] == "code")
        assert "../assignments/" not in code, f"{docname}: a build-only check is in the reader's notebook"


# One test per chapter, so that the workers share the chapters (each runs for up to a minute or two).
@pytest.mark.slow
@pytest.mark.book
@pytest.mark.timeout(900)
@pytest.mark.parametrize("docname", CHAPTERS)
def test_every_readers_notebook_runs_top_to_bottom(built_book, tmp_path: Path, docname: str) -> None:
    import nbformat
    from nbclient import NotebookClient

    from coursekit.bookbuild import kernel_environment, probe_kernels

    notebook = nbformat.from_dict(reader_notebook(built_book, docname))
    # Which of PyTorch's CPU kernels the notebook ran: ATen's AVX2 ones where torch would pick AVX-512, as the build does.
    probe = nbformat.v4.new_code_cell("import torch.backends.cpu\nprint(torch.backends.cpu.get_cpu_capability())")
    notebook.cells.append(probe)
    workdir = tmp_path / docname.replace("/", "_")
    workdir.mkdir()
    # Where Binder opens it: the site's _sources/book/ folder.
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == [], f"{docname}: {errors[:1]}"
    pages = probe_kernels(kernel_environment(tmp_path / "_build"))[0]  # the kernels the build's pages ran
    printed = "".join(o["text"] for o in notebook.cells[-1].outputs if o.get("name") == "stdout")
    assert printed.strip() == pages


@pytest.mark.slow
@pytest.mark.book
def test_binder_environment_is_the_pinned_lock_with_cpu_torch_and_the_books_coursekit(built_book, tmp_path: Path) -> None:
    from coursekit.bookbuild import binder_requirements, wheel_filename

    binder = built_book.html / "binder"
    lock = (REPO_ROOT / "requirements.lock").read_text()
    requirements = (binder / "requirements.txt").read_text()
    assert requirements == binder_requirements(lock)
    torch_pin = next(line for line in lock.splitlines() if line.startswith("torch=="))
    assert f"{torch_pin}+cpu" in requirements.splitlines()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements.splitlines()
    assert (binder / "runtime.txt").read_text().strip() == f"python-{sys.version_info.major}.{sys.version_info.minor}"
    wheel = binder / wheel_filename(REPO_ROOT)
    assert f"pip install --no-deps binder/{wheel.name}" in (binder / "postBuild").read_text()
    # Binder runs postBuild only when it is executable (Sphinx copies the site's extra files without modes).
    assert os.access(binder / "postBuild", os.X_OK)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "coursekit/losses/nll.py" in names and any(n.startswith("coursekit/models/checkpoints/") and n.endswith(".pt") for n in names)
    # The wheel installs and imports on its own (its dependencies come from this environment).
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)], check=True)
    probe = f"import sys; sys.path.insert(0, {str(target)!r}); import coursekit.losses as l; print(l.__file__)"
    printed = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert printed.startswith(str(target))
