"""The seed of a student's hidden inputs and the notebook's folder, handed to the kernel of stock ``nbgrader autograde``.

The derived hidden blocks run in the student's own kernel, where the
student's code runs too: whatever that kernel can read, the student can print
into the autograded notebook and the feedback. The course's grading secret
(:mod:`coursekit.grading.secret`) keys every student's hidden inputs for both
graders, so it must never be readable there. The instructor's nbgrader
process computes this student's seed (:func:`~coursekit.grading.spec.hidden_seed`)
and the kernel inherits only that seed, through :data:`SEED_VARIABLE`, set for
this notebook's execution (:class:`~coursekit.course.preprocessors.SeededExecute`).
A student's code can then read its own seed, that is its own hidden inputs,
which stock nbgrader never protected, and nothing about anyone else's.

The kernel also inherits the notebook's folder, through :data:`FOLDER_VARIABLE`:
the hidden blocks find the course, the assignment and the student from it
(:func:`~coursekit.course.hidden_score.grading_place`), never from the working
directory, which a student's cell may change (``os.chdir``, ``%cd``).

The kernel also inherits the assignment's check seed
(:func:`~coursekit.grading.spec.check_seed`, through :data:`CHECK_SEED_VARIABLE`):
the seed of the data a trained model is judged on, the same for every student.
A student's code under stock autograde can read it, and so draw that data;
``coursekit grade`` never hands it to the sandbox.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, TextIO

from coursekit.grading.secret import SECRET_VARIABLE, load_secret
from coursekit.grading.spec import check_seed, hidden_seed, load_spec

#: the environment variable that carries one student's seed (decimal) into the kernel.
SEED_VARIABLE = "COURSEKIT_HIDDEN_SEED"
#: the environment variable that carries the notebook's folder (absolute) into the kernel.
FOLDER_VARIABLE = "COURSEKIT_NOTEBOOK_DIR"


def seed_for(spec_path: Path, course_id: str, student: str, *, log: TextIO | None = None) -> int:
    """The student's seed of hidden inputs, computed from the course's secret (the instructor's process only).

    Args:
        spec_path: the assignment's spec, ``<course>/autograde/<assignment>.py`` (the secret is beside it).
        course_id: the nbgrader course id.
        student: the student id.
        log: where the secret's creation is announced, if this call creates it (standard error when ``None``).

    Returns:
        :func:`~coursekit.grading.spec.hidden_seed` of the student.

    Raises:
        PermissionError: the secret file cannot be read by this process (see :func:`load_secret`).
    """
    return hidden_seed(load_spec(spec_path), course_id, student, load_secret(Path(spec_path).parents[1], log=log))


#: the environment variable that carries the assignment's check seed (decimal) into the kernel.
CHECK_SEED_VARIABLE = "COURSEKIT_CHECK_SEED"


def check_seed_for(spec_path: Path, *, log: TextIO | None = None) -> int:
    """The assignment's check seed, computed from the course's secret (the instructor's process only).

    Args:
        spec_path: the assignment's spec, ``<course>/autograde/<assignment>.py`` (the secret is beside it).
        log: where the secret's creation is announced, if this call creates it (standard error when ``None``).

    Returns:
        :func:`~coursekit.grading.spec.check_seed` of the assignment.

    Raises:
        PermissionError: the secret file cannot be read by this process (see :func:`load_secret`).
    """
    return check_seed(load_spec(spec_path), load_secret(Path(spec_path).parents[1], log=log))


def _decimal_from_environment(variable: str, student: str) -> int:
    value = os.environ.get(variable, "").strip()
    if not value:
        raise RuntimeError(f"{variable} is not set in the kernel of {student}'s notebook: the hidden tests need "
                           "the seed that the course's nbgrader_config.py (coursekit.course.configure) hands the "
                           "kernel; run `nbgrader autograde` in the course folder with that configuration")
    if not value.isdigit():
        raise RuntimeError(f"{variable} must be a decimal integer, got {len(value)} other characters")
    return int(value)


def check_seed_from_environment(student: str) -> int:
    """The check seed the instructor's nbgrader handed this kernel through :data:`CHECK_SEED_VARIABLE`.

    Args:
        student: the student whose notebook runs (named in the error).

    Returns:
        The seed.

    Raises:
        RuntimeError: the variable is not set, or is not a decimal integer.

    Example:
        >>> os.environ[CHECK_SEED_VARIABLE] = "43"
        >>> check_seed_from_environment("ada")
        43
        >>> del os.environ[CHECK_SEED_VARIABLE]
    """
    return _decimal_from_environment(CHECK_SEED_VARIABLE, student)


def seed_from_environment(student: str) -> int:
    """The seed the instructor's nbgrader handed this kernel through :data:`SEED_VARIABLE`.

    Args:
        student: the student whose notebook runs (named in the error).

    Returns:
        The seed.

    Raises:
        RuntimeError: the variable is not set, or is not a decimal integer.

    Example:
        >>> os.environ[SEED_VARIABLE] = "42"
        >>> seed_from_environment("ada")
        42
        >>> del os.environ[SEED_VARIABLE]
        >>> seed_from_environment("ada")
        Traceback (most recent call last):
        ...
        RuntimeError: COURSEKIT_HIDDEN_SEED is not set in the kernel of ada's notebook: the hidden tests need the seed that the course's nbgrader_config.py (coursekit.course.configure) hands the kernel; run `nbgrader autograde` in the course folder with that configuration
    """
    return _decimal_from_environment(SEED_VARIABLE, student)


def folder_from_environment() -> Path | None:
    """The notebook's folder the instructor's nbgrader handed this kernel through :data:`FOLDER_VARIABLE`.

    Returns:
        The folder, or ``None`` where the variable is not set (a run not
        started by the course's nbgrader, such as the instructor's own run of
        the source notebook).

    Example:
        >>> os.environ[FOLDER_VARIABLE] = "/course/autograded/ada/a1"
        >>> folder_from_environment()
        PosixPath('/course/autograded/ada/a1')
        >>> del os.environ[FOLDER_VARIABLE]
        >>> folder_from_environment() is None
        True
    """
    value = os.environ.get(FOLDER_VARIABLE, "")
    return Path(value) if value else None


@contextlib.contextmanager
def kernel_environment(seed: int, checks_seed: int, folder: Path | None = None) -> Iterator[None]:
    """Within the block, kernels started by this process inherit both seeds and ``folder``, and not the secret's variable.

    The variables are as they were afterwards, even when execution fails.

    Args:
        seed: the student's seed.
        checks_seed: the assignment's check seed.
        folder: the notebook's folder (made absolute); ``None`` hands in none.

    Example:
        >>> with kernel_environment(7, 8, Path("/course/autograded/ada/a1")):
        ...     (os.environ[SEED_VARIABLE], os.environ[CHECK_SEED_VARIABLE], os.environ[FOLDER_VARIABLE],
        ...      SECRET_VARIABLE in os.environ)
        ('7', '8', '/course/autograded/ada/a1', False)
        >>> SEED_VARIABLE in os.environ, CHECK_SEED_VARIABLE in os.environ, FOLDER_VARIABLE in os.environ
        (False, False, False)
    """
    variables = (SEED_VARIABLE, CHECK_SEED_VARIABLE, FOLDER_VARIABLE)
    saved = {name: os.environ.pop(name, None) for name in (*variables, SECRET_VARIABLE)}
    os.environ[SEED_VARIABLE] = str(seed)
    os.environ[CHECK_SEED_VARIABLE] = str(checks_seed)
    if folder is not None:
        os.environ[FOLDER_VARIABLE] = str(Path(folder).resolve())
    try:
        yield
    finally:
        for name in variables:
            os.environ.pop(name, None)
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value
