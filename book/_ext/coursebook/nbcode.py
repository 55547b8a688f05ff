"""Code cells of a page, as a reader's notebook should hold them.

The executed notebook behind a page also holds the book's build plumbing:
``from myst_nb import glue`` and ``glue(...)`` calls that paste numbers and
figures into the prose, and ``assert`` checks that a sentence still matches its
result. In the reader's notebook the prose already carries the values, so
:func:`strip_plumbing` removes those statements (and a loop or block left empty
by that), keeping every other line, comment and blank line as it was.
"""

from __future__ import annotations

import ast
import re

GLUE_MODULES = ("myst_nb", "myst_nb.glue", "glue")


def _is_glue_import(statement: ast.stmt) -> bool:
    if isinstance(statement, ast.ImportFrom):
        return statement.module in GLUE_MODULES or any(alias.name == "glue" for alias in statement.names)
    if isinstance(statement, ast.Import):
        return all(alias.name.split(".")[0] == "myst_nb" for alias in statement.names)
    return False


def _is_glue_call(statement: ast.stmt) -> bool:
    if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)):
        return False
    function = statement.value.func
    return (isinstance(function, ast.Name) and function.id == "glue") or (
        isinstance(function, ast.Attribute) and function.attr == "glue"
    )


def _removed(statements: list[ast.stmt], drop_asserts: bool) -> tuple[list[ast.stmt], bool]:
    """The statements to delete from ``statements``, and whether all of them go."""
    gone: list[ast.stmt] = []
    for statement in statements:
        if _is_glue_import(statement) or _is_glue_call(statement) or (drop_asserts and isinstance(statement, ast.Assert)):
            gone.append(statement)
            continue
        bodies = [getattr(statement, name) for name in ("body", "orelse", "finalbody") if getattr(statement, name, None)]
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or not bodies:
            continue
        inner = [_removed(body, drop_asserts=False) for body in bodies]
        if all(emptied for _, emptied in inner):
            gone.append(statement)
        elif not any(emptied for _, emptied in inner):
            gone.extend(part for removed, _ in inner for part in removed)
        # else: one branch would be left empty (invalid Python); the block stays as it is.
    return gone, len(gone) == len(statements) and bool(statements)


def strip_plumbing(source: str, *, drop_asserts: bool = False) -> str:
    """``source`` without the book's glue calls and imports (and, optionally, top-level asserts).

    Args:
        source: a code cell's source (IPython magics allowed).
        drop_asserts: also remove top-level ``assert`` statements (the build-time
            checks in cells the book hides).

    Returns:
        The remaining source, or ``""`` when nothing but plumbing was there.
        A cell that does not parse is returned unchanged.

    Example:
        >>> print(strip_plumbing('from myst_nb import glue\\nx = 2  # two\\nglue("x", x, display=False)'))
        x = 2  # two
    """
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return source
    gone, _ = _removed(tree.body, drop_asserts)
    drop: set[int] = set()
    for statement in gone:
        drop.update(range(statement.lineno, (statement.end_lineno or statement.lineno) + 1))
    kept = [line for number, line in enumerate(source.split("\n"), start=1) if number not in drop]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip("\n")
    if not any(line.strip() and not line.strip().startswith("#") for line in kept):
        return ""
    return text
