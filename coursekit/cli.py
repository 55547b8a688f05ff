"""The ``coursekit`` command.

``coursekit grade ASSIGNMENT [--student ID ...] [--jobs N] [--executor local | dask://HOST:PORT]
[--timeout SECONDS] [--memory MB] [--force] [--require-sandbox]``, run in the nbgrader
course directory, auto-grades the assignment's submissions (see :mod:`coursekit.grading`)
and writes the class's report, ``grade-reports/ASSIGNMENT/index.html``.

``coursekit report ASSIGNMENT [--course-dir D]`` writes that report again from the
stored results, without grading (see :mod:`coursekit.grading.report`).

``coursekit mark ASSIGNMENT STUDENT CELL POINTS [--comment TEXT]`` records a hand mark
(a written answer, or an override of a test cell) as the formgrader does (see
:mod:`coursekit.course.marks`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from pathlib import Path
from typing import Iterator, Sequence


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``coursekit``.

    Example:
        >>> args = build_parser().parse_args(["grade", "a1_sequence_loss", "--jobs", "2"])
        >>> args.assignment, args.jobs, args.executor
        ('a1_sequence_loss', 2, 'local')
    """
    parser = argparse.ArgumentParser(prog="coursekit", description="Tools for the sequence-level loss course.")
    commands = parser.add_subparsers(dest="command", required=True)
    grade = commands.add_parser(
        "grade",
        help="auto-grade an assignment's submissions in a sandbox",
        description="Auto-grade ASSIGNMENT's submissions (nbgrader's submitted/ tree) into autograded/, "
        "the gradebook and grade-reports/. Run in the course directory.",
    )
    grade.add_argument("assignment", help="the nbgrader assignment id, e.g. a1_sequence_loss")
    grade.add_argument("--student", action="append", dest="students", metavar="ID",
                       help="grade only this student (repeatable)")
    grade.add_argument("--jobs", type=_positive_int, default=os.cpu_count() or 1,
                       help="submissions graded at once (default: the CPU count)")
    grade.add_argument("--executor", default="local", help="'local' (default) or dask://HOST:PORT")
    grade.add_argument("--timeout", type=_positive_float, default=30.0,
                       help="CPU seconds allowed per cell and per graded call (default 30; 3x that in wall-clock "
                       "time); a submission's cells get 4x this plus 30 s of wall-clock time and its hidden calls "
                       "as much again (8x plus 60 s in all); the calls' budget is shared by every rerun, the "
                       "cells' is given afresh only to a rerun that leaves out a graded function alone (at most "
                       "3 reruns, 20x plus 150 s at worst)")
    grade.add_argument("--memory", type=_positive_int, default=2048, help="MiB of address space each kernel process may map beyond Python, NumPy and torch (default 2048)")
    grade.add_argument("--force", action="store_true", help="regrade submissions that are already graded")
    grade.add_argument("--require-sandbox", action="store_true",
                       help="refuse to run when the bubblewrap sandbox or its cgroups cannot be set up")
    grade.add_argument("--db-url", default=None, help="gradebook URL (default: nbgrader's configuration)")
    grade.add_argument("--course-dir", default=".", help="the course directory (default: the current one)")
    grade.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    report = commands.add_parser(
        "report",
        help="write an assignment's grading report again from the stored results",
        description="Write grade-reports/ASSIGNMENT/index.html from the results that `coursekit grade` stored, "
        "without grading again.",
    )
    report.add_argument("assignment", help="the nbgrader assignment id, e.g. a1_sequence_loss")
    report.add_argument("--course-dir", default=".", help="the course directory (default: the current one)")
    report.add_argument("--db-url", default=None, help="gradebook URL (default: nbgrader's configuration)")
    mark = commands.add_parser(
        "mark",
        help="record a hand mark for one cell of one submission, as the formgrader does",
        description="Give POINTS to the graded CELL (e.g. written_sum_vs_mean) of STUDENT's submission of "
        "ASSIGNMENT, clear its 'needs manual grade' flag and optionally set the grader's comment. "
        "Run in the course directory.",
    )
    mark.add_argument("assignment", help="the nbgrader assignment id, e.g. a1_sequence_loss")
    mark.add_argument("student", help="the student id")
    mark.add_argument("cell", help="the grade_id of the cell, e.g. written_sum_vs_mean")
    mark.add_argument("points", type=float, help="points, from 0 to the cell's maximum")
    mark.add_argument("--comment", default=None, help="the grader's comment, shown in the feedback")
    mark.add_argument("--db-url", default=None, help="gradebook URL (default: nbgrader's configuration)")
    mark.add_argument("--course-dir", default=".", help="the course directory (default: the current one)")
    return parser


def _stale_page_removed(course_dir: str, assignment: str) -> str:
    """Remove the previous run's class report, which no longer matches the stored results; say what was done."""
    from coursekit.grading.driver import reports_directory

    page = reports_directory(Path(course_dir).resolve(), assignment) / "index.html"
    try:
        page.unlink()
    except FileNotFoundError:
        return "no class report is on disk"
    except OSError as error:
        return f"the previous {page} could not be removed ({error}) and is out of date"
    return f"the previous {page} was removed"


def _hand_outputs_to_owner(command: str, course_dir: str, db_url: str | None) -> None:
    """As root, give what this command wrote in the course folder to the folder's owner; say what could not be."""
    from coursekit.grading.gradebook import load_course
    from coursekit.grading.ownership import course_outputs, hand_to_course_owner

    root = Path(course_dir).resolve()
    try:
        course = load_course(root, db_url)
    except Exception:  # noqa: BLE001 - not a course: the command wrote nothing there, and said why already
        return
    try:
        failures = hand_to_course_owner(root, course_outputs(root, course.db_url))
    except Exception as error:  # noqa: BLE001 - the grades are recorded; only the hand-over failed
        failures = [f"{type(error).__name__}: {error}"]
    for failure in failures:
        print(f"coursekit {command}: warning: could not give the course folder's owner {failure}", file=sys.stderr)


