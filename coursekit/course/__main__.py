"""Command line: ``python -m coursekit.course student-versions --out DIR``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from coursekit.course.config import ASSIGNMENTS
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
    args = parser.parse_args(argv)
    names = tuple(args.assignment) if args.assignment else ASSIGNMENTS
    for path in generate_student_versions(args.out, course_dir=args.course, assignments=names):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
