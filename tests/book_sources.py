"""Read the book's MyST sources without building them: prose, math, code cells and solutions.

The source checks of ``test_book_sources.py`` need four views of a page: the
prose a reader sees (to find typed numbers), the mathematics (to find symbols),
the code cells (to find asserts) and the exercise solutions (to find code that
never runs). :func:`parse_page` splits a page into :class:`Fragment` s once;
the checks filter them by ``kind``.

The parser follows the MyST rules the book uses, not all of CommonMark:

- fences of backticks, tildes or colons close at the first bare fence of the
  same character that is at least as long (markdown-it's rule, so an inner
  fence must be shorter than the one it sits in);
- directives whose body is MyST (admonitions, exercises, solutions, figure
  captions, ``prf:`` blocks, the glossary) are parsed again, recursively; all
  other fenced bodies are code, math (``{math}``) or quiz YAML (``{quiz}``);
- a directive's ``:alt:`` option and the title of an admonition, exercise or
  ``prf:`` block are prose; its other options are not;
- in prose, inline code and roles (```{glue:text}`key` ```, ```{eq}`label` ```),
  link targets, bare URLs, MyST targets ``(label)=``, ``+++`` cell breaks and
  HTML comments are dropped; ``$...$``, ``$$...$$``, ``{math}`` roles and
  top-level amsmath environments are math.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import yaml

FragmentKind = Literal["prose", "math", "code", "quiz"]

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,}|:{3,})\s*(?P<info>.*?)\s*$")
DIRECTIVE_INFO = re.compile(r"^\{(?P<name>[A-Za-z0-9_:+-]+)\}\s*(?P<argument>.*)$")
OPTION_LINE = re.compile(r"^\s*:(?P<key>[A-Za-z0-9_-]+):\s*(?P<value>.*)$")
AMSMATH_BEGIN = re.compile(r"^\s*\\begin\{(?P<env>(?:equation|multline|gather|align|alignat|flalign)\*?)\}")

# Directives whose body is MyST markdown, parsed again for prose and math.
MARKDOWN_DIRECTIVES = frozenset({
    "admonition", "attention", "caution", "danger", "error", "hint", "important", "note", "seealso",
    "tip", "warning", "dropdown", "sidebar", "margin", "topic", "epigraph", "card", "tab-set",
    "tab-item", "grid", "grid-item", "grid-item-card", "div", "figure", "glue:figure", "table",
    "exercise", "solution", "glossary",
})
# Directives whose argument is a title the reader sees (other arguments are paths, keys or labels).
TITLED_DIRECTIVES = frozenset({
    "admonition", "dropdown", "sidebar", "topic", "exercise", "card", "tab-item", "table",
})
# Directive options whose value the reader sees as text.
PROSE_OPTIONS = frozenset({"alt"})
# The text fields of a quiz body (book/_ext/coursebook/quiz.py).
QUIZ_TEXT_KEYS = ("question", "text", "explain", "term", "definition")


@dataclass(frozen=True)
class Fragment:
    """One piece of a page: what it is, its text and the source line it starts on.

    Attributes:
        kind: ``prose`` (text a reader sees, math and code removed), ``math``
            (the LaTeX of one formula), ``code`` (the body of a code cell or code
            block) or ``quiz`` (prose from a quiz body, math removed).
        text: the text itself.
        line: 1-based line of the page where the fragment starts.
        directive: the innermost directive around the fragment (``""`` at top level),
            e.g. ``code-cell``, ``solution``, ``python`` for a plain fence.
        tags: the ``tags`` option of a code cell.
        in_solution: whether the fragment lies inside a ``{solution}`` directive or
            between ``{solution-start}`` and ``{solution-end}``.
    """

    kind: FragmentKind
    text: str
    line: int
    directive: str = ""
    tags: tuple[str, ...] = ()
    in_solution: bool = False


@dataclass
class Solution:
    """One exercise solution: its form (``directive`` or ``gated``), where it starts, its code blocks."""

    form: Literal["directive", "gated"]
    line: int
    code_blocks: list[Fragment] = field(default_factory=list)
    closed: bool = True


@dataclass
class Page:
    """A parsed page: its fragments and its solutions."""

    path: Path
    fragments: list[Fragment]
    solutions: list[Solution]

    def of_kind(self, kind: FragmentKind) -> list[Fragment]:
        return [fragment for fragment in self.fragments if fragment.kind == kind]


def parse_page(path: Path) -> Page:
    """Split one MyST page into fragments.

    Args:
        path: a ``.md`` page of the book.

    Returns:
        The page's fragments in source order and its solutions.

    Example:
        >>> import tempfile
        >>> source = "Loss $\\\\ell_t$ is 0.5.\\n\\n```{code-cell} ipython3\\nx = 1\\n```\\n"
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     page_path = Path(folder) / "page.md"
        ...     _ = page_path.write_text(source)
        ...     page = parse_page(page_path)
        >>> [(f.kind, f.text.strip()) for f in page.fragments]
        [('math', '\\\\ell_t'), ('prose', 'Loss  is 0.5.'), ('code', 'x = 1')]
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    start = _skip_front_matter(lines)
    parser = _Parser(lines)
    parser.parse(start, len(lines), directive="", in_solution=False)
    return Page(path=path, fragments=parser.fragments, solutions=parser.solutions)


