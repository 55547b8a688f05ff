"""Citation lists that assistive technology (and axe-core) can read as lists.

docutils writes a run of citations as ``<div role="list">`` holding
``<div role="doc-biblioentry">`` entries. DPUB-ARIA 1.1 deprecated
``doc-biblioentry``, so a list of them has no list items: axe reports a critical
``aria-required-children`` on every page with references. Each entry is written
as a ``listitem`` instead; the list and the entries' ids, labels and backlinks
stay as they were.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.application import Sphinx


def visit_citation_html(translator: Any, node: nodes.citation) -> None:
    start = len(translator.body)
    type(translator).visit_citation(translator, node)
    for index in range(start, len(translator.body)):
        translator.body[index] = translator.body[index].replace('role="doc-biblioentry"', 'role="listitem"')


def depart_citation_html(translator: Any, node: nodes.citation) -> None:
    type(translator).depart_citation(translator, node)


def setup(app: Sphinx) -> None:
    app.add_node(nodes.citation, override=True, html=(visit_citation_html, depart_citation_html))
