"""The course's nbgrader settings, applied from ``assignments/nbgrader_config.py``.

Keeping them here (not in the config file itself) lets the tests and the
``student-versions`` command import the very same list of assignments and the
same preprocessor pipelines that the instructor's nbgrader uses.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Mapping
from typing import Any

COURSE_ID_ENV = "COURSEKIT_COURSE_ID"
COURSE_ID = "seqloss"  # the default; $COURSEKIT_COURSE_ID overrides it
ASSIGNMENTS = (
    "a1_sequence_loss",
    "a2_masking_reductions",
    "a3_rnn_loss",
    "a4_distillation",
    "a5_sequence_objectives",
    "a6_large_vocab",
)
DB_URL_ENV = "COURSEKIT_DB_URL"
EXCHANGE_ENV = "COURSEKIT_EXCHANGE"
DEFAULT_EXCHANGE = "/srv/nbgrader/exchange"
# LMS downloads are named <student>_<any number of LMS ids>_<notebook>, e.g.
# "ada_48213_904811_a1_sequence_loss.ipynb" (Canvas style) or "ada_a1_sequence_loss.ipynb".
LMS_FILENAME_REGEXP = r".*/(?P<student_id>[A-Za-z0-9.-]+)_(?:late_)?(?:[0-9]+_)*(?P<file_id>a[0-9]_[a-z0-9_]+\.ipynb)$"
EXECUTION_TIMEOUT_S = 300
#: nbconvert's HTML sanitiser (escapes <script>, event handlers and unknown tags; drops JavaScript outputs).
SANITIZE_HTML = "nbconvert.preprocessors.sanitize.SanitizeHTML"
#: shows as text any markdown cell or output whose link uses the ``javascript``, ``vbscript`` or ``data`` scheme
#: (the sanitiser sees tags only).
NEUTRALISE_LINKS = "coursekit.course.preprocessors.NeutraliseHarmfulLinks"


def course_id(environ: Mapping[str, str] | None = None) -> str:
    """The nbgrader course id: ``$COURSEKIT_COURSE_ID`` if set, else ``seqloss``.

    Example:
        >>> course_id(environ={})
        'seqloss'
        >>> course_id(environ={"COURSEKIT_COURSE_ID": "seqloss-2027"})
        'seqloss-2027'
    """
    return (os.environ if environ is None else environ).get(COURSE_ID_ENV, "").strip() or COURSE_ID


def exchange_root(environ: Mapping[str, str] | None = None) -> str:
    """The nbgrader exchange folder: ``$COURSEKIT_EXCHANGE`` if set, else ``/srv/nbgrader/exchange``.

    Example:
        >>> exchange_root(environ={})
        '/srv/nbgrader/exchange'
    """
    return (os.environ if environ is None else environ).get(EXCHANGE_ENV, "").strip() or DEFAULT_EXCHANGE


def student_config(environ: Mapping[str, str] | None = None) -> str:
    """The students' ``nbgrader_config.py``: the course id and exchange of the instructor's config.

    On a JupyterHub it goes to ``/etc/jupyter/nbgrader_config.py`` (every user reads it); on a
    single machine to the student's ``~/.jupyter/nbgrader_config.py``.

    Example:
        >>> print(student_config(environ={}))  # doctest: +NORMALIZE_WHITESPACE
        # nbgrader settings for the students of the course "seqloss" (written by
        # `python -m coursekit.course student-config`).
        c = get_config()  # noqa: F821
        c.CourseDirectory.course_id = 'seqloss'
        c.Exchange.root = '/srv/nbgrader/exchange'
        <BLANKLINE>
    """
    course, exchange = course_id(environ), exchange_root(environ)
    return (
        f'# nbgrader settings for the students of the course "{course}" (written by\n'
        "# `python -m coursekit.course student-config`).\n"
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.course_id = {course!r}\n"
        f"c.Exchange.root = {exchange!r}\n"
    )


def with_installed_driver(url: str) -> str:
    """Spell a bare PostgreSQL URL with the driver that is installed.

    SQLAlchemy 2 reads ``postgresql://`` as psycopg 3, while the course installs
    psycopg2; an instructor who writes the URL as PostgreSQL documents it would
    otherwise get an import error. URLs that name a driver, and other databases,
    are returned unchanged.

    Example:
        >>> with_installed_driver("postgresql://grader@db/seqloss")
        'postgresql+psycopg2://grader@db/seqloss'
        >>> with_installed_driver("sqlite:////srv/course/gradebook.db")
        'sqlite:////srv/course/gradebook.db'
    """
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            import importlib.util

            if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
                return "postgresql+psycopg2://" + url[len(bare):]
    return url


def default_db_url(course_root: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> str:
    """The gradebook's URL: ``$COURSEKIT_DB_URL`` if set, else SQLite inside the course.

    Args:
        course_root: the course directory (where ``nbgrader_config.py`` lives).
        environ: the environment to read; ``None`` reads ``os.environ``.

    Returns:
        An SQLAlchemy URL.

    Example:
        >>> default_db_url("/srv/course", environ={})
        'sqlite:////srv/course/gradebook.db'
        >>> default_db_url("/srv/course", environ={"COURSEKIT_DB_URL": "postgresql://grader@db/seqloss"})
        'postgresql+psycopg2://grader@db/seqloss'
    """
    from_env = (os.environ if environ is None else environ).get(DB_URL_ENV, "").strip()
    if from_env:
        return with_installed_driver(from_env)
    return f"sqlite:///{Path(course_root).resolve() / 'gradebook.db'}"


def configure(c: Any, course_root: str | os.PathLike[str]) -> None:
    """Apply the course's nbgrader settings to the traitlets config ``c``.

    Args:
        c: the ``Config`` object that ``nbgrader_config.py`` receives from ``get_config()``.
        course_root: the course directory.

    Raises:
        ValueError: ``course_root`` is not an existing directory.

    Example:
        >>> from traitlets.config import Config
        >>> c = Config()
        >>> configure(c, ".")
        >>> c.CourseDirectory.course_id
        'seqloss'
    """
    root = Path(course_root).resolve()
    if not root.is_dir():
        raise ValueError(f"course_root must be an existing directory, got {str(course_root)!r}")
    c.CourseDirectory.course_id = course_id()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.db_url = default_db_url(root)
    c.Exchange.root = exchange_root()
    # Feedback of students who did not submit through the exchange is listed, not a crash.
    c.ExchangeFactory.release_feedback = "coursekit.course.exchange.ReleaseFeedbackToExchangeStudents"
    c.ExportApp.plugin_class = "coursekit.course.export.CourseCsvExport"

    c.Execute.timeout = EXECUTION_TIMEOUT_S
    c.Execute.interrupt_on_timeout = True
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

    # A student's HTML (markdown, raw cells, display outputs) must not run in formgrader or in the
    # feedback page: nbconvert's sanitiser escapes it in the autograded notebook and again in the feedback,
    # and markdown links with a script URL, which the sanitiser does not see, are shown as text.
    # The kernel runs the student's code: it gets the student's seed of hidden inputs, never the grading secret.
    c.Autograde.autograde_preprocessors = [
        "coursekit.course.preprocessors.SeededExecute",
        "coursekit.course.preprocessors.StderrIsNotFailure",
        "nbgrader.preprocessors.IgnorePattern",
        "nbconvert.preprocessors.ClearMetadataPreprocessor",
        "nbgrader.preprocessors.LimitOutput",
        SANITIZE_HTML,
        NEUTRALISE_LINKS,
        "nbgrader.preprocessors.SaveAutoGrades",
        "nbgrader.preprocessors.AssignLatePenalties",
        "nbgrader.preprocessors.CheckCellMetadata",
    ]
    c.GenerateFeedback.preprocessors = [
        "nbgrader.preprocessors.GetGrades",
        "coursekit.course.preprocessors.RedactHiddenTests",
        SANITIZE_HTML,
        NEUTRALISE_LINKS,
        "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    ]
    c.FileNameCollectorPlugin.named_regexp = LMS_FILENAME_REGEXP
    # Late flags and re-upload numbers accepted; every skipped notebook listed before collecting.
    c.ZipCollectApp.collector_plugin = "coursekit.course.lms_names.LmsFileNameCollector"
