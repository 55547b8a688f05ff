"""A test cell's hidden block under stock ``nbgrader autograde``: its question's points, from the question's spec.

A question is defined once, by its spec in ``autograde/<assignment>.py``
(:mod:`coursekit.grading.spec`). The hidden region of each autograder test
cell in the source notebooks is derived from it
(:mod:`coursekit.course.derived_tests`) and only calls :func:`question_points`,
which, in the student's kernel, draws the same hidden cases as
``coursekit grade`` (:func:`~coursekit.grading.spec.prepare_calls`), makes each
call as the sandbox's kernel does (:func:`~coursekit.grading.graded_call.run_graded_call`:
argument decoding, banned operators, gradients with the grader's cotangents,
result encoding), scores them with the grader's own
:func:`~coursekit.grading.verdicts.score_question` and leaves the points as
the cell's value, which nbgrader records as the cell's partial score. So both
graders score a question by the same rules, partial credit included (what differs is below).

The cases are seeded as ``coursekit grade`` seeds them
(:func:`~coursekit.grading.spec.hidden_seed`): the spec's public ``SEED``, the
course id, the assignment and the student id, keyed by the course's grading
secret (``autograde/.grading-secret``). The secret never enters this kernel,
where the student's code runs: the instructor's ``nbgrader autograde`` computes
this student's seed and the assignment's check seed
(:func:`~coursekit.grading.spec.check_seed`), and the kernel inherits only those
(:mod:`coursekit.course.kernel_seed`); a student's notebook run without them is
an error naming the missing configuration. The instructor's own run of the
source notebook (in ``<course>/source/<assignment>/``), which holds no student
code, draws the cases of :data:`INSTRUCTOR`, a student id no student can have,
from the secret when no seed was handed in.

What differs from the sandbox: nothing is isolated here (the kernel can import
the references, which the sandbox withholds) and no memory budget applies; the
per-call time limit is the sandbox's default.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from coursekit.course.kernel_seed import (CHECK_SEED_VARIABLE, SEED_VARIABLE, check_seed_for,
                                          check_seed_from_environment, folder_from_environment, seed_for,
                                          seed_from_environment)
from coursekit.grading.graded_call import run_graded_call, timers
from coursekit.grading.limits import Limits
from coursekit.grading.protocol import CallEnd, CallReport, CallStatus, StepEnd, stops_function
from coursekit.grading.spec import AssignmentSpec, PreparedCall, Question, adapters, load_spec, prepare_seeded_calls
from coursekit.grading.verdicts import QuestionResult, score_question

#: the student id of the instructor's own run of a source notebook: empty, which no nbgrader student id is.
INSTRUCTOR = ""
#: how many folders above the notebook's the course's ``nbgrader_config.py`` may be (autograded/<student>/<a>/).
COURSE_DEPTH = 3


@dataclass(frozen=True)
class GradingPlace:
    """Where a notebook is being graded: the course, the assignment and the student.

    Attributes:
        spec_path: the assignment's spec, ``<course>/autograde/<assignment>.py``.
        course_id: the nbgrader course id.
        student: the student id (:data:`INSTRUCTOR` in the source folder).
    """

    spec_path: Path
    course_id: str
    student: str


def grading_place(workdir: Path) -> GradingPlace:
    """The course, assignment and student of a notebook that runs in ``workdir``.

    Args:
        workdir: the notebook's folder (in the kernel: :func:`notebook_folder`).

    Returns:
        The place.

    Raises:
        FileNotFoundError: no ``nbgrader_config.py`` in the :data:`COURSE_DEPTH` folders above ``workdir``.
        ValueError: ``workdir`` is neither ``<course>/<autograded>/<student>/<assignment>`` nor
            ``<course>/<source>/<assignment>``.
    """
    from coursekit.grading.gradebook import course_layout

    workdir = Path(workdir).resolve()
    root = next((folder for folder in workdir.parents[:COURSE_DEPTH] if (folder / "nbgrader_config.py").is_file()),
                None)
    if root is None:
        raise FileNotFoundError(f"no nbgrader_config.py in the {COURSE_DEPTH} folders above {workdir}: the hidden "
                                "tests run only in a course's autograded/<student>/<assignment>/ or "
                                "source/<assignment>/ folder")
    course = course_layout(root)
    parts = workdir.relative_to(root).parts
    if len(parts) == 3 and parts[0] == course.autograded:
        student, assignment = parts[1], parts[2]
    elif len(parts) == 2 and parts[0] == course.source:
        student, assignment = INSTRUCTOR, parts[1]
    else:
        raise ValueError(f"the notebook's folder must be {course.autograded}/<student>/<assignment> or "
                         f"{course.source}/<assignment> in the course {root}, got {workdir}")
    return GradingPlace(course.root / "autograde" / f"{assignment}.py", course.course_id, student)


def notebook_folder() -> Path:
    """The folder of the notebook this kernel runs: the one nbgrader handed in, else the working directory.

    The course's autograde hands the kernel the notebook's folder
    (:class:`~coursekit.course.preprocessors.SeededExecute`), so a student's
    cell that changes the working directory moves nothing. Only a run the
    course's nbgrader did not start (the instructor's own run of the source
    notebook) falls back to the working directory, where Jupyter starts it.

    Returns:
        The folder.
    """
    return folder_from_environment() or Path(os.getcwd())


@functools.lru_cache(maxsize=4)
def _spec(path: Path) -> AssignmentSpec:
    return load_spec(path)


def _seed(place: GradingPlace) -> int:
    """The student's seed: handed in by the instructor's nbgrader; only the instructor's own run may compute it.

    The instructor's first run of a new course creates the secret and says so on the kernel's standard output:
    ``nbgrader validate`` counts anything on a kernel's standard error as a failed cell.
    """
    if place.student == INSTRUCTOR and not os.environ.get(SEED_VARIABLE):
        return seed_for(place.spec_path, place.course_id, place.student, log=sys.stdout)
    return seed_from_environment(place.student)


def _check_seed(place: GradingPlace) -> int:
    """The assignment's check seed: handed in like the student's seed, or computed in the instructor's own run."""
    if place.student == INSTRUCTOR and not os.environ.get(CHECK_SEED_VARIABLE):
        return check_seed_for(place.spec_path, log=sys.stdout)
    return check_seed_from_environment(place.student)


