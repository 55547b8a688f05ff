"""Local Sphinx extension of the coursekit book (registered in ``_config.yml``).

One module per concern:

* :mod:`coursebook.quiz`: the ``quiz`` directive;
* :mod:`coursebook.apiref`: the API reference, one page per module, generated from the package;
* :mod:`coursebook.assets`: what each page loads (the book's own ``static/`` files, and none of
  the theme's files that no page of this book uses);
* :mod:`coursebook.citations` and :mod:`coursebook.figures`: accessible citation lists, and
  figures that link to their full-size file;
* :mod:`coursebook.codecells`: what a reader sees of the code (no build plumbing, plotting and
  long reference listings folded);
* :mod:`coursebook.notebooks`: the notebook form of each page (download, Colab and Binder).
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx

from coursebook import apiref, assets, citations, codecells, figures, notebooks, quiz

__version__ = "1.2"


def setup(app: Sphinx) -> dict[str, Any]:
    quiz.setup(app)
    apiref.setup(app)
    assets.setup(app)
    citations.setup(app)
    figures.setup(app)
    codecells.setup(app)
    notebooks.setup(app)
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}
