"""What the nbgrader course in ``assignments/`` needs from coursekit.

``assignments/nbgrader_config.py`` calls :func:`configure`, which installs the
preprocessors of :mod:`coursekit.course.preprocessors` into nbgrader's
pipelines (:class:`SeededExecute` hands a student's kernel its seed of hidden
inputs, never the grading secret); ``python -m coursekit.course student-versions --out DIR`` writes the
student version of every assignment (see :mod:`coursekit.course.student_versions`).

The preprocessors are imported on first use: they need nbconvert and nbgrader
(about 3 s of CPU to import), which the student's kernel, where every derived
hidden block imports :mod:`coursekit.course.hidden_score` from this package,
never uses.

Example:
    >>> from coursekit.course import SeededExecute
    >>> SeededExecute.__module__
    'coursekit.course.preprocessors'
"""

from typing import Any

from coursekit.course.config import ASSIGNMENTS, COURSE_ID, configure, default_db_url
from coursekit.grading.hidden_tests import strip_hidden_tests

#: the names this package exports from :mod:`coursekit.course.preprocessors`, imported when first asked for.
_PREPROCESSORS = ("RedactHiddenTests", "SeededExecute", "StderrIsNotFailure")

__all__ = [
    "ASSIGNMENTS",
    "COURSE_ID",
    "configure",
    "default_db_url",
    *_PREPROCESSORS,
    "strip_hidden_tests",
]


def __getattr__(name: str) -> Any:
    """A preprocessor named in ``__all__``, imported from :mod:`coursekit.course.preprocessors` when first asked for."""
    if name in _PREPROCESSORS:
        from coursekit.course import preprocessors

        return getattr(preprocessors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
