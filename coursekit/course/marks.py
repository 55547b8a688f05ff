"""Hand marks without the formgrader: ``coursekit mark ASSIGNMENT STUDENT CELL POINTS``.

The formgrader records a hand mark by setting the grade's ``manual_score`` and
clearing its ``needs_manual_grade`` flag, and a comment in the cell's
``manual_comment``. :func:`record_mark` does the same through nbgrader's
gradebook API, so that the mark shows in the formgrader, in the feedback and in
the export exactly as one given there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mark:
    """A recorded hand mark.

    Attributes:
        cell: the cell's grade_id.
        points: the points given.
        max_points: the cell's maximum.
        total: the submission's score after the mark.
        max_total: the assignment's maximum.
    """

    cell: str
    points: float
    max_points: float
    total: float
    max_total: float


def record_mark(
    db_url: str,
    course_id: str,
    assignment: str,
    student: str,
    cell: str,
    points: float,
    *,
    comment: str | None = None,
    notebook: str | None = None,
) -> Mark:
    """Give ``points`` to ``cell`` of ``student``'s submission, as the formgrader would.

    Args:
        db_url: the gradebook's SQLAlchemy URL.
        course_id: the nbgrader course id.
        assignment: the assignment id.
        student: the student id.
        cell: the grade_id of the graded cell (a written answer, or a test cell to override).
        points: from 0 to the cell's maximum.
        comment: the grader's comment on the cell, shown in the feedback; ``None`` keeps the present one.
        notebook: the notebook's name without ``.ipynb`` (default: the assignment id, as in this course).

    Returns:
        The mark, with the submission's new total.

    Raises:
        LookupError: no such assignment, student, submission or graded cell (the message lists
            the graded cells when the cell is wrong).
        ValueError: ``points`` is outside ``[0, max]`` or not finite.
    """
    import math

    from nbgrader.api import Gradebook, MissingEntry

    notebook = notebook or assignment
    with Gradebook(db_url, course_id) as gradebook:
        try:
            submission = gradebook.find_submission_notebook(notebook, assignment, student)
        except MissingEntry:
            raise LookupError(
                f"no graded submission of assignment {assignment!r} (notebook {notebook!r}) by student {student!r}: "
                "collect and grade it first"
            ) from None
        grades = {grade.name: grade for grade in submission.grades}
        if cell not in grades:
            raise LookupError(f"cell must be one of the graded cells {sorted(grades)}, got {cell!r}")
        grade = grades[cell]
        if not math.isfinite(points) or not 0 <= points <= grade.max_score:
            raise ValueError(f"points must be between 0 and {grade.max_score:g} for {cell!r}, got {points!r}")
        grade.manual_score = float(points)
        grade.needs_manual_grade = False
        if comment is not None:
            try:
                gradebook.find_comment(cell, notebook, assignment, student).manual_comment = comment
            except MissingEntry:
                raise LookupError(f"cell {cell!r} takes no comment (only answer cells do)") from None
        gradebook.db.commit()
        total = gradebook.find_submission(assignment, student)
        return Mark(cell, float(points), float(grade.max_score), float(total.score), float(total.max_score))
