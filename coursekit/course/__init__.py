"""What the nbgrader course in ``assignments/`` needs from coursekit.

``assignments/nbgrader_config.py`` calls :func:`configure`, which installs the
two preprocessors of :mod:`coursekit.course.preprocessors` into nbgrader's
pipelines; ``python -m coursekit.course student-versions --out DIR`` writes the
student version of every assignment (see :mod:`coursekit.course.student_versions`).
"""

from coursekit.course.config import ASSIGNMENTS, COURSE_ID, configure, default_db_url
from coursekit.course.preprocessors import RedactHiddenTests, StderrIsNotFailure
from coursekit.grading.hidden_tests import strip_hidden_tests

__all__ = [
    "ASSIGNMENTS",
    "COURSE_ID",
    "configure",
    "default_db_url",
    "RedactHiddenTests",
    "StderrIsNotFailure",
    "strip_hidden_tests",
]
