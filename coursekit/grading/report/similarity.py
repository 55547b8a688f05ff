"""How alike two functions are once names, comments and formatting no longer count.

A function is *normalised* by parsing it, dropping its docstrings, renaming every
local identifier (the function's own name, its parameters, the variables it
binds or reads) to ``v0``, ``v1``, ... in order of first appearance, and
tokenising ``ast.unparse``'s output, so comments, blank lines, quotes,
parentheses and names do not count. Attribute names (``.sum``, ``.gather``)
and keyword-argument names (``dim=``) are the API being used and are kept.

The *similarity* of two normalised functions is difflib's ratio of their token
sequences: ``2 M / (len(a) + len(b))``, where ``M`` counts the tokens in the
longest matching blocks. It is 1.0 for answers that are identical after
normalisation and falls as statements are added, removed or reordered. One
inserted variable early in a function shifts the numbering of every later
name, so reordered code scores lower than its likeness to a reader; the
measure is a flag for a human to look at, never a verdict.

The report runs in the grader's own process, outside the sandbox, on whatever
a student handed in, and every ``coursekit grade`` and ``coursekit report``
re-reads the whole class, so its work per notebook is bounded: only a cell that
defines a graded name at its top level (a text search, linear in the cell) is
parsed, as the grader's kernel runs it (a cell with magics in IPython's
translation, the bodies of ``%%time`` and ``%%capture`` as the cell's code,
every text parsed counted against the notebook's budget); a code cell longer
than :data:`MAX_CELL_CHARS` is not parsed, nor, once a notebook's parsed
cells reach :data:`MAX_NOTEBOOK_CHARS`, any later one; a function of more
than :data:`MAX_NODES` syntax nodes is not normalised, and an answer whose
normalisation fails (a 600-term sum is deeper than ``ast.unparse`` recurses)
is kept as the reason it was not compared (:class:`Answer`), never an error. Only the normalised tokens are kept per
student, not the syntax tree, and the node cap bounds difflib's quadratic cost
per pair.
"""

from __future__ import annotations

import ast
import difflib
import io
import re
import sys
import tokenize
from dataclasses import dataclass
from typing import Iterable, Mapping

from coursekit.grading.magics import cell_statements

#: the longest code cell (in characters) the report parses; a notebook may hold 20 MB, a written answer a few kB.
MAX_CELL_CHARS = 200_000
#: the most characters of code the report parses per notebook (a solved notebook's answer cells hold under 20,000);
#: without it, a 20 MB notebook of cells just under :data:`MAX_CELL_CHARS` costs every report about 40 s of CPU.
MAX_NOTEBOOK_CHARS = 1_000_000
#: the most syntax nodes of a function the report normalises and compares (references and solutions have under 500).
MAX_NODES = 2_500

#: tokens that carry no content once the code has been unparsed.
_SKIPPED_TOKENS = {tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT, tokenize.ENCODING, tokenize.ENDMARKER}
#: a block's start and end stay in the sequence (an indented line is not the same code as a dedented one).
_BLOCK_TOKENS = {tokenize.INDENT: "<indent>", tokenize.DEDENT: "<dedent>"}


