"""Reading the course's configuration and writing grades through nbgrader's Gradebook API.

Only the grader's driver process calls these functions, one submission at a
time, so each submission's grades are committed before the next one's are
written. The database is whatever nbgrader is configured with: SQLite in the
course directory by default, or a PostgreSQL URL for several graders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coursekit.course.config import with_installed_driver
from coursekit.grading.hidden_tests import HIDDEN_BEGIN, HIDDEN_END, strip_hidden_tests
from coursekit.grading.notebook import ExpectedCell


@dataclass(frozen=True)
class Course:
    """The parts of nbgrader's configuration the grader needs.

    Attributes:
        root: the course directory.
        course_id: nbgrader's ``CourseDirectory.course_id``.
        db_url: the gradebook URL.
        submitted, autograded, source: the tree names (nbgrader's defaults unless configured).
        hidden_markers: the markers of hidden test regions, as ``ClearHiddenTests`` is configured.
    """

    root: Path
    course_id: str
    db_url: str
    submitted: str = "submitted"
    autograded: str = "autograded"
    source: str = "source"
    hidden_markers: tuple[str, str] = (HIDDEN_BEGIN, HIDDEN_END)


@dataclass(frozen=True)
class CourseLayout:
    """Where a course keeps its trees: what a notebook's folder says about its course, assignment and student.

    Attributes:
        root: the course directory.
        course_id: nbgrader's ``CourseDirectory.course_id``.
        autograded, source: the tree names (nbgrader's defaults unless configured).
    """

    root: Path
    course_id: str
    autograded: str = "autograded"
    source: str = "source"


def _course_config(root: Path) -> Any:
    """The traitlets ``Config`` of ``nbgrader_config.py`` in ``root`` (empty without one), loaded from ``root``."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    if not (root / "nbgrader_config.py").is_file():
        return Config()
    previous = os.getcwd()
    os.chdir(root)
    try:
        return PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    finally:
        os.chdir(previous)


def course_layout(root: Path) -> CourseLayout:
    """Read the course id and tree names of ``nbgrader_config.py`` in ``root`` without importing nbgrader.

    The derived hidden blocks call it in every student's kernel under stock
    ``nbgrader autograde`` (:func:`~coursekit.course.hidden_score.grading_place`);
    importing nbgrader there costs about 2.5 s of CPU per notebook (nbformat's
    jsonschema compiles its URI grammars). It reads the ``CourseDirectory``
    section with nbgrader's defaults, as :func:`load_course` does through
    nbgrader; the tests check that the two agree.

    Args:
        root: the course directory.

    Returns:
        The layout.

    Raises:
        FileNotFoundError: ``root`` is not a directory.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     layout = course_layout(Path(folder))
        ...     (layout.root == Path(folder).resolve(), layout.course_id, layout.autograded, layout.source)
        (True, '', 'autograded', 'source')
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"course directory {root} does not exist")
    settings = _course_config(root).get("CourseDirectory", {})
    return CourseLayout(
        root=Path(os.path.abspath(settings.get("root", str(root)))),
        course_id=settings.get("course_id", ""),
        autograded=settings.get("autograded_directory", CourseLayout.autograded),
        source=settings.get("source_directory", CourseLayout.source),
    )


def load_course(root: Path, db_url: str | None = None) -> Course:
    """Read ``nbgrader_config.py`` in ``root`` the way nbgrader does.

    Args:
        root: the course directory.
        db_url: overrides the configured gradebook URL.

    Returns:
        The course settings.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import ClearHiddenTests

    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"course directory {root} does not exist")
    config = _course_config(root)
    coursedir = CourseDirectory(config=config)
    if "root" not in config.get("CourseDirectory", {}):
        coursedir.root = str(root)
    url = with_installed_driver(db_url or coursedir.db_url)
    release = ClearHiddenTests(config=config)
    return Course(
        root=Path(coursedir.root),
        course_id=coursedir.course_id,
        db_url=url,
        submitted=coursedir.submitted_directory,
        autograded=coursedir.autograded_directory,
        source=coursedir.source_directory,
        hidden_markers=(release.begin_test_delimeter, release.end_test_delimeter),
    )


def expected_cells(course: Course, assignment: str) -> dict[str, list[ExpectedCell]]:
    """The nbgrader-tracked cells of each notebook of ``assignment``, as released.

    Args:
        course: the course.
        assignment: the assignment id (must have been generated with nbgrader).

    Returns:
        ``{notebook name: [ExpectedCell, ...]}``.

    Raises:
        LookupError: the assignment is not in the gradebook.
    """
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(course.db_url, course.course_id) as gradebook:
        try:
            record = gradebook.find_assignment(assignment)
        except MissingEntry:
            raise LookupError(
                f"assignment {assignment!r} is not in the gradebook {course.db_url}: run nbgrader generate_assignment"
            ) from None
        notebooks: dict[str, list[ExpectedCell]] = {}
        for notebook in record.notebooks:
            grades = {c.name: c for c in notebook.grade_cells}
            solutions = {c.name for c in notebook.solution_cells}
            tasks = {c.name: c for c in notebook.task_cells}
            cells = []
            for source in notebook.source_cells:
                graded = grades.get(source.name) or tasks.get(source.name)
                cells.append(
                    ExpectedCell(
                        name=source.name,
                        cell_type=source.cell_type,
                        source=strip_hidden_tests(source.source or "", *course.hidden_markers).released,
                        locked=bool(source.locked),
                        grade=source.name in grades,
                        solution=source.name in solutions,
                        task=source.name in tasks,
                        points=float(graded.max_score) if graded is not None else None,
                    )
                )
            notebooks[notebook.name] = cells
    return notebooks


def graded_students(course: Course, assignment: str, notebook: str, test_ids: list[str]) -> set[str]:
    """Students whose every autograder test cell of ``notebook`` has a committed auto score.

    Args:
        course: the course.
        assignment: assignment id.
        notebook: notebook name.
        test_ids: the grade_ids of the autograder test cells.

    Returns:
        The set of student ids already graded (skipped unless ``--force``).
    """
    from nbgrader.api import Gradebook

    done: set[str] = set()
    with Gradebook(course.db_url, course.course_id) as gradebook:
        for submission in gradebook.assignment_submissions(assignment):
            for submitted in submission.notebooks:
                if submitted.name != notebook:
                    continue
                scores = {g.name: g.auto_score for g in submitted.grades}
                if test_ids and all(scores.get(name) is not None for name in test_ids):
                    done.add(submission.student_id)
    return done


def record_submission(
    course: Course,
    assignment: str,
    notebook: str,
    student: str,
    *,
    timestamp: str | None,
    expected: list[ExpectedCell],
    scores: dict[str, float],
    answered: dict[str, bool],
    blank: frozenset[str] = frozenset(),
) -> None:
    """Write one submission's auto scores and comments, then commit once.

    Args:
        course: the course.
        assignment, notebook, student: which submission.
        timestamp: the submission's timestamp.txt content, if any.
        expected: the notebook's expected cells.
        scores: auto score per autograder test cell.
        answered: per solution/task cell, whether the student changed it.
        blank: hand-graded answer cells the student left as released; each scores 0 and is not
            flagged for grading, as under ``nbgrader autograde``.
    """
    import warnings

    from nbgrader.api import Gradebook

    with Gradebook(course.db_url, course.course_id) as gradebook, warnings.catch_warnings():
        # nbgrader's own add_submission triggers SQLAlchemy autoflush warnings; they are harmless.
        warnings.simplefilter("ignore")
        gradebook.update_or_create_student(student)
        kwargs: dict[str, Any] = {"timestamp": timestamp} if timestamp else {}
        gradebook.update_or_create_submission(assignment, student, **kwargs)
        for cell in expected:
            if cell.grade or cell.task:
                grade = gradebook.find_grade(cell.name, notebook, assignment, student)
                if cell.autograder_test:
                    grade.auto_score = float(scores.get(cell.name, 0.0))
                    grade.needs_manual_grade = grade.manual_score is not None
                else:
                    # As nbgrader's SaveAutoGrades: an unchanged answer cell scores 0 and needs no
                    # grader; any other hand-graded cell waits for one.
                    grade.auto_score = 0.0 if cell.name in blank else None
                    grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
            if cell.solution or cell.task:
                comment = gradebook.find_comment(cell.name, notebook, assignment, student)
                comment.auto_comment = None if answered.get(cell.name, False) else "No response."
        gradebook.db.commit()
