"""Local Sphinx extension of the coursekit book (registered in ``_config.yml``).

It adds the ``quiz`` directive (:mod:`coursebook.quiz`), generates the API
reference from the package (:mod:`coursebook.apiref`) and ships the quiz's own
JavaScript and CSS from ``static/`` next to this file. Those files are added
to the build's static path when the builder starts, not kept in the book's
``_static/``: Jupyter Book adds a ``<script>`` tag for every ``.js`` found there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

from coursebook import apiref, quiz

STATIC = Path(__file__).parent / "static"
__version__ = "1.0"


def add_static_files(app: Sphinx) -> None:
    if app.builder.format != "html":
        return
    if str(STATIC) not in app.config.html_static_path:
        app.config.html_static_path.append(str(STATIC))
    app.add_css_file("coursebook-quiz.css")
    app.add_js_file("coursebook-quiz.js", loading_method="defer")


def drop_duplicate_scripts(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Keep one copy of each ``<script>``.

    Sphinx 7.4 registers an inline script added after the builder started (as
    sphinx-thebe adds its ``const THEBE_JS_URL = ...``) once with filename
    ``None`` and once with ``""``, which do not compare equal, so the page
    declared the constant twice and every page load raised a SyntaxError.
    """
    unique, seen = [], set()
    for script in context.get("script_files", []):
        filename = getattr(script, "filename", script) or ""
        attributes = getattr(script, "attributes", {})
        key = (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Sphinx) -> dict[str, Any]:
    quiz.setup(app)
    apiref.setup(app)
    app.connect("builder-inited", add_static_files)
    app.connect("html-page-context", drop_duplicate_scripts)
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}
