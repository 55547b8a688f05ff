"""The course's grading secret: the private part of every student's seed of hidden inputs.

The specs (``assignments/autograde/<assignment>.py``) and their ``SEED`` are
in the course's public repository, so hidden inputs drawn from them alone
could be rebuilt by any student. :func:`load_secret` adds what is not public:
32 random bytes kept in ``<course>/autograde/.grading-secret`` (created on
first use, owned by the owner of ``<course>/autograde/`` so that the
instructor's ``nbgrader autograde`` can read what a root ``coursekit grade``
created, readable by that owner only, ignored by git), or the hex string in
the environment variable ``COURSEKIT_GRADING_SECRET``, which overrides the
file. :func:`~coursekit.grading.spec.hidden_seed` keys its hash with it.

The secret never enters a student's kernel: stock ``nbgrader autograde`` hands
the kernel only that student's seed (:mod:`coursekit.course.kernel_seed`).

Keep the file, and back it up: a regrade with another secret draws other
hidden inputs, so the same submission may get another score.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

#: the secret's file, relative to the course folder.
SECRET_FILE = Path("autograde") / ".grading-secret"
#: the environment variable whose hex value overrides the file.
SECRET_VARIABLE = "COURSEKIT_GRADING_SECRET"
#: the number of random bytes in a new secret.
SECRET_BYTES = 32
#: the fewest bytes accepted from the file or the environment (fewer could be guessed).
MIN_SECRET_BYTES = 16


def secret_path(course_dir: Path) -> Path:
    """Where the course's grading secret is kept.

    Example:
        >>> secret_path(Path("/courses/seqloss")).as_posix()
        '/courses/seqloss/autograde/.grading-secret'
    """
    return Path(course_dir) / SECRET_FILE


def _checked(secret: bytes, source: str) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the grading secret in {source} must be at least {MIN_SECRET_BYTES} bytes, "
                         f"got {len(secret)}")
    return secret


def _from_environment(value: str) -> bytes:
    try:
        secret = bytes.fromhex(value.strip())
    except ValueError:
        raise ValueError(f"{SECRET_VARIABLE} must be a hex string (e.g. {SECRET_BYTES * 2} hex digits), "
                         f"got {len(value)} characters that are not hex") from None
    return _checked(secret, SECRET_VARIABLE)


def _ignore_in_git(directory: Path) -> None:
    """Make the folder's ``.gitignore`` name the secret: write one, or add the name to one that lacks it."""
    ignore = directory / ".gitignore"
    lines = f"# coursekit's grading secret: private, never committed\n{SECRET_FILE.name}\n"
    if not ignore.exists():
        ignore.write_text(lines)
        return
    text = ignore.read_text(encoding="utf-8", errors="replace")
    if not {SECRET_FILE.name, f"/{SECRET_FILE.name}"} & {line.strip() for line in text.splitlines()}:
        with ignore.open("a", encoding="utf-8") as file:
            file.write(("" if text.endswith("\n") or not text else "\n") + lines)


def _read(path: Path) -> bytes:
    """The secret file's bytes; a PermissionError names the file and who must be able to read it."""
    try:
        return _checked(path.read_bytes(), str(path))
    except PermissionError:
        owner = path.stat().st_uid
        raise PermissionError(f"the grading secret {path} (owner uid {owner}, mode "
                              f"{path.stat().st_mode & 0o777:o}) cannot be read by uid {os.geteuid()}: whoever runs "
                              "`coursekit grade` or `nbgrader autograde` must be able to read it (make it owned by the "
                              "instructor who runs nbgrader, mode 600)") from None


def _create(path: Path, log: TextIO) -> bytes:
    """Create the secret file with fresh random bytes, mode 600; another process's file wins a race.

    The file is given the owner of its folder (``<course>/autograde/``) when this
    process may (root): a root ``coursekit grade`` must not leave a secret the
    instructor's ``nbgrader autograde`` cannot read.
    """
    secret = os.urandom(SECRET_BYTES)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    folder = path.parent.stat()
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(file.fileno(), 0o600)
        if (folder.st_uid, folder.st_gid) != (os.geteuid(), os.getegid()) and os.geteuid() == 0:
            os.fchown(file.fileno(), folder.st_uid, folder.st_gid)
        file.write(secret)
    _ignore_in_git(path.parent)
    print(f"coursekit: created the grading secret {path} ({SECRET_BYTES} random bytes, mode 600). Keep it private "
          "and keep it (back it up): every student's hidden inputs depend on it, and a regrade with another "
          "secret draws other inputs.", file=log)
    return secret


def load_secret(course_dir: Path, *, log: TextIO | None = None) -> bytes:
    """The course's grading secret: ``COURSEKIT_GRADING_SECRET`` (hex) if set, else the course's secret file.

    The file is created with :data:`SECRET_BYTES` random bytes (mode 600, and a
    ``.gitignore`` beside it when its folder has none) the first time it is
    needed, and ``log`` is told so once.

    Args:
        course_dir: the nbgrader course folder (the one holding ``autograde/``).
        log: where the creation is announced (standard error when ``None``).

    Returns:
        The secret's bytes.

    Raises:
        ValueError: the variable is not hex, or the secret is shorter than :data:`MIN_SECRET_BYTES`.
        FileNotFoundError: ``course_dir`` has no ``autograde`` folder.
        PermissionError: the secret file exists but this process cannot read it (the error names both).

    Example:
        >>> import tempfile, io
        >>> course = Path(tempfile.mkdtemp()); (course / "autograde").mkdir()
        >>> said = io.StringIO()
        >>> overridden = os.environ.pop(SECRET_VARIABLE, None)  # the file, not an override
        >>> first = load_secret(course, log=said)
        >>> len(first), load_secret(course, log=said) == first, said.getvalue().count("created")
        (32, True, 1)
        >>> if overridden is not None:
        ...     os.environ[SECRET_VARIABLE] = overridden
    """
    value = os.environ.get(SECRET_VARIABLE)
    if value:
        return _from_environment(value)
    path = secret_path(course_dir)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"course_dir must hold an autograde folder for the grading secret, "
                                f"got {Path(course_dir)} (no {path.parent})")
    if path.exists():
        return _read(path)
    return _create(path, sys.stderr if log is None else log)
