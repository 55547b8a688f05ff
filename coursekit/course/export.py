"""The course's grade export: ``nbgrader export`` with test and written points apart.

nbgrader's stock CSV export writes one total per student and assignment, lists
an assignment that nobody has submitted yet as 0.0 for every student, and
writes fields unquoted (a name with a comma shifts every later column). This
plugin, which ``nbgrader_config.py`` selects, writes the same first eleven
columns in the same order, then:

* ``tests_score``: points of the autograded test cells (after any override in
  the formgrader);
* ``written_score``: points of the hand-graded written answers;
* ``cells_to_grade``: cells of the submission still waiting for a grader
  (``needs_manual_grade`` in the gradebook), so that an export taken before
  hand grading is finished says so.

Assignments without a single submission (not released yet, or not collected
yet) are left out; a student who did not submit an assignment that others did
gets a row of zeros, as in nbgrader.
"""

from __future__ import annotations

import csv
from typing import Any

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import ExportPlugin

#: nbgrader's own columns, in its order, then the course's.
COLUMNS = (
    "assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
    "raw_score", "late_submission_penalty", "score", "max_score",
    "tests_score", "written_score", "cells_to_grade",
)


def _row(gradebook: Gradebook, assignment: Any, student: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "assignment": assignment.name, "duedate": assignment.duedate, "student_id": student.id,
        "last_name": student.last_name, "first_name": student.first_name, "email": student.email,
        "max_score": assignment.max_score,
    }
    try:
        submission = gradebook.find_submission(assignment.name, student.id)
    except MissingEntry:
        return {**row, "timestamp": "", "raw_score": 0.0, "late_submission_penalty": 0.0, "score": 0.0,
                "tests_score": 0.0, "written_score": 0.0, "cells_to_grade": 0}
    penalty = submission.late_submission_penalty or 0.0
    waiting = sum(grade.needs_manual_grade for notebook in submission.notebooks for grade in notebook.grades)
    return {
        **row, "timestamp": submission.timestamp, "raw_score": submission.score,
        "late_submission_penalty": penalty, "score": max(0.0, submission.score - penalty),
        "tests_score": submission.code_score, "written_score": submission.written_score, "cells_to_grade": waiting,
    }


class CourseCsvExport(ExportPlugin):
    """CSV export with test and written points apart, leaving out assignments nobody has submitted.

    Used by ``nbgrader export [--to FILE]`` (default ``grades.csv``), with
    nbgrader's ``--assignment`` and ``--student`` filters.
    """

    def export(self, gradebook: Gradebook) -> None:
        """Write the CSV file ``self.to`` (default ``grades.csv``) from ``gradebook``."""
        destination = self.to or "grades.csv"
        assignments = {str(a) for a in self.assignment}
        students = {str(s) for s in self.student}
        skipped = []
        with open(destination, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            for assignment in gradebook.assignments:
                if assignments and assignment.name not in assignments:
                    continue
                if assignment.num_submissions == 0:
                    skipped.append(assignment.name)
                    continue
                for student in gradebook.students:
                    if students and student.id not in students:
                        continue
                    row = _row(gradebook, assignment, student)
                    writer.writerow({key: "" if value is None else value for key, value in row.items()})
        self.log.info("Exported grades to %s", destination)
        if skipped:
            self.log.info("Left out (no submission yet): %s", ", ".join(skipped))
