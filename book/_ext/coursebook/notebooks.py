"""The notebook form of each page, and the launch buttons that open it.

Every page that is a notebook gets ``_sources/<page>.ipynb`` (what the download
button serves), written from the page as the HTML shows it:

* Markdown from the resolved doctree (:mod:`coursebook.nbmarkdown`): numbered
  sections, equations, figures and exercises, pasted values, no MyST directives,
  quizzes with their answers folded away;
* the executed code cells the page shows, with their outputs, and the hidden
  cells the code needs (set up, plotting), folded, without the build's glue
  calls and checks (:mod:`coursebook.nbcode`);
* a set-up cell, the first code cell, that installs ``coursekit`` (with its
  ``eval`` extra) from the wheel published with the book, where it is missing
  (Colab), and asks for PyTorch's AVX2 kernels on a processor with AVX-512, as
  the build does.

The launch buttons open that file on the published branch (``gh-pages``, which
``make publish`` fills with the built site): Colab from GitHub, Binder in an
environment built from ``binder/`` there (the pinned lock with CPU torch, and
the same ``coursekit`` wheel; ``coursekit.bookbuild`` writes them).
"""

from __future__ import annotations

import copy
import json
import posixpath
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urljoin

import nbformat
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

from coursebook.nbcode import strip_plumbing
from coursebook.nbmarkdown import CodeCellMark, MarkdownCell, MarkdownWriter, PageContext

logger = logging.getLogger(__name__)

HIDDEN_TAGS = {"remove-cell", "remove_cell"}
# A hidden cell that checks the page against files only the repository has (an assignment's
# source, say): the published notebook has no such files beside it, so the cell is left out.
BUILD_ONLY_TAG = "build-only"
HIDDEN_INPUT_TAGS = {"remove-input", "remove_input", "hide-input", "hide_input", "hide-cell", "hide_cell"}
HIDDEN_OUTPUT_TAGS = {"remove-output", "remove_output"}
FOLDED_OUTPUT_TAGS = {"hide-output", "hide_output"}
NOTEBOOK_FOLDER = "_sources"

# The set-up cell also asks for ATen's AVX2 kernels where torch would pick its AVX-512 ones, as the book's build does
# (coursekit.bookbuild.numerics_environment), so that the chapters' training runs the same ATen kernels as the build.
# It asks torch in another process: ATen fixes its choice in a process at the first question or computation.
SETUP_SOURCE = '''\
# Set-up: Binder has coursekit installed; elsewhere (Colab) this cell installs it.
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("coursekit") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "coursekit[eval] @ {wheel_url}"], check=True)
# On a processor with AVX-512 the book ran the AVX2 versions of PyTorch's own kernels: the AVX-512 ones round softmax
# differently, and the chapters' training would give other models. Run this cell before anything computes with torch.
capability = subprocess.run([sys.executable, "-c", "import torch.backends.cpu as c; print(c.get_cpu_capability())"],
                            capture_output=True, text=True).stdout.strip()
if capability == "AVX512" and not os.environ.get("ATEN_CPU_CAPABILITY"):
    os.environ["ATEN_CPU_CAPABILITY"] = "avx2"'''


def published_file_url(config_theme: dict[str, Any], branch: str, path: str) -> str | None:
    """``https://raw.githubusercontent.com/<org>/<repo>/<branch>/<path>``, or None without a GitHub repository."""
    org_repo = _github_repository(config_theme)
    return f"https://raw.githubusercontent.com/{org_repo}/{branch}/{path}" if org_repo else None


def _github_repository(config_theme: dict[str, Any]) -> str | None:
    url = str(config_theme.get("repository_url", "")).rstrip("/")
    if "github.com/" not in url:
        return None
    parts = url.split("github.com/", 1)[1].split("/")
    return "/".join(parts[:2]) if len(parts) >= 2 else None


def _wheel_url(app: Sphinx) -> str:
    from coursekit.bookbuild import BINDER_DIR, wheel_filename

    path = f"{BINDER_DIR}/{wheel_filename(Path(app.confdir))}"
    return published_file_url(app.config.html_theme_options, app.config.coursebook_published_branch, path) or path