@functools.lru_cache(maxsize=4)
def _prepared(path: Path, seed: int, checks_seed: int) -> dict[str, list[PreparedCall]]:
    # Every question's cases at once, as coursekit grade draws them: once per kernel, not once per cell.
    # Quietly: the reference runs on some cases, and what it prints or warns (a fully masked row) would
    # reach the cell's output, name a hidden case, and on standard error fail `nbgrader validate`.
    with _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare_seeded_calls(_spec(path), seed, checks_seed)


def _question(spec: AssignmentSpec, grade_id: str) -> Question:
    for question in spec.questions:
        if question.grade_id == grade_id:
            return question
    raise ValueError(f"grade_id must name a question of {spec.assignment}'s spec, got {grade_id!r} "
                     f"(it has {', '.join(q.grade_id for q in spec.questions)})")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Drop what the graded calls print, warnings included, as the sandbox does: it earns and costs nothing."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


#: why a hidden block stops when nbgrader interrupts its cell.
INTERRUPTED = "the cell reached nbgrader's time limit and was interrupted; its other hidden cases are not run"


@contextlib.contextmanager
def _noting_interrupts() -> Iterator[list[int]]:
    """Note each SIGINT that reaches the kernel while the hidden calls run, and pass it on as before.

    nbgrader's ``Execute`` interrupts the kernel when a cell outruns its timeout, then gives the cell
    nbclient's ``iopub_timeout`` (4 s) to end; a cell still running then makes nbgrader abandon the whole
    submission. :func:`~coursekit.grading.graded_call.run_graded_call` counts a call's ``KeyboardInterrupt``
    as that call's failure, as the sandbox does (a function may raise one itself), so the block must
    stop by itself once the interrupt is a signal. Only the main thread can set a handler; elsewhere
    nothing is noted.
    """
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = signal.getsignal(signal.SIGINT)

    def note(signum: int, frame: Any) -> None:
        noted.append(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


def call_ends(calls: list[PreparedCall], namespace: dict[str, Any], adapter_sources: Sequence[str] = (),
              limits: Limits | None = None) -> dict[str, CallEnd]:
    """Make a question's calls in ``namespace`` as the sandbox's runner does, and return their events by call id.

    The spec's adapters run first, all of them, in order, as in the sandbox (one
    question's calls may use another's adapter), but in a copy of the namespace,
    so the student's names stay as they were; a call that times out stops the
    function's later calls (``not_run``) by the runner's rule
    (:func:`~coursekit.grading.protocol.stops_function`): the kernel's timer
    stopped it and its times, measured here around the call, reached the limit.
    When nbgrader interrupts the cell at its own time limit (a SIGINT), the
    block stops with ``KeyboardInterrupt`` (:data:`INTERRUPTED`) once the
    interrupted call returns, scoring nothing, so the cell ends at once with an error and earns 0
    instead of running on until nbgrader gives up on the whole submission.

    Args:
        calls: the question's prepared calls.
        namespace: the notebook's globals.
        adapter_sources: the spec's adapters (:func:`~coursekit.grading.spec.adapters`).
        limits: the per-call time limits (default: :class:`~coursekit.grading.limits.Limits`'s).

    Returns:
        ``{call id: CallEnd}``.

    Raises:
        KeyboardInterrupt: the kernel was interrupted (a SIGINT) while the calls ran.
    """
    steps = (limits or Limits()).for_runner()
    scope = dict(namespace) if adapter_sources else namespace
    for source in adapter_sources:
        # A broken notebook may break an adapter: then its calls fail, as in the sandbox.
        with contextlib.suppress(Exception), _quiet():
            exec(compile(source, "<grader adapter>", "exec"), scope)  # noqa: S102 - the spec's own source

    def limit() -> contextlib.AbstractContextManager[None]:
        return timers(float(steps["step_cpu_s"]), float(steps["step_wall_s"]))

    ends: dict[str, CallEnd] = {}
    timed_out: set[str] = set()
    with _noting_interrupts() as interrupts:
        for prepared in calls:
            call = prepared.call
            if call["name"] in timed_out:
                ends[call["id"]] = CallEnd(call["id"], CallStatus.NOT_RUN)
                continue
            cpu_before, wall_before = time.process_time(), time.monotonic()
            with _quiet():
                report = run_graded_call(scope, call, limit)
            if interrupts:
                raise KeyboardInterrupt(INTERRUPTED)
            end = _end(report, time.process_time() - cpu_before, time.monotonic() - wall_before, steps)
            ends[call["id"]] = end
            if stops_function(end, steps):
                timed_out.add(call["name"])
    return ends


def _end(report: CallReport, cpu_s: float, wall_s: float, steps: dict[str, Any]) -> CallEnd:
    """The call's event, as the runner would relay it: ``TIME_LIMIT`` exactly when the call stops its function."""
    evalue = report.evalue if report.status is CallStatus.RAISED else ""
    end = CallEnd(report.call_id, report.status, report.value, report.grads, report.ename, report.hits, evalue,
                  cpu_ms=int(cpu_s * 1000), wall_ms=int(wall_s * 1000))
    return replace(end, ended=StepEnd.TIME_LIMIT if stops_function(end, steps) else StepEnd.REPORTED)


def question_result(grade_id: str, namespace: dict[str, Any], workdir: Path | None = None) -> QuestionResult:
    """Score the question ``grade_id`` on the functions and variables in ``namespace``.

    Args:
        grade_id: the test cell's nbgrader grade_id.
        namespace: the notebook's globals.
        workdir: the notebook's folder (default: :func:`notebook_folder`).

    Returns:
        The question's result, as ``coursekit grade`` would score it.

    Raises:
        FileNotFoundError, ValueError: see :func:`grading_place`; ``grade_id`` names no question of the spec.
        RuntimeError: a student's notebook runs without the seed the course's nbgrader configuration hands in.
    """
    place = grading_place(notebook_folder() if workdir is None else workdir)
    spec = _spec(place.spec_path)
    question = _question(spec, grade_id)
    calls = _prepared(place.spec_path, _seed(place), _check_seed(place))[grade_id]
    return score_question(question, calls, call_ends(calls, namespace, adapters(spec)))


def question_points(grade_id: str, namespace: dict[str, Any], workdir: Path | None = None) -> float:
    """The points the question ``grade_id`` earns; prints why any were lost (the feedback shows it).

    The derived hidden block of a test cell calls it as the cell's last
    expression, so the points are the cell's ``execute_result``, which nbgrader
    reads as the cell's partial score (between 0 and the cell's points). A
    function the notebook does not define fails its cases with ``NameError``
    and earns 0, with the reason printed: a student's gap is a score, not an
    error. A ``grade_id`` the spec does not know, or a notebook outside a
    course, is the instructor's to fix and raises.

    Args:
        grade_id: the test cell's nbgrader grade_id.
        namespace: the notebook's globals (``globals()``).
        workdir: the notebook's folder (default: :func:`notebook_folder`).

    Returns:
        The points, rounded as ``coursekit grade`` rounds them.

    Raises:
        FileNotFoundError, ValueError: see :func:`question_result`.

    Example:
        >>> question_points("test_x", {}, workdir=Path("/nowhere"))
        Traceback (most recent call last):
        ...
        FileNotFoundError: no nbgrader_config.py in the 3 folders above /nowhere: the hidden tests run only in a course's autograded/<student>/<assignment>/ or source/<assignment>/ folder
    """
    result = question_result(grade_id, namespace, workdir)
    for message in result.messages:
        print(message)
    counted = f"{result.passed} of {result.total} passed" if result.passed is not None else result.counted()
    print(f"hidden tests of {grade_id}: {counted}, {result.score:g} of {result.max_score:g} points")
    return result.score