def _skip_front_matter(lines: list[str]) -> int:
    if lines and lines[0].strip() == "---":
        for index in range(1, len(lines)):
            if lines[index].strip() == "---":
                return index + 1
    return 0


class _Parser:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.fragments: list[Fragment] = []
        self.solutions: list[Solution] = []
        self._gated: Solution | None = None

    def parse(self, begin: int, end: int, directive: str, in_solution: bool) -> None:
        """Parse lines[begin:end] as MyST markdown."""
        paragraph: list[tuple[int, str]] = []
        index = begin
        while index < end:
            line = self.lines[index]
            stripped = line.strip()
            fence = FENCE.match(line)
            if fence and fence.group("info") and not _is_closing(fence):
                self._flush(paragraph, directive, in_solution)
                index = self._fenced_block(index, end, fence, in_solution)
                continue
            if stripped.startswith("$$"):
                self._flush(paragraph, directive, in_solution)
                index = self._display_math(index, end, directive, in_solution)
                continue
            amsmath = AMSMATH_BEGIN.match(line)
            if amsmath and not paragraph:
                index = self._amsmath(index, end, amsmath.group("env"), directive, in_solution)
                continue
            if stripped.startswith("<!--"):
                self._flush(paragraph, directive, in_solution)
                while index < end and "-->" not in self.lines[index]:
                    index += 1
                index += 1
                continue
            if not stripped or stripped == "+++" or re.fullmatch(r"\(.+\)=", stripped):
                self._flush(paragraph, directive, in_solution)
            else:
                paragraph.append((index, line))
            index += 1
        self._flush(paragraph, directive, in_solution)

    # -- fenced blocks -----------------------------------------------------------
    def _fenced_block(self, index: int, end: int, fence: re.Match[str], in_solution: bool) -> int:
        marker = fence.group("fence")
        closing = index + 1
        while closing < end:
            candidate = FENCE.match(self.lines[closing])
            if candidate and not candidate.group("info") and candidate.group("fence")[0] == marker[0] and len(candidate.group("fence")) >= len(marker):
                break
            closing += 1
        info = fence.group("info")
        directive = DIRECTIVE_INFO.match(info)
        name = directive.group("name") if directive else info.split()[0]
        argument = directive.group("argument") if directive else ""
        body_start, options = self._options(index + 1, closing)
        if name == "solution-start":
            self._gated = Solution("gated", index + 1, closed=False)
            self.solutions.append(self._gated)
        elif name == "solution-end" and self._gated is not None:
            self._gated.closed = True
            self._gated = None
        inside_solution = in_solution or name == "solution" or self._gated is not None
        if name in TITLED_DIRECTIVES or name.startswith("prf:"):
            self._add_inline(argument, index, name, inside_solution)
        for key, (line_number, value) in options.items():
            if key in PROSE_OPTIONS:
                self._add_inline(value, line_number, name, inside_solution)
        body = "\n".join(self.lines[body_start:closing])
        if name == "solution":
            solution = Solution("directive", index + 1)
            self.solutions.append(solution)
            before = len(self.fragments)
            self.parse(body_start, closing, name, True)
            solution.code_blocks = [f for f in self.fragments[before:] if f.kind == "code"]
        elif name in MARKDOWN_DIRECTIVES or name.startswith("prf:"):
            self.parse(body_start, closing, name, inside_solution)
        elif name == "math":
            self.fragments.append(Fragment("math", body, body_start + 1, name, (), inside_solution))
        elif name == "quiz":
            self._quiz(body, body_start, inside_solution)
        elif name not in {"solution-start", "solution-end"}:
            tags = _tags(options)
            code = Fragment("code", body, body_start + 1, name, tags, inside_solution)
            self.fragments.append(code)
            if self._gated is not None:
                self._gated.code_blocks.append(code)
        return closing + 1

    def _options(self, begin: int, end: int) -> tuple[int, dict[str, tuple[int, str]]]:
        """A directive's options, as ``:key: value`` lines or a ``---`` YAML block."""
        options: dict[str, tuple[int, str]] = {}
        index = begin
        if index < end and self.lines[index].strip() == "---":
            closing = next((i for i in range(index + 1, end) if self.lines[i].strip() == "---"), None)
            if closing is not None:
                loaded = yaml.safe_load("\n".join(self.lines[index + 1:closing])) or {}
                for key, value in loaded.items():
                    options[str(key)] = (index + 1, value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip())
                return closing + 1, options
        while index < end:
            option = OPTION_LINE.match(self.lines[index])
            if not option:
                break
            options[option.group("key")] = (index, option.group("value"))
            index += 1
        return index, options

    def _quiz(self, body: str, body_start: int, in_solution: bool) -> None:
        try:
            spec = yaml.safe_load(body)
        except yaml.YAMLError:
            return
        for text in _quiz_texts(spec):
            offset = next((i for i, line in enumerate(body.splitlines()) if text.split("\n")[0][:40] in line), 0)
            self._add_inline(text, body_start + offset, "quiz", in_solution, kind="quiz")

    # -- display math ------------------------------------------------------------
    def _display_math(self, index: int, end: int, directive: str, in_solution: bool) -> int:
        first = self.lines[index].strip()[2:]
        if "$$" in first:
            self.fragments.append(Fragment("math", first.split("$$")[0], index + 1, directive, (), in_solution))
            return index + 1
        collected = [first]
        closing = index + 1
        while closing < end and "$$" not in self.lines[closing]:
            collected.append(self.lines[closing])
            closing += 1
        if closing < end:
            collected.append(self.lines[closing].split("$$")[0])
        self.fragments.append(Fragment("math", "\n".join(collected), index + 1, directive, (), in_solution))
        return closing + 1

    def _amsmath(self, index: int, end: int, environment: str, directive: str, in_solution: bool) -> int:
        closing = index
        while closing < end and f"\\end{{{environment}}}" not in self.lines[closing]:
            closing += 1
        body = "\n".join(self.lines[index:closing + 1])
        self.fragments.append(Fragment("math", body, index + 1, directive, (), in_solution))
        return closing + 1

    # -- inline text --------------------------------------------------------------
    def _flush(self, paragraph: list[tuple[int, str]], directive: str, in_solution: bool) -> None:
        if paragraph:
            self._add_inline("\n".join(text for _, text in paragraph), paragraph[0][0], directive, in_solution)
            paragraph.clear()

    def _add_inline(self, text: str, index: int, directive: str, in_solution: bool, kind: FragmentKind = "prose") -> None:
        prose, maths = split_inline(text)
        for math in maths:
            self.fragments.append(Fragment("math", math, index + 1, directive, (), in_solution))
        if prose.strip():
            self.fragments.append(Fragment(kind, prose, index + 1, directive, (), in_solution))


