"""``nbgrader release_feedback`` for a course that collects through the exchange and an LMS.

nbgrader releases a student's feedback into the exchange under a name derived
from the secret that ``nbgrader collect`` stored with the submission
(``submission_secret.txt``) and its ``timestamp.txt``. A submission that came in
another way (``zip_collect`` of an LMS download, files put in ``submitted/`` by
hand) has neither, and stock nbgrader stops at the first such student with a
``FileNotFoundError``, releasing nothing to the others. This class, which
``nbgrader_config.py`` selects, releases the feedback of every student who
submitted through the exchange and lists the others, whose feedback you hand
back on your platform (``feedback/<student>/<assignment>/``).
"""

from __future__ import annotations

import glob
import os

from nbgrader.exchange.default.release_feedback import ExchangeReleaseFeedback

#: what ``nbgrader collect`` leaves with a submission and release_feedback needs.
EXCHANGE_FILES = ("timestamp.txt", "submission_secret.txt")


def students_without_exchange_submission(feedback_pattern: str) -> list[str]:
    """Students with generated feedback whose submission did not come through the exchange.

    Args:
        feedback_pattern: glob of the feedback folders, ``feedback/<student or *>/<assignment>``.

    Returns:
        Their ids, sorted.
    """
    students = set()
    for html in glob.glob(os.path.join(feedback_pattern, "*.html")):
        folder = os.path.dirname(html)
        if not all(os.path.isfile(os.path.join(folder, name)) for name in EXCHANGE_FILES):
            students.add(os.path.basename(os.path.dirname(folder)))
    return sorted(students)


class ReleaseFeedbackToExchangeStudents(ExchangeReleaseFeedback):
    """Release feedback to the exchange's students; report, not crash on, the others."""

    def copy_files(self) -> None:
        """Release what can be released, then log who must get their feedback another way."""
        others = students_without_exchange_submission(self.src_path)
        excluded = {s for s in self.coursedir.student_id_exclude.split(",") if s}
        self.coursedir.student_id_exclude = ",".join(sorted(excluded | set(others)))
        try:
            super().copy_files()
        finally:
            self.coursedir.student_id_exclude = ",".join(sorted(excluded))
        if others:
            self.log.warning(
                "Not released through the exchange (their submissions did not come through it; hand back "
                "feedback/<student>/%s/ on your platform): %s", self.coursedir.assignment_id, ", ".join(others))
