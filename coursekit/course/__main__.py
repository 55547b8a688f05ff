"""Command line: ``python -m coursekit.course student-versions --out DIR``, ``student-config [--out FILE]``
and ``derive-hidden-tests [--course DIR]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from coursekit.course.config import ASSIGNMENTS, student_config
from coursekit.course.derived_tests import derive_course
from coursekit.course.student_versions import COURSE_DIR, generate_student_versions


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen sub-command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m coursekit.course", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    students = commands.add_parser(
        "student-versions", help="run nbgrader generate_assignment for every assignment and collect the notebooks"
    )
    students.add_argument("--out", required=True, help="folder that receives <assignment>.ipynb")
    students.add_argument("--course", default=str(COURSE_DIR), help="the nbgrader course directory")
    students.add_argument(
        "--assignment", action="append", choices=ASSIGNMENTS, help="only this assignment (repeatable)"
    )
    config = commands.add_parser(
        "student-config",
        help="write the students' nbgrader_config.py (the course id and exchange of the instructor's config)",
    )
    config.add_argument("--out", help="the file to write, e.g. /etc/jupyter/nbgrader_config.py on a JupyterHub or "
                        "~/.jupyter/nbgrader_config.py on one machine (default: print it)")
    derive = commands.add_parser(
        "derive-hidden-tests",
        help="rewrite every source notebook's hidden test regions from the specs in autograde/, and its "
        "introduction's grading paragraphs from coursekit.course.grading_notes (prints what changed)",
    )
    derive.add_argument("--course", default=str(COURSE_DIR), help="the nbgrader course directory")
    args = parser.parse_args(argv)
    if args.command == "derive-hidden-tests":
        for path in derive_course(Path(args.course)):
            print(path)
        return 0
    if args.command == "student-config":
        if args.out is None:
            print(student_config(), end="")
            return 0
        out = Path(args.out).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(student_config(), encoding="utf-8")
        print(out)
        return 0
    names = tuple(args.assignment) if args.assignment else ASSIGNMENTS
    for path in generate_student_versions(args.out, course_dir=args.course, assignments=names):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