def _is_closing(fence: re.Match[str]) -> bool:
    return not fence.group("info")


def _tags(options: dict[str, tuple[int, str]]) -> tuple[str, ...]:
    if "tags" not in options:
        return ()
    raw = options["tags"][1].strip().strip("[]")
    return tuple(tag.strip().strip("'\"") for tag in raw.split(",") if tag.strip())


def _quiz_texts(spec: object) -> Iterator[str]:
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key in QUIZ_TEXT_KEYS and isinstance(value, (str, int, float)) and not isinstance(value, bool):
                yield str(value)
            else:
                yield from _quiz_texts(value)
    elif isinstance(spec, list):
        for item in spec:
            yield from _quiz_texts(item)


INLINE_CODE = re.compile(r"(?:\{[A-Za-z0-9_:+-]+\})?(`+)(?P<body>.+?)\1", re.DOTALL)
MATH_ROLE = re.compile(r"\{math\}`(?P<body>[^`]+)`")
INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\$)(?P<body>(?:\\\$|[^$])+?)(?<!\\)\$")
LINK_TARGET = re.compile(r"\]\((?:[^()]|\([^()]*\))*\)")
URL = re.compile(r"<?https?://[^\s>)]+>?")


def split_inline(text: str) -> tuple[str, list[str]]:
    """Split a paragraph into its prose (math, code, roles and links removed) and its inline math.

    Args:
        text: MyST inline text, possibly over several lines.

    Returns:
        The prose and the list of LaTeX bodies of its inline formulas.

    Example:
        >>> split_inline("The total is {glue:text}`fox_total:.2f`, $e^{-1.0}$ [see](https://x.org/1.5).")
        ('The total is , [see].', ['e^{-1.0}'])
    """
    maths = [match.group("body") for match in MATH_ROLE.finditer(text)]
    text = MATH_ROLE.sub(" ", text)
    text = INLINE_CODE.sub("", text)
    maths.extend(match.group("body") for match in INLINE_MATH.finditer(text))
    text = INLINE_MATH.sub("", text)
    text = LINK_TARGET.sub("]", text)
    text = URL.sub("", text)
    return text, maths


