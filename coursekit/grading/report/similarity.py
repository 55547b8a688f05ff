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
"""

from __future__ import annotations

import ast
import difflib
import io
import tokenize
from dataclasses import dataclass
from typing import Iterable, Mapping

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


def find_function(sources: Iterable[str], name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The last top-level definition of ``name`` in a notebook's code cells (as the kernel would keep it).

    Cells that do not parse (IPython magics, syntax errors) are skipped.

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
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue
        for node in tree.body:
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
