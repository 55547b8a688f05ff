"""Links in a student's markdown that would run a script when clicked, and how such a cell is shown instead.

nbconvert's HTML sanitiser (bleach) looks at HTML *tags* only. Markdown's own
link syntax passes through it, and nbconvert's markdown renderer writes any URL
into the page as it is, ``javascript:`` included: ``[see](javascript:...)``,
``![x](javascript:...)``, a reference definition ``[r]: javascript:...`` and an
autolink ``<javascript:...>`` all become live links in formgrader and in the
feedback page, and MathJax's ``\\href{javascript:...}`` is one more. So a
markdown cell (or a markdown display output) whose rendering, or whose text,
holds a URL of a harmful scheme is replaced by a notice and its own text in a
code block: the reader sees what was written, and nothing in it is a link.
Raw cells and HTML, LaTeX and SVG outputs reach the page as they are (MathJax
typesets their text), so a harmful one is removed instead (see
:func:`neutralise_notebook`).

The text check is deliberately wider than the rendering check (entities,
backslash escapes and whitespace are removed first), so a spelling that the
renderer would turn into a live link cannot slip past both. The price is that
prose which merely *mentions* ``javascript:`` is shown as text too.

Example:
    >>> has_harmful_link("[see my derivation](javascript:alert(1))")
    True
    >>> has_harmful_link("[the paper](https://arxiv.org/abs/1512.02595) and $\\\\ell$")
    False
    >>> print(neutralise("[x](javascript:alert(1))"))
    *coursekit: this cell held a link that would run a script; it is shown as text.*
    <BLANKLINE>
    ```text
    [x](javascript:alert(1))
    ```
    <BLANKLINE>
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from typing import Any

#: URL schemes a browser runs as code (``data:`` only as a page; a raster image in ``<img>`` is harmless).
HARMFUL_SCHEMES = ("javascript:", "vbscript:", "data:text/html", "data:application/xhtml", "data:image/svg")
#: attributes whose value a browser loads or follows as a URL.
URL_ATTRIBUTES = frozenset({"href", "src", "xlink:href", "action", "formaction", "srcset", "poster", "data",
                            "background", "cite", "longdesc", "usemap"})
NOTICE = "*coursekit: this cell held a link that would run a script; it is shown as text.*"
#: what a raw cell that held such a link says instead (raw text goes into the page verbatim: it cannot be shown).
RAW_NOTICE = "coursekit: this raw cell held a link that would run a script; it was removed."
#: output types a page renders as HTML or typesets with MathJax.
TYPESET_OUTPUTS = ("text/html", "text/latex", "image/svg+xml")
#: what the plain text of an output starts with once its rendered forms are dropped.
OUTPUT_NOTICE = "coursekit: this output held a link that would run a script; only its plain text is kept."


def _normalised(text: str) -> str:
    """``text`` as a browser would read a URL in it: entities decoded, no whitespace, controls or backslashes."""
    decoded = html.unescape(html.unescape(text))
    return "".join(ch for ch in decoded if ch.isprintable() and not ch.isspace() and ch != "\\").casefold()


def _is_harmful(text: str) -> bool:
    normalised = _normalised(text)
    return any(scheme in normalised for scheme in HARMFUL_SCHEMES)


class _URLs(HTMLParser):
    """Collects every URL-valued attribute of a rendered page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name.lower() in URL_ATTRIBUTES and value]


def _rendered_urls(markdown: str, attachments: dict[str, Any] | None) -> list[str] | None:
    """The URLs in nbconvert's own rendering of ``markdown`` (the renderer of the feedback page).

    ``None`` when it cannot be rendered (an image names a missing attachment, say).
    """
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    parser = _URLs()
    try:
        parser.feed(MarkdownWithMath(renderer=IPythonRenderer(escape=False, attachments=attachments or {}))
                    .render(markdown))
        parser.close()
    except Exception:  # noqa: BLE001 - a student's markdown may break the renderer in any way
        return None
    return parser.urls


