"""What a root ``coursekit grade`` writes in a course folder goes to the folder's owner.

Run as root (for its sandbox), the grader writes ``autograded/``, ``grade-reports/``
and, on a first run, an SQLite gradebook into a course folder that the instructor
owns. Left owned by root, they would stop the instructor's own later commands:
``coursekit report`` could not rewrite the class report, nor ``nbgrader autograde``
or a ``coursekit grade`` run as the instructor replace a graded submission. The
grading secret is handed over where it is created (:mod:`coursekit.grading.secret`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["course_outputs", "hand_to_course_owner"]


def course_outputs(course_root: Path, db_url: str) -> list[Path]:
    """The folders and files ``coursekit grade`` and ``coursekit report`` write in the course at ``course_root``.

    Example:
        >>> [p.as_posix() for p in course_outputs(Path("/c"), "sqlite:////c/gradebook.db")]
        ['/c/autograded', '/c/grade-reports', '/c/gradebook.db']
        >>> [p.as_posix() for p in course_outputs(Path("/c"), "postgresql://grader@db/seqloss")]
        ['/c/autograded', '/c/grade-reports']
    """
    outputs = [course_root / "autograded", course_root / "grade-reports"]
    if db_url.startswith("sqlite:///"):
        database = Path(db_url.removeprefix("sqlite:///"))
        outputs.append(database if database.is_absolute() else course_root / database)
    return outputs


def hand_to_course_owner(course_root: Path, paths: Iterable[Path]) -> list[str]:
    """Give the root-owned files and folders among ``paths`` and under them to the owner of ``course_root``.

    Nothing happens unless this process is root and the course folder belongs to
    another user. Links are neither followed nor changed, and what another user
    already owns is left as it is.

    Args:
        course_root: the course folder, whose owner and group are given.
        paths: files and folders written by the grader (missing ones are skipped).

    Returns:
        One line per path that could not be handed over, saying why (empty when all were).
    """
    if os.geteuid() != 0:
        return []
    owner = course_root.stat()
    if owner.st_uid == 0:
        return []
    failures = []
    for path in _entries(paths):
        try:
            status = os.lstat(path)
            if status.st_uid == 0 and not os.path.islink(path):
                os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)
        except OSError as error:
            failures.append(f"{path}: {error.strerror or error}")
    return failures


def _entries(paths: Iterable[Path]) -> Iterable[str]:
    for top in paths:
        if not os.path.lexists(top):
            continue
        yield str(top)
        if top.is_dir() and not top.is_symlink():
            for folder, folders, files in os.walk(top):
                for name in folders + files:
                    yield os.path.join(folder, name)
