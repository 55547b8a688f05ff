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

COURSE_ID = "seqloss"
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
#: shows as text any markdown cell or output with a javascript:/vbscript:/data: link (the sanitiser sees tags only).
NEUTRALISE_LINKS = "coursekit.course.preprocessors.NeutraliseHarmfulLinks"


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
    c.CourseDirectory.course_id = COURSE_ID
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.db_url = default_db_url(root)
    c.Exchange.root = os.environ.get(EXCHANGE_ENV, "").strip() or DEFAULT_EXCHANGE

    c.Execute.timeout = EXECUTION_TIMEOUT_S
    c.Execute.interrupt_on_timeout = True
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

    # A student's HTML (markdown, raw cells, display outputs) must not run in formgrader or in the
    # feedback page: nbconvert's sanitiser escapes it in the autograded notebook and again in the feedback,
    # and markdown links with a script URL, which the sanitiser does not see, are shown as text.
    c.Autograde.autograde_preprocessors = [
        "nbgrader.preprocessors.Execute",
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
