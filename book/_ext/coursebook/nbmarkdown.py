"""A page's resolved doctree as notebook Markdown, for the notebook form of the page.

The book's pages are MyST notebooks; their source is full of directives and roles
(``{prf:definition}``, ``{exercise}``, ``{glue:text}``, ``{eq}``, quiz YAML) that
Jupyter and Colab show as raw text. The doctree Sphinx resolved for the HTML page
already holds what a reader sees: numbers of sections, equations, figures and
exercises, pasted glue values, citation labels. :class:`MarkdownWriter` writes it
as CommonMark with ``$``-maths, the flavour Jupyter renders:

* definitions, exercises and admonitions become block quotes with a bold title;
* a solution becomes a ``<details>`` block (or, when it holds code, a heading
  that JupyterLab shows collapsed);
* a quiz lists its options and puts the answers in a ``<details>`` block;
* figures are attached to their cell (``attachment:``) so the notebook stands alone;
* links to other pages of the book point to the published site.

Code cells are not written here: each notebook code cell the page shows is a
:class:`CodeCellMark` in the output, which :mod:`coursebook.notebooks` replaces
by the executed cell.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urljoin

from docutils import nodes

MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]<>$|])")
HEADING_MAX = 6


@dataclass
class MarkdownCell:
    """One Markdown cell: its text, images attached to it, and cell metadata."""

    source: str
    attachments: dict[str, dict[str, str]] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)


@dataclass
class CodeCellMark:
    """Where the notebook's code cell ``index`` goes."""

    index: int


@dataclass
class PageContext:
    """What the writer needs to know about the page beyond its doctree.

    Attributes:
        docname: the page, e.g. ``book/ch01_token_to_sequence``.
        page_url: the page's address on the published site ('' when unknown).
        fignumbers: Sphinx's numbers of the page's enumerable nodes, by type and id.
        secnumbers: Sphinx's section numbers of the page, by anchor ('' for the page title).
        image_file: maps an image node's URI (as the HTML writer left it) to its file.
        numfig_format: Sphinx's ``numfig_format`` (``{"figure": "Fig. %s", ...}``).
    """

    docname: str
    page_url: str
    fignumbers: dict[str, dict[str, tuple[int, ...]]]
    secnumbers: dict[str, tuple[int, ...]]
    image_file: Callable[[str], Path | None]
    numfig_format: dict[str, str]

    def number(self, kind: str, node: nodes.Element) -> str:
        ids = node.get("ids") or [""]
        return ".".join(map(str, self.fignumbers.get(kind, {}).get(ids[0], ())))

    def link(self, refuri: str) -> str | None:
        """Absolute address of a link target, or None for a place on this page or no site."""
        if refuri.startswith("#") or not self.page_url:
            return None
        if re.match(r"^[a-z][a-z0-9+.-]*:", refuri):
            return refuri
        target = urljoin(self.page_url, refuri)
        return None if target.split("#")[0] == self.page_url else target


def escape(text: str) -> str:
    """``text`` with the characters Markdown (and Jupyter's ``$`` maths) would interpret escaped.

    Example:
        >>> print(escape("costs $5 per token_id"))
        costs \\$5 per token\\_id
    """
    return MARKDOWN_SPECIALS.sub(r"\\\1", text)


def _code_span(text: str) -> str:
    ticks = max((len(run) for run in re.findall(r"`+", text)), default=0) + 1
    fence = "`" * ticks
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"


def _indent(text: str, prefix: str, first: str | None = None) -> str:
    lines = text.split("\n")
    head = first if first is not None else prefix
    return "\n".join([head + lines[0]] + [(prefix + line) if line else line.rstrip() for line in lines[1:]])


def _quote(text: str) -> str:
    return "\n".join(("> " + line) if line else ">" for line in text.split("\n"))