class _Renamer(ast.NodeTransformer):
    """Renames identifiers to ``v0``, ``v1``, ... in the order the tree is walked (source order)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _new(self, name: str) -> str:
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self._new(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = self._new(node.arg)
        node.annotation = None
        return node

    def _visit_def(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        node.name = self._new(node.name)
        node.returns = None
        node.body = _without_docstring(node.body)
        self.generic_visit(node)
        return node

    visit_FunctionDef = _visit_def
    visit_AsyncFunctionDef = _visit_def

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        if node.name:
            node.name = self._new(node.name)
        self.generic_visit(node)
        return node


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return body[1:] or [ast.Pass()]
    return body


def normalise(function: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, ...]:
    """The token sequence of ``function`` with docstrings, comments, formatting and local names normalised.

    Args:
        function: a parsed function definition (left unchanged).

    Returns:
        The tokens of the normalised source.

    Example:
        >>> a = ast.parse("def f(x):\\n    '''Doc.'''\\n    total = x.sum(dim=0)  # why\\n    return total").body[0]
        >>> b = ast.parse("def g(values):\\n    s = (values.sum(dim = 0))\\n\\n    return s").body[0]
        >>> normalise(a) == normalise(b)
        True
        >>> " ".join(normalise(a))
        'def v0 ( v1 ) : <indent> v2 = v1 . sum ( dim = 0 ) return v2 <dedent>'
    """
    tree = _Renamer().visit(ast.parse(ast.unparse(function)).body[0])
    text = ast.unparse(tree)
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return tuple(_BLOCK_TOKENS.get(t.type, t.string) for t in tokens if t.type not in _SKIPPED_TOKENS)


def similarity(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    """difflib's ratio ``2 M / (len(a) + len(b))`` of two normalised token sequences, in [0, 1].

    Example:
        >>> similarity(("a", "b", "c", "d"), ("a", "b", "x", "d"))
        0.75
        >>> similarity((), ())
        1.0
    """
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


@dataclass(frozen=True)
class Answer:
    """One student's function as the report keeps it: its normalised tokens, or why it was not compared.

    Attributes:
        tokens: the normalised tokens (empty when not compared).
        skipped: why the answer was not compared (empty when it was).
    """

    tokens: tuple[str, ...] = ()
    skipped: str = ""

    @property
    def compared(self) -> bool:
        """Whether the answer was normalised and takes part in the comparisons."""
        return not self.skipped


def fingerprint(function: ast.FunctionDef | ast.AsyncFunctionDef) -> Answer:
    """``function`` normalised (see :func:`normalise`), or the reason it was not: too large, or normalising failed.

    Args:
        function: a parsed function definition (left unchanged).

    Returns:
        The answer as the report keeps it; never raises for a parsed function.

    Example:
        >>> fingerprint(ast.parse("def f(x):\\n    return x").body[0]).tokens[:3]
        ('def', 'v0', '(')
        >>> deep = ast.parse("def f():\\n    return " + " + ".join(["1"] * 600)).body[0]
        >>> fingerprint(deep).skipped
        'not compared: the function cannot be normalised (RecursionError)'
    """
    nodes = sum(1 for _ in ast.walk(function))
    if nodes > MAX_NODES:
        return Answer(skipped=f"not compared: the function has {nodes:,} syntax nodes, over the {MAX_NODES:,} "
                              "the report compares")
    try:
        return Answer(normalise(function))
    except Exception as error:  # noqa: BLE001 - any failure on a student's code is reported, never raised
        return Answer(skipped=f"not compared: the function cannot be normalised ({type(error).__name__})")


def _definitions(names: set[str]) -> re.Pattern[str]:
    """A top-level ``def`` (or ``async def``) of one of ``names``; group 1 is the name.

    A line starts after any of Python's line ends (``\\n``, ``\\r``), and a
    backslash continuation counts as a space, so a cell the regex passes over
    defines none of ``names`` at its top level.

    Example:
        >>> _definitions({"f", "g"}).findall("def f():\\r    pass\\rasync def \\\\\\n g(): pass\\n def f2(): pass")
        ['f', 'g']
    """
    alternatives = "|".join(re.escape(name) for name in sorted(names)) or r"(?!)"
    space = r"(?:[ \t\f]|\\\r?\n|\\\r)+"
    return re.compile(rf"(?:\A|(?<=[\r\n]))(?:async{space})?def{space}({alternatives})\b")


def find_answers(sources: Iterable[str], names: Iterable[str]) -> dict[str, Answer]:
    """Each of ``names``' last top-level definition in a notebook's code cells, as the report keeps it.

    Only a cell whose text defines one of ``names`` at the start of a line is
    parsed, once for all names, as the kernel runs it
    (:func:`~coursekit.grading.magics.cell_statements`: a cell with magics is
    read in IPython's translation, and the bodies of ``%%time`` and
    ``%%capture`` count as the cell's own code). A cell over
    :data:`MAX_CELL_CHARS`, or one that would take the notebook's parsed code
    past :data:`MAX_NOTEBOOK_CHARS`, is not parsed: a name it defines is
    reported as not compared. A name whose ``def`` line is in a cell that does
    not parse, or that does not define it when run (the ``def`` is in a
    string, a ``%%writefile`` or a ``%%timeit`` body), is reported as not
    compared too, unless an earlier cell defines it (the kernel keeps that one).

    Args:
        sources: the code cells' sources, in notebook order.
        names: the graded functions' names.

    Returns:
        Name -> answer, for the names some cell defines.

    Example:
        >>> found = find_answers(["def f(a):\\n    return a", "x = 1", "def g():\\n    pass"], ["f", "h"])
        >>> list(found), found["f"].compared
        (['f'], True)
        >>> find_answers(["def f():\\n    pass\\n" + "#" * MAX_CELL_CHARS], ["f"])["f"].skipped[:44]
        'not compared: its code cell has 200,018 char'
        >>> find_answers(["%%capture\\ndef f(a):\\n    return a"], ["f"])["f"].compared
        True
    """
    wanted = set(names)
    defines = _definitions(wanted)
    found: dict[str, ast.FunctionDef | ast.AsyncFunctionDef | str] = {}
    parsed = 0
    for source in sources:
        defined = set(defines.findall(source))
        if not defined:
            continue
        if len(source) > MAX_CELL_CHARS:
            found.update(dict.fromkeys(defined, f"not compared: its code cell has {len(source):,} characters, "
                                                f"over the {MAX_CELL_CHARS:,} the report parses"))
            continue
        cell = cell_statements(source, MAX_NOTEBOOK_CHARS - parsed)
        parsed += cell.parsed_chars
        if cell.over_budget:
            found.update(dict.fromkeys(defined, _OVER_NOTEBOOK_BUDGET))
            continue
        for node in cell.statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in wanted:
                found[node.name] = node
        reason = (f"not compared: its cell is not Python, even as IPython translates its magics ({cell.error})"
                  if cell.error else "not compared: the cell with its def line does not define it when run (the "
                                     "def is in a string, or in a %%writefile or %%timeit body)")
        for name in defined:
            found.setdefault(name, reason)
    return {name: Answer(skipped=item) if isinstance(item, str) else fingerprint(item) for name, item in found.items()}


#: why a notebook's later defining cells are not compared (see :data:`MAX_NOTEBOOK_CHARS`).
_OVER_NOTEBOOK_BUDGET = (f"not compared: the notebook's cells that define graded functions hold over the "
                         f"{MAX_NOTEBOOK_CHARS:,} characters the report parses")
def find_function(sources: Iterable[str], name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The last top-level definition of ``name`` in a notebook's code cells (as the kernel would keep it).

    Cells are read as the kernel runs them (:func:`~coursekit.grading.magics.cell_statements`); cells that do
    not parse are skipped.

    Args:
        sources: the code cells' sources, in notebook order.
        name: the function's name.

    Returns:
        The definition, or ``None`` when no cell defines ``name``.

    Example:
        >>> find_function(["def f():\\n    return 1", "%time x", "def f():\\n    return 2"], "f").body[0].value.value
        2
        >>> find_function(["x = 1"], "f") is None
        True
    """
    found = None
    for source in sources:
        # The sources are the course's own (reference, release): read whole, without the students' budget.
        for node in cell_statements(source, sys.maxsize).statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                found = node
    return found


@dataclass(frozen=True)
class Group:
    """Students whose answers are near-identical to each other (linked by pairs at or above the threshold).

    Attributes:
        students: the members, sorted.
        lowest: the lowest similarity of the pairs that link them.
    """

    students: tuple[str, ...]
    lowest: float


def near_identical_groups(answers: Mapping[str, tuple[str, ...]], threshold: float) -> list[Group]:
    """Group students whose normalised answers have a similarity of at least ``threshold``.

    Students are linked pairwise and grouped by transitivity (single linkage),
    so a group of ``k`` students may join answers that differ more than any one
    link shows; ``lowest`` is the weakest link.

    Args:
        answers: student -> normalised tokens of one function.
        threshold: the least similarity of a link, in [0, 1].

    Returns:
        Groups of two or more students, smallest first (a pair is more telling
        than a large group, which is usually the answer most students wrote),
        then by their first student.

    Example:
        >>> groups = near_identical_groups({"a": ("x", "y"), "b": ("x", "y"), "c": ("z",)}, 0.9)
        >>> [(g.students, g.lowest) for g in groups]
        [(('a', 'b'), 1.0)]
    """
    # Identical answers are linked at 1.0 without comparing them; only distinct answers are compared pairwise.
    by_answer: dict[tuple[str, ...], list[str]] = {}
    for student in sorted(answers):
        by_answer.setdefault(answers[student], []).append(student)
    distinct = list(by_answer)
    parent = list(range(len(distinct)))
    lowest = [1.0] * len(distinct)

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    links: list[tuple[int, int, float]] = []
    for i, first in enumerate(distinct):
        for j in range(i + 1, len(distinct)):
            matcher = difflib.SequenceMatcher(None, first, distinct[j], autojunk=False)
            if matcher.real_quick_ratio() >= threshold and matcher.quick_ratio() >= threshold:
                ratio = matcher.ratio()
                if ratio >= threshold:
                    links.append((i, j, ratio))
    for i, j, _ in links:
        parent[root(i)] = root(j)
    for i, _, ratio in links:
        lowest[root(i)] = min(lowest[root(i)], ratio)
    members: dict[int, list[str]] = {}
    for index, answer in enumerate(distinct):
        members.setdefault(root(index), []).extend(by_answer[answer])
    groups = [Group(tuple(sorted(m)), lowest[top]) for top, m in members.items() if len(m) > 1]
    return sorted(groups, key=lambda g: (len(g.students), g.students))
