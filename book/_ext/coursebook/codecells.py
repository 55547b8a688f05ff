"""What a reader sees of a page's code: one rule for every chapter.

A chapter's code cells mix what a reader should read (the coursekit calls that
compute a result) with the book's build plumbing (``from myst_nb import glue``
and ``glue(...)`` calls that paste numbers into the prose) and with plotting
code. Whatever each chapter's cells are tagged, the HTML page

* never shows the plumbing: :func:`coursebook.nbcode.strip_plumbing` removes it
  from the displayed source, and a cell left with nothing to show is dropped;
* folds plotting code (a cell that draws with matplotlib, figure shown or glued)
  behind a "Show code cell source" button, as a ``hide-input`` tag would;
* folds a long reference listing (a ``literalinclude`` of more than
  :data:`LONG_LISTING_LINES` lines) behind a "Show the source of ..." button.

The executed notebooks and the reader's notebook downloads are not changed here.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from myst_nb.sphinx_ import HideCodeCellNode
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

from coursebook.nbcode import strip_plumbing

LONG_LISTING_LINES = 30
# A cell draws when it calls pyplot or an Axes/Figure method that only plotting uses (importing
# matplotlib alone is not drawing: a set-up cell's imports stay in view).
PLOTTING = re.compile(r"\bplt\.|\.(subplots|savefig|set_xlabel|set_ylabel|legend|imshow)\(")


def _cell_parts(cell: nodes.container) -> tuple[nodes.container | None, nodes.container | None]:
    source = output = None
    for child in cell.children:
        if child.get("nb_element") == "cell_code_source":
            source = child
        elif child.get("nb_element") == "cell_code_output":
            output = child
    return source, output


def _show_without_plumbing(cell: nodes.container) -> None:
    source, output = _cell_parts(cell)
    if source is None:
        return
    for block in source.findall(nodes.literal_block):
        shown = strip_plumbing(block.astext())
        if shown == block.astext():
            continue
        if not shown:
            cell.remove(source)
            if output is None:
                cell.parent.remove(cell)
            return
        block.rawsource = shown
        block.children = [nodes.Text(shown)]


def _fold_plotting(cell: nodes.container, prompts: tuple[str, str]) -> None:
    source, _ = _cell_parts(cell)
    if source is None or cell.get("hide_mode"):
        return
    if PLOTTING.search(source.astext()):
        cell["hide_mode"] = "input"
        cell["prompt_show"], cell["prompt_hide"] = prompts


def _listing_name(block: nodes.literal_block) -> str:
    match = re.match(r"\s*(?:async\s+)?(?:def|class)\s+(\w+)", block.astext())
    return match.group(1) if match else "this listing"


class ReaderCodeCells(SphinxPostTransform):
    """Strip the plumbing from shown code, fold plotting code and long reference listings.

    Runs before myst-nb's ``HideInputCells`` (priority 199), which turns ``hide_mode``
    into the folding ``<details>`` element.
    """

    default_priority = 150
    formats = ("html",)

    def run(self, **kwargs: Any) -> None:
        config = self.config
        prompts = (getattr(config, "nb_code_prompt_show", "Show code cell {type}"),
                   getattr(config, "nb_code_prompt_hide", "Hide code cell {type}"))
        cells = [node for node in self.document.findall(nodes.container) if node.get("nb_element") == "cell_code"]
        for cell in cells:
            _show_without_plumbing(cell)
            if cell.parent is not None:
                _fold_plotting(cell, prompts)
        for block in list(self.document.findall(nodes.literal_block)):
            # literalinclude records the file it read; a page's own code blocks carry no such source.
            included = str(block.get("source", "")).endswith(".py")
            long_listing = block.astext().count("\n") + 1 > LONG_LISTING_LINES
            if included and long_listing and not isinstance(block.parent, HideCodeCellNode):
                name = _listing_name(block)
                fold = HideCodeCellNode(prompt_show=f"Show the source of {name}", prompt_hide=f"Hide the source of {name}")
                fold["classes"].append("above-input")
                block.replace_self(fold)
                fold.append(block)


def setup(app: Sphinx) -> None:
    app.add_post_transform(ReaderCodeCells)
