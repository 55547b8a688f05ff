"""nbgrader's rules for autograder test cells and their hidden tests, written once.

Two parts of coursekit need them and must agree with nbgrader to the character:

* the grader (:mod:`coursekit.grading.gradebook`) rebuilds the released source of
  every cell from the instructor's source that ``nbgrader generate_assignment``
  saved in the gradebook, and compares each submission's test cells with it;
* the feedback preprocessor :class:`coursekit.course.RedactHiddenTests` shows
  students their test cells without the hidden regions.

:func:`strip_hidden_tests` does what nbgrader's ``ClearHiddenTests`` preprocessor
does on every source it accepts; :func:`is_autograder_test` is nbgrader's rule
for the cells it scores by running them (``is_grade`` and not ``is_solution``,
code cell).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

#: nbgrader's default markers (``ClearHiddenTests.begin_test_delimeter`` and ``end_test_delimeter``).
HIDDEN_BEGIN = "BEGIN HIDDEN TESTS"
HIDDEN_END = "END HIDDEN TESTS"


class StrippedSource(NamedTuple):
    """A cell's source with its hidden regions removed.

    Attributes:
        released: the text students are given.
        regions: how many hidden regions were removed (outermost ones when regions nest).
    """

    released: str
    regions: int


def strip_hidden_tests(source: str, begin: str = HIDDEN_BEGIN, end: str = HIDDEN_END) -> StrippedSource:
    """Remove the hidden test regions of ``source`` exactly as ``nbgrader generate_assignment`` does.

    The source is cut at ``"\\n"`` only, so a ``"\\r"`` stays on the lines it ends. A line
    holding ``begin`` anywhere (in a comment, in a string, after spaces) opens a region and a
    line holding ``end`` anywhere closes it; both marker lines go, and a line holding both
    counts as ``begin``. An ``end`` outside any region is dropped and closes nothing. Blank
    lines around a region stay, trailing ones included.

    nbgrader refuses two sources and releases nothing: a ``begin`` inside an open region,
    and a region never closed. This function never raises on them, because the feedback of
    a whole class must not stop on one cell, and it never shows a line that could be hidden:
    regions nest (each ``begin`` needs its own ``end``) and an unclosed region hides the rest
    of the cell. The grader never meets such a source (the gradebook only holds cells of
    assignments that nbgrader generated).

    Args:
        source: a cell's source text.
        begin: the marker opening a hidden region.
        end: the marker closing one.

    Returns:
        The released text and the number of regions removed.

    Raises:
        TypeError: ``source``, ``begin`` or ``end`` is not a string.
        ValueError: ``begin`` or ``end`` is empty.

    Example:
        >>> strip_hidden_tests("assert f(1) == 1\\n### BEGIN HIDDEN TESTS\\nassert f(2) == 4\\n### END HIDDEN TESTS\\n")
        StrippedSource(released='assert f(1) == 1\\n', regions=1)
    """
    for name, value in (("source", source), ("begin", begin), ("end", end)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not begin or not end:
        raise ValueError(f"begin and end must be non-empty markers, got {begin!r} and {end!r}")
    kept: list[str] = []
    depth = 0
    regions = 0
    for line in source.split("\n"):
        if begin in line:
            if depth == 0:
                regions += 1
            depth += 1
        elif end in line:
            depth = max(depth - 1, 0)
        elif depth == 0:
            kept.append(line)
    return StrippedSource("\n".join(kept), regions)


def is_autograder_test(cell: Mapping[str, Any]) -> bool:
    """True for a cell that nbgrader scores by running it: a graded code cell that is not an answer.

    This is nbgrader's own rule (``nbgrader.utils.is_grade`` and not ``is_solution``, for a
    code cell); a task flag does not change it.

    Args:
        cell: a notebook cell, as nbformat reads it or as plain JSON data; malformed metadata
            (not a mapping) makes it an ordinary cell.

    Returns:
        Whether ``cell`` is an autograder test cell.

    Example:
        >>> test = {"cell_type": "code", "metadata": {"nbgrader": {"grade": True, "solution": False}}}
        >>> answer = {"cell_type": "code", "metadata": {"nbgrader": {"grade": True, "solution": True}}}
        >>> is_autograder_test(test), is_autograder_test(answer), is_autograder_test({"cell_type": "code"})
        (True, False, False)
    """
    metadata = cell.get("metadata")
    nbgrader = metadata.get("nbgrader") if isinstance(metadata, Mapping) else None
    if cell.get("cell_type") != "code" or not isinstance(nbgrader, Mapping):
        return False
    return bool(nbgrader.get("grade", False)) and not nbgrader.get("solution", False)