class MarkdownWriter:
    """Turns a resolved Sphinx doctree into Markdown cells and code-cell marks."""

    def __init__(self, context: PageContext) -> None:
        self.context = context
        self.cells: list[MarkdownCell | CodeCellMark] = []
        self._blocks: list[str] = []
        self._attachments: dict[str, dict[str, str]] = {}
        self._metadata: dict = {}

    # -- output -------------------------------------------------------------------------------
    def write(self, document: nodes.document) -> list[MarkdownCell | CodeCellMark]:
        self.section_depth = 0
        for child in document.children:
            self._block_into_cells(child)
        self._flush()
        return self.cells

    def _flush(self) -> None:
        text = "\n\n".join(block for block in self._blocks if block.strip()).strip()
        if text:
            self.cells.append(MarkdownCell(text, dict(self._attachments), dict(self._metadata)))
        self._blocks, self._attachments, self._metadata = [], {}, {}

    def _emit(self, text: str) -> None:
        if text.strip():
            self._blocks.append(text)

    # -- blocks that may hold code cells ------------------------------------------------------
    def _holds_code(self, node: nodes.Node) -> bool:
        return isinstance(node, nodes.Element) and any(
            child.get("nb_element") == "cell_code" for child in node.findall(nodes.Element)
        )

    def _block_into_cells(self, node: nodes.Node) -> None:
        """Write ``node``; sections and code cells start new cells."""
        if isinstance(node, nodes.Element) and node.get("nb_element") == "cell_code":
            self._flush()
            self.cells.append(CodeCellMark(int(node["cell_index"])))
            return
        if isinstance(node, nodes.section):
            self._flush()
            self.section_depth += 1
            self._emit(self._heading(node))
            for child in node.children[1:]:
                self._block_into_cells(child)
            self.section_depth -= 1
            return
        if self._is_solution(node) and self._holds_code(node):
            self._solution_with_code(node)
            return
        if self._holds_code(node) and not isinstance(node, (nodes.paragraph, nodes.TextElement)):
            # A wrapper (container, admonition, exercise) around a code cell: keep its parts in order.
            title = self._title_of(node)
            if title:
                self._emit(f"**{title}**")
            for child in node.children:
                if not isinstance(child, nodes.title):
                    self._block_into_cells(child)
            return
        self._emit(self.block(node))

    def _solution_with_code(self, node: nodes.Element) -> None:
        self._flush()
        level = min(self.section_depth + 1, HEADING_MAX)
        self._emit(f"{'#' * level} {self._title_of(node)}")
        # JupyterLab folds the cells under a collapsed heading until the next heading of its level.
        self._metadata = {"jp-MarkdownHeadingCollapsed": True}
        self._flush()
        for child in self._content_of(node):
            self._block_into_cells(child)
        self._flush()
        self._emit(f"{'#' * level} Continued")
        self._flush()

    # -- block nodes --------------------------------------------------------------------------
    def blocks(self, children: list[nodes.Node]) -> str:
        return "\n\n".join(text for text in (self.block(child) for child in children) if text.strip())

    def block(self, node: nodes.Node) -> str:
        if isinstance(node, nodes.Text):
            return escape(str(node))
        kind = type(node).__name__
        handler = getattr(self, f"_block_{kind}", None)
        if handler is not None:
            return handler(node)
        module = type(node).__module__
        if module.startswith("sphinx_proof"):
            return self._proof(node)
        if module.startswith("sphinx_exercise"):
            return self._exercise(node)
        if "ck-quiz" in node.get("classes", []):
            return self._quiz(node)
        if isinstance(node, nodes.Admonition):
            return self._admonition(node)
        if isinstance(node, (nodes.Invisible, nodes.comment)):
            return ""
        if isinstance(node, nodes.TextElement):
            return self.inline_children(node)
        if isinstance(node, nodes.Element):
            return self.blocks(node.children)
        return ""

    def _heading(self, section: nodes.section) -> str:
        title = section.children[0] if section.children and isinstance(section.children[0], nodes.title) else None
        if title is None:
            return ""
        ids = section.get("ids") or [""]
        number = self.context.secnumbers.get("#" + ids[0]) if self.section_depth > 1 else self.context.secnumbers.get("")
        prefix = ".".join(map(str, number)) + ". " if number else ""
        return f"{'#' * min(self.section_depth, HEADING_MAX)} {prefix}{self.inline_children(title)}"

    def _block_paragraph(self, node: nodes.paragraph) -> str:
        return self.inline_children(node)

    def _block_rubric(self, node: nodes.rubric) -> str:
        return f"**{self.inline_children(node)}**"

    def _block_title(self, node: nodes.title) -> str:
        return f"**{self.inline_children(node)}**"

    def _block_literal_block(self, node: nodes.literal_block) -> str:
        text = node.astext()
        language = node.get("language", "")
        language = "python" if language in ("ipython3", "ipython", "default", "python3") else language
        fence = "`" * max(3, max((len(run) + 1 for run in re.findall(r"`{3,}", text)), default=3))
        return f"{fence}{language if language not in ('none', 'text', 'myst-ansi') else ''}\n{text}\n{fence}"

    _block_doctest_block = _block_literal_block

    def _block_math_block(self, node: nodes.math_block) -> str:
        tex = node.astext().strip()
        if node.get("nowrap"):
            return tex
        number = self.context.number("displaymath", node) or (str(node["number"]) if node.get("number") else "")
        tag = f" \\tag{{{number}}}" if number else ""
        return f"$$\n{tex}{tag}\n$$"

    def _block_bullet_list(self, node: nodes.bullet_list) -> str:
        return "\n".join(_indent(self.blocks(item.children), "  ", "- ") for item in node.children)

    def _block_enumerated_list(self, node: nodes.enumerated_list) -> str:
        start = int(node.get("start", 1))
        lines = []
        for offset, item in enumerate(node.children):
            marker = f"{start + offset}. "
            lines.append(_indent(self.blocks(item.children), " " * len(marker), marker))
        return "\n".join(lines)

    def _block_definition_list(self, node: nodes.definition_list) -> str:
        entries = []
        for item in node.children:
            terms = [self.inline_children(child) for child in item.children if isinstance(child, nodes.term)]
            definition = next((child for child in item.children if isinstance(child, nodes.definition)), None)
            body = self.blocks(definition.children) if definition is not None else ""
            entries.append(f"**{' / '.join(terms)}**  \n{body}" if body else f"**{' / '.join(terms)}**")
        return "\n\n".join(entries)

    def _block_field_list(self, node: nodes.field_list) -> str:
        fields = []
        for field_node in node.children:
            name = self.inline_children(field_node.children[0])
            fields.append(f"- **{name}**: {self.blocks(field_node.children[1].children)}")
        return "\n".join(fields)

    def _block_block_quote(self, node: nodes.block_quote) -> str:
        return _quote(self.blocks(node.children))

    def _block_line_block(self, node: nodes.line_block) -> str:
        return "  \n".join(self.inline_children(line) for line in node.findall(nodes.line))

    def _block_transition(self, node: nodes.transition) -> str:
        return "---"

    def _block_raw(self, node: nodes.raw) -> str:
        return self._raw_html(node) if "html" in node.get("format", "").split() else ""

    def _block_figure(self, node: nodes.figure) -> str:
        parts = [self.block(child) for child in node.children if not isinstance(child, (nodes.caption, nodes.legend))]
        caption = next((child for child in node.children if isinstance(child, nodes.caption)), None)
        legend = next((child for child in node.children if isinstance(child, nodes.legend)), None)
        if caption is not None:
            number = self.context.number("figure", node)
            label = (self.context.numfig_format.get("figure", "Fig. %s") % number + " ") if number else ""
            parts.append(f"*{label}{self.inline_children(caption)}*")
        if legend is not None:
            parts.append(self.blocks(legend.children))
        return "\n\n".join(part for part in parts if part.strip())

    def _block_image(self, node: nodes.image) -> str:
        return self._image(node)

    def _block_table(self, node: nodes.table) -> str:
        title = next((child for child in node.children if isinstance(child, nodes.title)), None)
        rows: list[list[str]] = []
        header_rows = 0
        for group in node.findall(nodes.tgroup):
            for part in group.children:
                if isinstance(part, (nodes.thead, nodes.tbody)):
                    for row in part.children:
                        rows.append([self.blocks(entry.children).replace("\n\n", "<br>").replace("\n", " ") for entry in row.children])
                    if isinstance(part, nodes.thead):
                        header_rows = len(rows)
        if not rows:
            return ""
        width = max(len(row) for row in rows)
        rows = [row + [""] * (width - len(row)) for row in rows]
        header = rows[0] if header_rows else [""] * width
        body = rows[1:] if header_rows else rows
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * width] + ["| " + " | ".join(row) + " |" for row in body]
        caption = ""
        if title is not None:
            number = self.context.number("table", node)
            label = (self.context.numfig_format.get("table", "Table %s") % number + " ") if number else ""
            caption = f"*{label}{self.inline_children(title)}*\n\n"
        return caption + "\n".join(lines)

    def _block_citation(self, node: nodes.citation) -> str:
        label = next((child.astext() for child in node.children if isinstance(child, nodes.label)), "")
        body = self.blocks([child for child in node.children if not isinstance(child, nodes.label)])
        return f"- \\[{escape(label)}\\] {body}"

    def _block_footnote(self, node: nodes.footnote) -> str:
        return self._block_citation(node)  # type: ignore[arg-type]

    def _block_container(self, node: nodes.container) -> str:
        if node.get("nb_element") in ("cell_code_output", "cell_code_source"):
            return ""
        return self.blocks(node.children)

    # -- titled boxes -------------------------------------------------------------------------
    def _title_of(self, node: nodes.Element) -> str:
        module = type(node).__module__
        title_node = next((child for child in node.children if isinstance(child, nodes.title)), None)
        title = self.inline_children(title_node).strip() if title_node is not None else ""
        if module.startswith("sphinx_proof"):
            kind = str(node.get("realtype", "")).title()
            number = self.context.number(str(node.get("countertype", "")), node)
            return " ".join(part for part in (kind, number, title) if part)
        if module.startswith("sphinx_exercise") and type(node).__name__ == "exercise_enumerable_node":
            number = self.context.number("exercise", node)
            label = self.context.numfig_format.get("exercise", "Exercise %s") % number if number else "Exercise"
            # The resolved title holds only the subtitle, " (…)", when there is one.
            return f"{label} {title}".strip()
        if isinstance(node, nodes.Admonition) and not title:
            return type(node).__name__.replace("_", " ").capitalize()
        return title

    def _content_of(self, node: nodes.Element) -> list[nodes.Node]:
        content: list[nodes.Node] = []
        for child in node.children:
            if isinstance(child, nodes.title):
                continue
            if isinstance(child, nodes.section) and child.get("ids", [""])[0].endswith("-content"):
                content.extend(child.children)
            else:
                content.append(child)
        return content

    def _admonition(self, node: nodes.Element) -> str:
        body = self.blocks(self._content_of(node))
        return _quote(f"**{self._title_of(node)}**\n\n{body}")

    _proof = _admonition

    def _is_solution(self, node: nodes.Node) -> bool:
        return type(node).__name__ == "solution_node"

    def _exercise(self, node: nodes.Element) -> str:
        if self._is_solution(node):
            body = self.blocks(self._content_of(node))
            return f"<details>\n<summary>{escape(self._title_of(node))}</summary>\n\n{body}\n\n</details>"
        return self._admonition(node)

    # -- quizzes ------------------------------------------------------------------------------
    def _quiz(self, node: nodes.Element) -> str:
        def first(cls: str, within: nodes.Element = node) -> nodes.Element | None:
            return next((e for e in within.findall(nodes.Element) if cls in e.get("classes", [])), None)

        def each(cls: str) -> list[nodes.Element]:
            return [e for e in node.findall(nodes.Element) if cls in e.get("classes", [])]

        question = first("ck-quiz-question")
        lines = [f"**Self-check.** {self.inline_children(question) if question is not None else ''}"]
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        answers = []
        if node.get("html_attrs", {}).get("data_quiz_type") == "match":
            terms = each("ck-quiz-term")
            definitions = each("ck-quiz-definition")
            lines.append("Match each term with its definition.")
            lines.append("\n".join(f"{i}. {self.inline_children(t)}" for i, t in enumerate(terms, start=1)))
            lines.append("\n".join(f"- ({letters[i]}) {self.inline_children(d)}" for i, d in enumerate(definitions)))
            by_pair = {d["html_attrs"].get("data_pair"): letters[i] for i, d in enumerate(definitions)}
            answers = [f"{i} — ({by_pair.get(t['html_attrs'].get('data_pair'), '?')})" for i, t in enumerate(terms, start=1)]
        else:
            options = each("ck-quiz-option")
            explanations = each("ck-quiz-explain")
            lines.append("\n".join(f"- ({letters[i]}) {self.inline_children(o)}" for i, o in enumerate(options)))
            for i, (option, explain) in enumerate(zip(options, explanations)):
                verdict = "Correct." if option["html_attrs"].get("data_correct") == "true" else "Incorrect."
                answers.append(f"({letters[i]}) **{verdict}** {self.inline_children(explain)}")
        lines.append("<details>\n<summary>Answers</summary>\n\n" + "\n\n".join(answers) + "\n\n</details>")
        return "\n\n".join(lines)

    # -- inline nodes -------------------------------------------------------------------------
    def inline_children(self, node: nodes.Node | None) -> str:
        """The inline content of ``node``, without leading or trailing space."""
        if node is None:
            return ""
        return "".join(self.inline(child) for child in node.children).strip()

    def inline(self, node: nodes.Node) -> str:
        if isinstance(node, nodes.Text):
            return escape(str(node).replace("\n", " "))
        if isinstance(node, nodes.math):
            return f"${node.astext().strip()}$"
        if isinstance(node, nodes.literal):
            return _code_span(node.astext())
        if isinstance(node, nodes.emphasis):
            return self._wrap("*", node)
        if isinstance(node, nodes.strong):
            return self._wrap("**", node)
        if isinstance(node, nodes.image):
            return self._image(node)
        if isinstance(node, nodes.raw):
            return self._raw_html(node) if "html" in node.get("format", "").split() else ""
        if isinstance(node, nodes.reference):
            text = "".join(self.inline(child) for child in node.children) or escape(node.get("refuri", ""))
            target = self.context.link(node.get("refuri", "")) if node.get("refuri") else None
            if not target or not text.strip():
                return text
            lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()):]
            return f"{lead}[{text.strip()}]({target}){trail}"
        if isinstance(node, (nodes.footnote_reference, nodes.citation_reference)):
            return f"\\[{escape(node.astext())}\\]"
        if isinstance(node, (nodes.target, nodes.comment, nodes.substitution_definition)):
            return ""
        if isinstance(node, nodes.Element):
            return "".join(self.inline(child) for child in node.children)
        return ""

    def _wrap(self, mark: str, node: nodes.Element) -> str:
        inner = "".join(self.inline(child) for child in node.children)
        stripped = inner.strip()
        if not stripped:
            return inner
        lead = inner[: len(inner) - len(inner.lstrip())]
        trail = inner[len(inner.rstrip()):]
        return f"{lead}{mark}{stripped}{mark}{trail}"

    def _raw_html(self, node: nodes.raw) -> str:
        """Raw HTML, with relative ``href``/``src`` made absolute on the published site.

        Scripts and styles (such as sphinx-thebe's configuration) are the web page's, not the
        reader's: a notebook shows them as text, so they are left out.
        """
        if re.search(r"<(script|style)\b", node.astext(), flags=re.I):
            return ""

        def absolute(match: re.Match) -> str:
            target = self.context.link(match.group(2))
            return f'{match.group(1)}="{target or match.group(2)}"'

        return re.sub(r'\b(href|src)="([^"]*)"', absolute, node.astext())

    def _image(self, node: nodes.image) -> str:
        alt = escape(node.get("alt", "").replace("\n", " "))
        path = self.context.image_file(node["uri"])
        if path is None or not path.is_file():
            target = self.context.link(node["uri"])
            return f"![{alt}]({target})" if target else alt
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._attachments[path.name] = {mime: base64.b64encode(path.read_bytes()).decode()}
        return f"![{alt}](attachment:{path.name})"