# --- symbols in LaTeX ------------------------------------------------------------

# Symbols with a command of their own that are neither Greek nor decorated letters.
SYMBOL_COMMANDS = frozenset({"varnothing", "emptyset"})
GREEK = frozenset({
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta",
    "iota", "kappa", "lambda", "mu", "nu", "xi", "pi", "varpi", "rho", "varrho", "sigma", "varsigma",
    "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda",
    "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega", "ell",
})
# Decorations and letter fonts: \hat{y} and \mathcal{D} are symbols of their own.
DECORATIONS = frozenset({
    "bar", "hat", "tilde", "widehat", "widetilde", "overline", "underline", "vec", "dot", "ddot",
    "check", "breve", "mathcal", "mathbb", "mathbf", "boldsymbol", "bm", "mathsf", "mathscr",
    "mathfrak", "mathit",
})
# Upright names: \operatorname{softmax}, \mathrm{KL}. In a sub- or superscript they are labels.
NAME_COMMANDS = frozenset({"operatorname", "mathrm"})
# Commands whose braced argument is not mathematics the notation check reads: prose inside a
# formula (\text), labels and environment names.
SKIPPED_ARGUMENT = frozenset({
    "text", "textrm", "textit", "textbf", "texttt", "textsf", "mbox", "label", "tag", "ref",
    "eqref", "begin", "end", "color", "phantom", "hphantom", "vphantom",
})
LATEX_TOKEN = re.compile(r"\\[A-Za-z]+\*?|\\.|[A-Za-z]|\d|\S")


@dataclass(frozen=True)
class Symbol:
    """A symbol found in a formula: its canonical LaTeX and whether it sat in a sub- or superscript.

    The canonical form is ``y``, ``\\alpha``, ``\\hat{y}``, ``\\mathcal{D}``,
    ``\\bar{\\ell}`` (decorations nest) or ``\\mathrm{KL}`` for an upright name
    (``\\operatorname{KL}`` and ``\\mathrm{KL}`` are the same name).
    """

    latex: str
    in_script: bool


def math_symbols(latex: str) -> list[Symbol]:
    """The symbols of a formula, in order: letters, Greek letters, decorated letters, upright names.

    What is not a symbol: digits, operators with their own command (``\\log``,
    ``\\sum``, ``\\max``, ``\\partial``, ...), the text of ``\\text{...}``,
    equation labels and environment names, and upright names inside a sub- or
    superscript (``L^{\\mathrm{CTC}}`` holds the symbol ``L`` and a label).

    Args:
        latex: the LaTeX of one formula.

    Returns:
        Every symbol occurrence, base and script alike.

    Example:
        >>> [s.latex for s in math_symbols(r"\\bar{\\ell} = \\operatorname{softmax}(z_t)_{y} + \\hat y^{\\text{old}}")]
        ['\\\\bar{\\\\ell}', '\\\\mathrm{softmax}', 'z', 't', 'y', '\\\\hat{y}']
    """
    tokens = LATEX_TOKEN.findall(latex)
    symbols: list[Symbol] = []
    _read(tokens, 0, len(tokens), False, symbols)
    return symbols


