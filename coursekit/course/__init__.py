"""What the nbgrader course in ``assignments/`` needs from coursekit.

``assignments/nbgrader_config.py`` calls :func:`configure`, which installs the
preprocessors of :mod:`coursekit.course.preprocessors` into nbgrader's
pipelines (:class:`SeededExecute` hands a student's kernel its seed of hidden
inputs, never the grading secret); ``python -m coursekit.course student-versions --out DIR`` writes the
student version of every assignment (see :mod:`coursekit.course.student_versions`).
"""

from coursekit.course.config import ASSIGNMENTS, COURSE_ID, configure, default_db_url
from coursekit.course.preprocessors import RedactHiddenTests, SeededExecute, StderrIsNotFailure
from coursekit.grading.hidden_tests import strip_hidden_tests

__all__ = [
    "ASSIGNMENTS",
    "COURSE_ID",
    "configure",
    "default_db_url",
    "RedactHiddenTests",
    "SeededExecute",
    "StderrIsNotFailure",
    "strip_hidden_tests",
]
