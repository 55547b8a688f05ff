"""The stored results of one graded assignment, as the report reads them.

``coursekit grade`` leaves, per submission, a JSON report under
``grade-reports/<assignment>/<student>.json`` (see
:class:`~coursekit.grading.driver.SubmissionReport`) and the notebook it ran
under ``autograded/<student>/<assignment>/``. The report reads only those, the
assignment's spec (which functions are graded, and their references) and the
released notebook (to tell an untouched answer from a written one): nothing is
graded again.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coursekit.grading.driver import SubmissionReport, reports_directory
from coursekit.grading.gradebook import Course, load_course
from coursekit.grading.report.similarity import Answer, find_answers, find_function
from coursekit.grading.spec import AssignmentSpec, CheckedQuestion, FunctionQuestion, load_spec

_REPORT_FIELDS = {f.name for f in dataclasses.fields(SubmissionReport)}


class MissingResults(LookupError):
    """The assignment has no stored results to report on."""


@dataclass(frozen=True)
class GradedFunction:
    """A function the assignment grades, with what the report compares students' code to.

    Attributes:
        grade_id: the question that calls it.
        name: the student's function, as the notebook names it.
        reference: the reference's definition (``None`` when the question has
            none in ``coursekit``, e.g. a checked training loop).
        stub: the released notebook's definition (an untouched answer), if any.
    """

    grade_id: str
    name: str
    reference: ast.FunctionDef | ast.AsyncFunctionDef | None
    stub: ast.FunctionDef | ast.AsyncFunctionDef | None


@dataclass
class ClassResults:
    """What the report shows: every stored submission report, and the code of each graded function.

    Attributes:
        assignment: the assignment id.
        directory: ``grade-reports/<assignment>``, where the report is written.
        reports: one per student, sorted by student.
        functions: the graded functions, in question order.
        answers: student -> function name -> the student's answer, normalised or why not (absent when
            no cell defines it); only the tokens are kept, not the syntax tree.
    """

    assignment: str
    directory: Path
    reports: list[SubmissionReport]
    functions: list[GradedFunction]
    answers: dict[str, dict[str, Answer]] = field(default_factory=dict)


def _code_cells(path: Path) -> list[str]:
    """The code cells' sources of the notebook at ``path`` (none when it is missing or not a notebook)."""
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cells = notebook["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    sources = []
    for cell in cells if isinstance(cells, list) else []:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            sources.append("".join(source) if isinstance(source, list) else str(source))
    return sources


def _reference_definition(question: FunctionQuestion) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The reference's parsed definition, when it is a plain function of ``coursekit`` whose source is readable."""
    reference = question.reference
    if not str(getattr(reference, "__module__", "")).startswith("coursekit."):
        return None
    try:
        source = textwrap.dedent(inspect.getsource(reference))
    except (OSError, TypeError):
        return None
    return find_function([source], getattr(reference, "__name__", ""))


def graded_functions(spec: AssignmentSpec, released: list[str]) -> list[GradedFunction]:
    """The student functions the spec grades, with their references and released stubs.

    Args:
        spec: the assignment's spec.
        released: the released notebook's code cells (empty when it is not there).

    Returns:
        One entry per graded function, in question order.
    """
    functions = []
    for question in spec.questions:
        if not isinstance(question, (FunctionQuestion, CheckedQuestion)):
            continue
        name = question.student_function or question.function
        reference = _reference_definition(question) if isinstance(question, FunctionQuestion) else None
        functions.append(GradedFunction(question.grade_id, name, reference, find_function(released, name)))
    return functions


def _read_report(path: Path) -> SubmissionReport:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"stored result {path} cannot be read: {error}") from None
    if not isinstance(data, dict) or not {"student", "score", "max_score", "outcome"} <= set(data):
        raise ValueError(f"stored result {path} is not a submission report of coursekit grade")
    return SubmissionReport(**{k: v for k, v in data.items() if k in _REPORT_FIELDS})


def load_results(course_dir: Path, assignment: str, db_url: str | None = None) -> ClassResults:
    """Read the stored results of ``assignment`` in the nbgrader course at ``course_dir``.

    Args:
        course_dir: the course directory.
        assignment: the assignment id.
        db_url: the gradebook URL, when not nbgrader's configured one (only the tree names are read from it).

    Returns:
        The class's results.

    Raises:
        FileNotFoundError: ``course_dir`` or the assignment's spec does not exist.
        MissingResults: no stored result of ``assignment`` (it was never graded).
        ValueError: a stored result is not a submission report.
    """
    course: Course = load_course(Path(course_dir), db_url)
    directory = reports_directory(course.root, assignment)
    paths = sorted(directory.glob("*.json")) if directory.is_dir() else []
    if not paths:
        raise MissingResults(
            f"no stored results of assignment {assignment!r} in {directory}: run `coursekit grade {assignment}` first"
        )
    spec = load_spec(course.root / "autograde" / f"{assignment}.py")
    released = _code_cells(course.root / "release" / assignment / f"{spec.notebook}.ipynb")
    functions = graded_functions(spec, released)
    reports = sorted((_read_report(path) for path in paths), key=lambda r: r.student)
    names = [f.name for f in functions]
    answers = {}
    for report in reports:
        cells = _code_cells(course.root / course.autograded / report.student / assignment / f"{spec.notebook}.ipynb")
        answers[report.student] = find_answers(cells, names)
    return ClassResults(assignment, directory, reports, functions, answers)