def has_harmful_link(markdown: str, attachments: dict[str, Any] | None = None) -> bool:
    """Whether ``markdown``, rendered or as text, holds a URL whose scheme runs code.

    Args:
        markdown: a markdown cell's source, or a ``text/markdown`` output.
        attachments: the cell's attachments, which its images may name.

    Returns:
        True when a link, image, reference definition, autolink, raw HTML
        attribute or MathJax ``\\href`` in it has a harmful scheme (see
        :data:`HARMFUL_SCHEMES`), however spelled; and when it cannot be
        rendered at all (then nothing about it can be vouched for).
    """
    if _is_harmful(markdown):
        return True
    urls = _rendered_urls(markdown, attachments)
    return urls is None or any(_is_harmful(url) for url in urls)


def neutralise(markdown: str, attachments: dict[str, Any] | None = None) -> str:
    """``markdown`` unchanged, or, when it holds a harmful link, a notice and its text in a code block.

    Args:
        markdown: a markdown cell's source, or a ``text/markdown`` output.
        attachments: the cell's attachments, which its images may name.

    Returns:
        Markdown with no live harmful link. The code fence is longer than any
        run of backticks in the text, so the text cannot close it.
    """
    if not has_harmful_link(markdown, attachments):
        return markdown
    longest = max((len(run) for run in re.findall(r"`+", markdown)), default=0)
    fence = "`" * max(3, longest + 1)
    body = markdown if markdown.endswith("\n") else markdown + "\n"
    return f"{NOTICE}\n\n{fence}text\n{body}{fence}\n"


def _source(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _neutralise_outputs(outputs: list[Any]) -> None:
    """Show harmful ``text/markdown`` as text; drop harmful HTML, LaTeX and SVG, which a page renders or typesets."""
    for output in outputs:
        data = output.get("data") if isinstance(output, dict) else None
        if not isinstance(data, dict):
            continue
        if "text/markdown" in data:
            text = _source(data["text/markdown"])
            cleaned = neutralise(text)
            if cleaned != text:
                data["text/markdown"] = cleaned
        # SanitizeHTML leaves LaTeX as it is and keeps the text of HTML, where
        # MathJax typesets a \href; the output's plain text still shows it.
        harmful = [key for key in TYPESET_OUTPUTS if key in data and _is_harmful(_source(data[key]))]
        for key in harmful:
            del data[key]
        if harmful:
            data["text/plain"] = OUTPUT_NOTICE + "\n" + _source(data.get("text/plain", ""))


def neutralise_notebook(notebook: dict[str, Any]) -> dict[str, Any]:
    """Neutralise, in place, every harmful link of ``notebook`` a page would render.

    A markdown cell, or a ``text/markdown`` output, is shown as text (see
    :func:`neutralise`). A raw cell is written into an HTML page verbatim,
    where MathJax typesets it, so a harmful one keeps only a notice. A
    ``text/html``, ``text/latex`` or ``image/svg+xml`` output that holds a
    harmful scheme is dropped, and a notice is put before its ``text/plain``.

    Example:
        >>> cell = {"cell_type": "markdown", "metadata": {}, "source": ["[a](javascript:x)"]}
        >>> neutralise_notebook({"cells": [cell]})["cells"][0]["source"].startswith("*coursekit:")
        True
        >>> raw = {"cell_type": "raw", "metadata": {}, "source": "$\\\\href{javascript:x}{y}$"}
        >>> neutralise_notebook({"cells": [raw]})["cells"][0]["source"] == RAW_NOTICE
        True
    """
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "markdown":
            source = _source(cell.get("source", ""))
            attachments = cell.get("attachments")
            cleaned = neutralise(source, attachments if isinstance(attachments, dict) else None)
            if cleaned != source:
                cell["source"] = cleaned
        elif cell.get("cell_type") == "raw" and _is_harmful(_source(cell.get("source", ""))):
            cell["source"] = RAW_NOTICE
        _neutralise_outputs(cell.get("outputs", []) or [])
    return notebook