def _page_context(app: Sphinx, docname: str) -> PageContext:
    outdir = Path(app.outdir)
    page_dir = (outdir / docname).parent
    baseurl = app.config.html_baseurl.rstrip("/") + "/" if app.config.html_baseurl else ""

    # The HTML writer points images at _images/<name>, copied there only when the build
    # finishes; the notebook is written before that, from the source file.
    sources = {posixpath.basename(name): source for source, name in app.builder.images.items()}

    def image_file(uri: str) -> Path | None:
        if uri.startswith(("data:", "http://", "https://")):
            return None
        source = sources.get(posixpath.basename(unquote(uri)))
        for candidate in ((Path(app.srcdir) / source) if source else None, page_dir / unquote(uri)):
            if candidate is not None and candidate.resolve().is_file():
                return candidate.resolve()
        return None

    return PageContext(
        docname=docname,
        page_url=urljoin(baseurl, docname + ".html") if baseurl else "",
        fignumbers=app.env.toc_fignumbers.get(docname, {}),
        secnumbers=app.env.toc_secnumbers.get(docname, {}),
        image_file=image_file,
        numfig_format=dict(app.config.numfig_format),
    )


def _reader_code_cell(cell: nbformat.NotebookNode, hidden_in_book: bool) -> nbformat.NotebookNode | None:
    """The executed ``cell`` for a reader, or None when it is only build plumbing."""
    source = strip_plumbing(cell.source, drop_asserts=hidden_in_book)
    if not source:
        return None
    tags = set(cell.metadata.get("tags", []))
    metadata: dict[str, Any] = {}
    if hidden_in_book or tags & HIDDEN_INPUT_TAGS:
        metadata["jupyter"] = {"source_hidden": True}
    outputs = [] if hidden_in_book or tags & HIDDEN_OUTPUT_TAGS else copy.deepcopy(cell.get("outputs", []))
    outputs = [output for output in outputs if "scrapbook" not in output.get("metadata", {})]
    for output in outputs:
        if "execution_count" in output:
            output["execution_count"] = None
    if tags & FOLDED_OUTPUT_TAGS:
        metadata.setdefault("jupyter", {})["outputs_hidden"] = True
    reader = nbformat.v4.new_code_cell(source, metadata=metadata)
    reader.outputs = [nbformat.from_dict(output) for output in outputs]
    return reader


