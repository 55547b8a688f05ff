"""The hidden region of every autograder test cell, derived from the question's spec.

A question is defined once, by its spec (:mod:`coursekit.grading.spec`). In a
source notebook, a test cell holds the student-facing visible checks and,
between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``, only the
:func:`derived_block`, which scores the spec's question in the student's
kernel (:mod:`coursekit.course.hidden_score`). :func:`derive_notebook` writes
those blocks; ``python -m coursekit.course derive-hidden-tests`` runs it over
the course, and the test suite fails when a notebook's hidden region is not
exactly the derived one. The same command writes the introduction's grading
paragraphs (:mod:`coursekit.course.grading_notes`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coursekit.course.grading_notes import write_grading_notes
from coursekit.grading.hidden_tests import HIDDEN_BEGIN, HIDDEN_END, is_autograder_test
from coursekit.grading.spec import AssignmentSpec, load_spec

#: the marker lines of the derived block, each on its own line, as the course writes them.
BEGIN_LINE = f"### {HIDDEN_BEGIN}"
END_LINE = f"### {HIDDEN_END}"


def derived_block(grade_id: str) -> str:
    """The hidden region of the test cell ``grade_id``, markers included (each on its own line).

    The call is the region's last line, so its value (the points) is the
    cell's ``execute_result``, nbgrader's partial score.

    Example:
        >>> print(derived_block("test_token_nll"))
        ### BEGIN HIDDEN TESTS
        from coursekit.course.hidden_score import question_points as _question_points
        _question_points("test_token_nll", globals())
        ### END HIDDEN TESTS
    """
    return "\n".join([
        BEGIN_LINE,
        "from coursekit.course.hidden_score import question_points as _question_points",
        f"_question_points({json.dumps(grade_id)}, globals())",
        END_LINE,
    ])


def visible_part(source: str) -> str:
    """A test cell's source up to its first hidden region, without trailing blank lines.

    Example:
        >>> visible_part('print("ok")\\n### BEGIN HIDDEN TESTS\\nsecret()\\n### END HIDDEN TESTS')
        'print("ok")'
    """
    lines = source.split("\n")
    # nbgrader's rule: a line holding the marker anywhere opens a region.
    starts = [i for i, line in enumerate(lines) if HIDDEN_BEGIN in line]
    kept = lines[: starts[0]] if starts else lines
    return "\n".join(kept).rstrip()


def derived_source(source: str, grade_id: str) -> str:
    """``source``'s visible part followed by the derived hidden block (everything after the block is dropped).

    Example:
        >>> print(derived_source("assert True\\n### BEGIN HIDDEN TESTS\\nold()\\n### END HIDDEN TESTS\\n", "t"))
        assert True
        ### BEGIN HIDDEN TESTS
        from coursekit.course.hidden_score import question_points as _question_points
        _question_points("t", globals())
        ### END HIDDEN TESTS
    """
    visible = visible_part(source)
    return (visible + "\n" if visible else "") + derived_block(grade_id)


def _source_text(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _grade_id(cell: dict[str, Any]) -> str:
    return str(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", ""))


def graded_test_cells(notebook: dict[str, Any]) -> list[dict[str, Any]]:
    """The notebook's autograder test cells, in order."""
    return [cell for cell in notebook.get("cells", []) if is_autograder_test(cell)]


def check_cells_match(notebook: dict[str, Any], spec: AssignmentSpec) -> None:
    """Check that the notebook's test cells and the spec's questions are the same grade_ids with the same points.

    Raises:
        ValueError: naming the grade_ids that differ.
    """
    cells = {_grade_id(c): float(c["metadata"]["nbgrader"].get("points", 0)) for c in graded_test_cells(notebook)}
    questions = {q.grade_id: float(q.points) for q in spec.questions}
    if cells != questions:
        raise ValueError(f"{spec.assignment}: the test cells' grade_ids and points must be the spec's questions', "
                         f"got cells {cells} and questions {questions}")


def derive_notebook(notebook: dict[str, Any], spec: AssignmentSpec) -> dict[str, Any]:
    """``notebook`` with every test cell's hidden region replaced by its derived block.

    Args:
        notebook: a source notebook as JSON data.
        spec: its assignment's spec.

    Returns:
        The notebook (changed in place and returned).

    Raises:
        ValueError: the test cells are not the spec's questions (see :func:`check_cells_match`).
    """
    check_cells_match(notebook, spec)
    for cell in graded_test_cells(notebook):
        text = derived_source(_source_text(cell), _grade_id(cell))
        cell["source"] = text.splitlines(keepends=True)
    return notebook


def derive_course(course: Path) -> list[Path]:
    """Write the derived hidden blocks, and the introduction's grading paragraphs, into every notebook with a spec.

    The paragraphs are :mod:`coursekit.course.grading_notes`'s.

    Args:
        course: the course directory (``source/<assignment>/<assignment>.ipynb``, ``autograde/<assignment>.py``).

    Returns:
        The notebooks whose text changed.
    """
    changed = []
    for spec_path in sorted((Path(course) / "autograde").glob("*.py")):
        spec = load_spec(spec_path)
        path = Path(course) / "source" / spec.assignment / f"{spec.notebook}.ipynb"
        before = path.read_text(encoding="utf-8")
        notebook = write_grading_notes(derive_notebook(json.loads(before), spec))
        after = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
        if after != before:
            path.write_text(after, encoding="utf-8")
            changed.append(path)
    return changed
