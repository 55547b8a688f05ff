"""The grading report: ``grade-reports/<assignment>/index.html``, made from the stored results of a run.

:func:`write_report` reads what ``coursekit grade`` stored (see
:mod:`.results`), computes the class's numbers (:mod:`.summary`) and code
similarity (:mod:`.similarity`), draws the figures (:mod:`.figures`) and
writes one self-contained page (:mod:`.page`) that works offline and can be
mailed. ``coursekit grade`` calls it at the end of a run and
``coursekit report ASSIGNMENT`` calls it alone.

The page is written to a temporary file and moved into place, so a reader
never sees half a page; when the report cannot be made, the previous page is
removed rather than left looking current.
"""

from __future__ import annotations

import os
from pathlib import Path

from coursekit.grading.report.page import render
from coursekit.grading.report.results import MissingResults, load_results

__all__ = ["MissingResults", "ReportFailed", "write_report"]


class ReportFailed(RuntimeError):
    """The class report could not be rendered or written; the previous page was removed, not left as current."""


def write_report(course_dir: Path, assignment: str, db_url: str | None = None) -> Path:
    """Write ``grade-reports/<assignment>/index.html`` from the assignment's stored results.

    Args:
        course_dir: the nbgrader course directory.
        assignment: the assignment id.
        db_url: the gradebook URL, when not nbgrader's configured one.

    Returns:
        The path of the page written.

    Raises:
        FileNotFoundError: no such course directory, or no spec for the assignment.
        MissingResults: the assignment has no stored results.
        ValueError: a stored result cannot be read.
        ReportFailed: the page could not be made or written (the previous one is removed).
    """
    results = load_results(Path(course_dir), assignment, db_url)
    target = results.directory / "index.html"
    temporary = target.with_name(f".index.html.tmp-{os.getpid()}")
    try:
        temporary.write_text(render(results), encoding="utf-8")
        os.replace(temporary, target)
    except Exception as error:
        temporary.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        raise ReportFailed(f"the class report {target} could not be written ({type(error).__name__}: {error}); "
                           "the previous one was removed") from error
    return target