def _report(course_dir: str, assignment: str, db_url: str | None) -> int:
    """``coursekit report``: write the assignment's report; print where, or why not."""
    from coursekit.grading.report import MissingResults, ReportFailed, write_report

    try:
        path = write_report(Path(course_dir), assignment, db_url)
        _hand_outputs_to_owner("report", course_dir, db_url)
    except (MissingResults, FileNotFoundError, ReportFailed) as error:
        print(f"coursekit report: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - the report reads what students handed in; say what failed
        print(f"coursekit report: {type(error).__name__}: {error}; {_stale_page_removed(course_dir, assignment)}",
              file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


def _report_after_grading(course_dir: str, assignment: str, db_url: str | None) -> int:
    """The end of ``coursekit grade``: write the class's report, then say where the results are.

    The exit status is grading's: a report that cannot be written is said on
    stderr (and ``coursekit report`` retries it), but the grades are recorded.
    """
    from coursekit.grading.driver import reports_directory
    from coursekit.grading.report import MissingResults, ReportFailed, write_report

    reports = reports_directory(Path(course_dir).resolve(), assignment)
    try:
        page = write_report(Path(course_dir), assignment, db_url)
    except MissingResults:
        print(f"reports: {reports} (no submission graded, so no class report)")
        return 0
    except ReportFailed as error:
        print(f"coursekit grade: the grades are recorded, but {error}", file=sys.stderr)
        return 0
    except Exception as error:  # noqa: BLE001 - grading succeeded; the report's failure must not look like grading's
        print(f"coursekit grade: the grades are recorded, but the class report failed ({type(error).__name__}: "
              f"{error}); {_stale_page_removed(course_dir, assignment)}", file=sys.stderr)
        return 0
    print(f"reports: {reports} (class report: {page.name})")
    return 0


def _mark(args: argparse.Namespace) -> int:
    from coursekit.course.marks import record_mark
    from coursekit.grading.gradebook import load_course

    try:
        course = load_course(Path(args.course_dir), args.db_url)
        mark = record_mark(course.db_url, course.course_id, args.assignment, args.student, args.cell, args.points,
                           comment=args.comment)
    except (LookupError, ValueError, FileNotFoundError) as error:
        print(f"coursekit mark: {error}", file=sys.stderr)
        return 2
    print(f"{args.student} {args.assignment} {mark.cell}: {mark.points:g} / {mark.max_points:g}; "
          f"total {mark.total:g} / {mark.max_total:g}")
    return 0


@contextlib.contextmanager
def without_iri_grammars() -> Iterator[None]:
    """Keep jsonschema from importing ``rfc3987_syntax`` while the block runs.

    Every command reads the gradebook through nbgrader, whose import reaches
    jsonschema (through nbformat's validator); jsonschema imports
    ``rfc3987_syntax`` when it is installed (jupyter-events' format extra
    installs it), and that package builds its 38 Lark grammars at import:
    about 2 s of each command's start on a 2-core machine (``nbgrader generate_assignment``: 3.9 s with
    them, 1.7 s without). Those grammars serve
    the ``iri`` and ``iri-reference`` formats only, which nothing a command
    does validates; without the module, a jsonschema first imported in the
    block leaves the two formats unchecked for the life of the process. A
    process that imported the module already keeps it, and the block leaves
    ``sys.modules`` as it found it for later imports.
    """
    placed = "rfc3987_syntax" not in sys.modules
    if placed:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if placed and "rfc3987_syntax" in sys.modules and sys.modules["rfc3987_syntax"] is None:
            del sys.modules["rfc3987_syntax"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``coursekit`` with ``argv`` (default: the command line); returns the exit status."""
    args = build_parser().parse_args(argv)
    with without_iri_grammars():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; returns the exit status."""
    if args.command == "mark":
        return _mark(args)
    if args.command == "report":
        return _report(args.course_dir, args.assignment, args.db_url)
    try:
        return _grade(args)
    finally:
        # Also after Ctrl-C: what a root run wrote before it stopped goes to the course folder's owner too.
        _hand_outputs_to_owner("grade", args.course_dir, args.db_url)


def _grade(args: argparse.Namespace) -> int:
    """``coursekit grade``: grade, print the table, write the class report."""
    from coursekit.grading.driver import GradeOptions, SandboxUnavailable, format_table, grade_assignment
    from coursekit.grading.limits import Limits

    try:
        limits = Limits(timeout_s=args.timeout, memory_mb=args.memory)
        options = GradeOptions(
            students=args.students,
            jobs=args.jobs,
            executor=args.executor,
            limits=limits,
            force=args.force,
            require_sandbox=args.require_sandbox,
            db_url=args.db_url,
            progress=not args.no_progress,
        )
        reports = grade_assignment(Path(args.course_dir), args.assignment, options)
    except SandboxUnavailable as error:
        print(f"coursekit grade: {error}", file=sys.stderr)
        return 3
    except (LookupError, ValueError, FileNotFoundError, TypeError) as error:
        print(f"coursekit grade: {error}", file=sys.stderr)
        return 2
    print(format_table(reports))
    return _report_after_grading(args.course_dir, args.assignment, args.db_url)


if __name__ == "__main__":
    sys.exit(main())
