"""Markdown links that would run a script: found by every route, and shown as text (grader review r1, finding 4)."""

from __future__ import annotations

from html.parser import HTMLParser

import nbformat
import pytest
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from coursekit.course.preprocessors import NeutraliseHarmfulLinks
from coursekit.grading.markdown_links import has_harmful_link, neutralise, neutralise_notebook

pytestmark = pytest.mark.grading

#: every way found to make nbconvert's renderer write a javascript: URL (or hand one to MathJax).
ROUTES = [
    "[x](javascript:alert(1))",
    "![x](javascript:alert(1))",
    "[r]\n\n[r]: javascript:alert(2)",
    "<javascript:alert(3)>",
    "[x](JaVaScRiPt:alert(4))",
    "[x](java&#115;cript:alert(5))",
    "[x](&#x6A;avascript&colon;alert(6))",
    "[x](javascript\\:alert(7))",
    '<a href="java&#9;script:alert(8)">raw HTML, a tab inside the scheme</a>',
    "[x]( vbscript:msgbox(9))",
    "[x](data:text/html,<script>alert(10)</script>)",
    "$\\href{javascript:alert(11)}{x}$",
    "text\n\n```\n[x](javascript:alert(12))\n```\n\n[y](javascript:alert(12))",
]
HONEST = [
    "The loss is $\\ell = -\\log p$; see [the CTC paper](https://www.cs.toronto.edu/~graves/icml_2006.pdf).",
    "![inline](data:image/png;base64,iVBORw0KGgo=) and ![a plot](https://example.org/plot.png)",
    "<https://example.org> and [mail](mailto:ada@example.org)\n\n```python\nx = 1\n```",
]


class _Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.values += [value for _name, value in attrs if value]


def _script_urls(markdown: str) -> list[str]:
    """The attribute values of nbconvert's rendering that a browser would run as a script."""
    parser = _Attributes()
    parser.feed(markdown2html_mistune(markdown))
    squeezed = ["".join(ch for ch in v if ch.isprintable() and not ch.isspace()).lower() for v in parser.values]
    return [v for v in squeezed if v.startswith(("javascript:", "vbscript:", "data:text/html"))]


@pytest.mark.parametrize("markdown", ROUTES)
def test_every_route_to_a_script_url_is_found_and_shown_as_text(markdown: str) -> None:
    assert has_harmful_link(markdown)
    if "\\href" not in markdown:
        assert _script_urls(markdown), "the route really renders a script URL"
    shown = neutralise(markdown)
    assert _script_urls(shown) == []
    assert markdown in shown, "what was written is kept, as text"
    assert "<pre>" in markdown2html_mistune(shown)


@pytest.mark.parametrize("markdown", HONEST)
def test_honest_markdown_is_left_as_it_is(markdown: str) -> None:
    assert not has_harmful_link(markdown)
    assert neutralise(markdown) == markdown


def test_images_may_name_the_cells_attachments_and_a_missing_one_is_shown_as_text() -> None:
    attachments = {"plot.png": {"image/png": "iVBORw0KGgo="}}
    markdown = "![a plot](attachment:plot.png)"
    assert neutralise(markdown, attachments) == markdown
    assert neutralise(markdown) != markdown, "a cell the renderer refuses is shown as text, never crashes the grader"
    cell = {"cell_type": "markdown", "metadata": {}, "source": markdown, "attachments": attachments}
    assert neutralise_notebook({"cells": [cell]})["cells"][0]["source"] == markdown


def test_backticks_in_the_text_cannot_close_the_code_block() -> None:
    markdown = "````\n```\n[x](javascript:alert(1))\n"
    assert _script_urls(neutralise(markdown)) == []


def test_the_nbgrader_preprocessor_neutralises_cells_and_markdown_outputs() -> None:
    notebook = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("display(Markdown(...))")
    code.outputs = [nbformat.v4.new_output("display_data", {"text/markdown": "[x](javascript:alert(1))"})]
    notebook.cells = [nbformat.v4.new_markdown_cell(ROUTES[0]), nbformat.v4.new_markdown_cell(HONEST[0]), code]
    done, _resources = NeutraliseHarmfulLinks().preprocess(notebook, {})
    assert _script_urls(done.cells[0].source) == [] and ROUTES[0] in done.cells[0].source
    assert done.cells[1].source == HONEST[0]
    assert _script_urls(done.cells[2].outputs[0]["data"]["text/markdown"]) == []


def test_list_sources_are_read_whole() -> None:
    notebook = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["[x](java", "script:alert(1))"]}]}
    assert _script_urls(neutralise_notebook(notebook)["cells"][0]["source"]) == []


#: MathJax links a page typesets from a raw cell or an HTML/LaTeX output (grader review r2, findings 3 and 4).
TYPESET_HREF = r"Hint: $$\href{javascript:alert(document.domain)}{\text{click}}$$"


def _page(notebook: nbformat.NotebookNode) -> str:
    """The notebook as the feedback page shows it, after the nbgrader pipeline's two cleaning steps."""
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors.sanitize import SanitizeHTML

    notebook, _ = SanitizeHTML().preprocess(notebook, {})
    notebook, _ = NeutraliseHarmfulLinks().preprocess(notebook, {})
    return HTMLExporter().from_notebook_node(notebook)[0]


@pytest.mark.parametrize("mimetype", [None, "text/html"])
def test_a_raw_cell_with_a_mathjax_script_link_never_reaches_the_page(mimetype: str | None) -> None:
    notebook = nbformat.v4.new_notebook()
    raw = nbformat.v4.new_raw_cell(TYPESET_HREF)
    if mimetype:
        raw.metadata["raw_mimetype"] = mimetype
    honest = nbformat.v4.new_raw_cell(r"$\href{https://example.org}{a paper}$")
    honest.metadata["raw_mimetype"] = "text/html"
    notebook.cells = [raw, honest]
    page = _page(notebook)
    assert "javascript" not in page.split("<body", 1)[1]
    assert r"\href{https://example.org}" in page, "an honest raw cell is kept"


@pytest.mark.parametrize("key", ["text/latex", "text/html"])
def test_latex_and_html_outputs_with_a_mathjax_script_link_never_reach_the_page(key: str) -> None:
    notebook = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("display(Latex(...))")
    code.outputs = [nbformat.v4.new_output("display_data", {key: TYPESET_HREF, "text/plain": "<Latex object>"}),
                    nbformat.v4.new_output("display_data", {key: r"$\href{https://example.org}{x}$"})]
    notebook.cells = [code]
    page = _page(notebook)
    assert "javascript" not in page.split("<body", 1)[1]
    assert "&lt;Latex object&gt;" in page, "the plain text of the dropped output is still shown"
    assert r"\href{https://example.org}" in page, "an honest output is kept"


def test_the_coursekit_autograded_notebook_drops_a_raw_cell_with_a_mathjax_script_link() -> None:
    from coursekit.grading.autograded import sanitise_html

    notebook = {"cells": [{"cell_type": "raw", "metadata": {"raw_mimetype": "text/html"}, "source": TYPESET_HREF}]}
    assert "javascript" not in sanitise_html(notebook)["cells"][0]["source"]