def reader_notebook(app: Sphinx, docname: str, doctree: nodes.document, executed: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook a reader downloads or launches for page ``docname``."""
    parts = MarkdownWriter(_page_context(app, docname)).write(doctree)
    cells: list[nbformat.NotebookNode] = []
    next_index = 0

    def add_hidden_cells(before: int) -> None:
        for index in range(next_index, before):
            cell = executed.cells[index]
            tags = set(cell.metadata.get("tags", []))
            if cell.cell_type == "code" and tags & HIDDEN_TAGS and BUILD_ONLY_TAG not in tags:
                reader = _reader_code_cell(cell, hidden_in_book=True)
                if reader is not None:
                    cells.append(reader)

    for part in parts:
        if isinstance(part, CodeCellMark):
            add_hidden_cells(part.index)
            reader = _reader_code_cell(executed.cells[part.index], hidden_in_book=False)
            if reader is not None:
                cells.append(reader)
            next_index = part.index + 1
        else:
            cells.append(_markdown_cell(part))
    add_hidden_cells(len(executed.cells))

    title_cells = 1 if cells and cells[0].cell_type == "markdown" else 0
    page_url = _page_context(app, docname).page_url
    note = "*The runnable form of " + (f"[this page of the course book]({page_url})" if page_url else "a page of the course book")
    note += ". Run the set-up cell below first.*"
    setup = nbformat.v4.new_code_cell(SETUP_SOURCE.format(wheel_url=_wheel_url(app)))
    cells[title_cells:title_cells] = [nbformat.v4.new_markdown_cell(note), setup]

    for number, cell in enumerate(cells):
        cell["id"] = f"cell-{number:03d}"
    metadata = {key: executed.metadata[key] for key in ("kernelspec", "language_info") if key in executed.metadata}
    notebook = nbformat.v4.new_notebook(cells=cells, metadata=metadata)
    nbformat.validate(notebook)
    return notebook


def _markdown_cell(part: MarkdownCell) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_markdown_cell(part.source, metadata=part.metadata)
    if part.attachments:
        cell["attachments"] = part.attachments
    return cell


def _is_notebook_page(app: Sphinx, pagename: str) -> bool:
    return "kernelspec" in app.env.metadata.get(pagename, {})


def write_page_notebook(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Write the page's reader notebook and point the download and launch buttons at it.

    Runs after sphinx-book-theme, which copies the bare executed notebook to the same path.
    """
    if app.builder.format != "html" or doctree is None or not _is_notebook_page(app, pagename):
        return
    executed_path = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if not executed_path.is_file():
        logger.warning("no executed notebook for %s at %s", pagename, executed_path, location=pagename)
        return
    executed = nbformat.read(executed_path, as_version=4)
    target = Path(app.outdir) / NOTEBOOK_FOLDER / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(reader_notebook(app, pagename, doctree, executed), indent=1, ensure_ascii=False) + "\n"
    target.write_text(text, encoding="utf-8")
    context["ipynb_source"] = f"{pagename}.ipynb"
    _point_launch_buttons(app, pagename, context)


def launch_urls(config_theme: dict[str, Any], branch: str, notebook_path: str) -> dict[str, str]:
    """Colab and Binder addresses of ``notebook_path`` on the published ``branch``.

    Example:
        >>> theme = {"repository_url": "https://github.com/org/book", "launch_buttons": {
        ...     "binderhub_url": "https://mybinder.org", "colab_url": "https://colab.research.google.com",
        ...     "notebook_interface": "jupyterlab"}}
        >>> urls = launch_urls(theme, "gh-pages", "_sources/ch1.ipynb")
        >>> urls["Colab"]
        'https://colab.research.google.com/github/org/book/blob/gh-pages/_sources/ch1.ipynb'
        >>> urls["Binder"]
        'https://mybinder.org/v2/gh/org/book/gh-pages?urlpath=lab/tree/_sources/ch1.ipynb'
    """
    org_repo = _github_repository(config_theme)
    launch = config_theme.get("launch_buttons", {})
    if not org_repo:
        return {}
    urls = {}
    if launch.get("colab_url"):
        urls["Colab"] = f"{launch['colab_url'].rstrip('/')}/github/{org_repo}/blob/{branch}/{quote(notebook_path)}"
    if launch.get("binderhub_url"):
        interface = "lab/tree" if launch.get("notebook_interface", "classic") == "jupyterlab" else "tree"
        urls["Binder"] = f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{org_repo}/{branch}?urlpath={interface}/{quote(notebook_path)}"
    return urls


def _point_launch_buttons(app: Sphinx, pagename: str, context: dict[str, Any]) -> None:
    urls = launch_urls(app.config.html_theme_options, app.config.coursebook_published_branch, f"{NOTEBOOK_FOLDER}/{pagename}.ipynb")
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        # A provider this module cannot point at the page's notebook is dropped, not left broken.
        group["buttons"] = [button for button in group.get("buttons", []) if button.get("text") in urls]
        for button in group["buttons"]:
            button["url"] = urls[button["text"]]
            button["tooltip"] = f"Run this page's notebook on {button['text']}"
            # The logo as a CSS background (coursebook.css), fetched only when the menu opens.
            button["icon"] = f"fa ck-logo-{button['text'].lower()}"
    context["header_buttons"] = [g for g in context.get("header_buttons", []) if g.get("label") != "launch-buttons" or g["buttons"]]


def make_post_build_executable(app: Sphinx, exception: Exception | None) -> None:
    """Give the site's ``binder/postBuild`` its executable bit back.

    ``coursekit.bookbuild`` writes it executable, but Sphinx copies ``html_extra_path``
    without file modes; ``make publish`` commits what it finds, and Binder runs
    ``postBuild`` (which installs the book's coursekit wheel) only when it is executable.
    """
    from coursekit.bookbuild import BINDER_DIR

    post_build = Path(app.outdir) / BINDER_DIR / "postBuild"
    if exception is None and app.builder.format == "html" and post_build.is_file():
        post_build.chmod(0o755)


def setup(app: Sphinx) -> None:
    app.add_config_value("coursebook_published_branch", "gh-pages", "html", types=[str])
    app.connect("html-page-context", write_page_notebook, priority=600)
    app.connect("build-finished", make_post_build_executable)