def _group_end(tokens: list[str], start: int, end: int) -> int:
    """Index just past the argument that starts at ``start`` (a braced group or one token)."""
    if start >= end:
        return start
    if tokens[start] != "{":
        return start + 1
    depth = 0
    for index in range(start, end):
        if tokens[index] == "{":
            depth += 1
        elif tokens[index] == "}":
            depth -= 1
            if depth == 0:
                return index + 1
    return end


def _inner(tokens: list[str], start: int, stop: int) -> tuple[int, int]:
    """The bounds of an argument's content, braces excluded."""
    if stop - start >= 2 and tokens[start] == "{":
        return start + 1, stop - 1
    return start, stop


def _read(tokens: list[str], start: int, end: int, in_script: bool, out: list[Symbol]) -> None:
    index = start
    while index < end:
        token = tokens[index]
        if token in {"_", "^"}:
            stop = _group_end(tokens, index + 1, end)
            inner_start, inner_stop = _inner(tokens, index + 1, stop)
            _read(tokens, inner_start, inner_stop, True, out)
            index = stop
            continue
        if token.startswith("\\") and len(token) > 2:
            command = token[1:].rstrip("*")
            if command in SKIPPED_ARGUMENT:
                index = _group_end(tokens, index + 1, end)
                continue
            if command in NAME_COMMANDS:
                stop = _group_end(tokens, index + 1, end)
                inner_start, inner_stop = _inner(tokens, index + 1, stop)
                name = "".join(t for t in tokens[inner_start:inner_stop] if not t.startswith("\\") or len(t) > 2 and t[1:] in GREEK)
                if name and not in_script:
                    out.append(Symbol(f"\\mathrm{{{name}}}", in_script))
                index = stop
                continue
            if command in DECORATIONS:
                stop = _group_end(tokens, index + 1, end)
                inner_start, inner_stop = _inner(tokens, index + 1, stop)
                inside: list[Symbol] = []
                _read(tokens, inner_start, inner_stop, in_script, inside)
                if not inside:
                    inside = [Symbol(t, in_script) for t in tokens[inner_start:inner_stop] if t.isdigit()]
                out.extend(Symbol(f"\\{command}{{{s.latex}}}", in_script) for s in inside)
                index = stop
                continue
            if command in GREEK or command in SYMBOL_COMMANDS:
                out.append(Symbol(token, in_script))
            index += 1
            continue
        if len(token) == 1 and token.isascii() and token.isalpha():
            out.append(Symbol(token, in_script))
        index += 1


# --- typed numbers and the notation registry ---------------------------------------

DECIMAL = re.compile(r"(?<![\w.])\d+(?:\.\d+)+(?:[eE][-+]?\d+)?(?![\w])|(?<![\w.])\d+[eE][-+]?\d+(?![\w.])")
TABLE_ROW = re.compile(r"^\s*\|(?P<first>[^|]*)\|")


def decimal_numbers(text: str) -> list[str]:
    """The decimal numbers typed in a text, as typed: ``0.25``, ``75.8``, ``1e-3``, ``3.10.2``.

    A digit run glued to a letter (``fp32``, ``v0.10``) is a name, not a number.

    Example:
        >>> decimal_numbers("losses 0.1 and 0.25, lr 1e-3, 12 steps, fp32, v0.10.x, Python 3.11.")
        ['0.1', '0.25', '1e-3', '3.11']
    """
    return [match.group(0) for match in DECIMAL.finditer(text)]


def registry_rows(path: Path) -> list[tuple[int, list[Symbol]]]:
    """The symbols each row of the notation registry defines: the heads of its first column's formulas.

    Every table row whose first cell holds ``$...$`` formulas defines one symbol per
    formula: the first symbol of that formula (``$L^{\\text{sum}}$`` defines ``L``,
    ``$\\hat y$`` defines ``\\hat{y}``, ``$\\operatorname{softmax}$`` the name).

    Args:
        path: the registry page (``book/appendix_notation.md``).

    Returns:
        ``(line, symbols)`` per table row that defines symbols.
    """
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        row = TABLE_ROW.match(line)
        if not row:
            continue
        heads = []
        for match in INLINE_MATH.finditer(row.group("first")):
            symbols = math_symbols(match.group("body"))
            if symbols:
                heads.append(symbols[0])
        if heads:
            rows.append((number, heads))
    return rows
