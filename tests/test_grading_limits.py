"""A submission's two time budgets (:mod:`coursekit.grading.limits`), and the cells below the last graded cell,
which are not run (:func:`coursekit.grading.notebook.last_graded_cell`); the checks of every other limit.

Grader review r7, finding 6: the hidden calls were made inside the one budget the cells had used, so a correct
notebook with slow experiments after its last question scored 0 on every question.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adversarial.course import ASSIGNMENT, add_cell, make_course, solved_notebook, submit
from coursekit.grading import protocol
from coursekit.grading.autograded import NOT_RUN_CELL
from coursekit.grading.driver import GradeOptions, grade_assignment
from coursekit.grading.kernel import Kernel
from coursekit.grading.limits import MAX_DIAGNOSTICS_BYTES, MAX_OUTPUT_CELL, MAX_OUTPUT_TOTAL, MIN_MEMORY_MB, Limits
from coursekit.grading.protocol import TRUNCATED
from conftest import require_sandbox

#: an experiment of 5 s of wall clock (no CPU, on a shared machine), within a step's 3 x 3 s.
EXPERIMENT = "import time\ntime.sleep(5)\nprint('experiment done')\n"
#: more experiments than the cells' budget holds: 7 x 5 s past 30 s, before the notebook's own cells count.
EXPERIMENTS = 7
LIMITS = Limits(timeout_s=3.0, submission_timeout_s=30.0, calls_timeout_s=60.0)


def test_the_default_budgets_and_their_sum() -> None:
    limits = Limits()
    assert (limits.wall_s, limits.calls_wall_s, limits.total_wall_s) == (150.0, 150.0, 300.0)
    assert Limits(timeout_s=5, submission_timeout_s=40, calls_timeout_s=9).total_wall_s == 49.0
    assert limits.for_runner()["cpu_total_s"] > limits.total_wall_s


@pytest.mark.parametrize("name", ["timeout_s", "submission_timeout_s", "calls_timeout_s"])
@pytest.mark.parametrize("value", [0, -1.0, True, "60", math.nan, math.inf, 604_801, 1e18])
def test_a_budget_that_is_not_a_positive_finite_number_is_refused_by_name(name: str, value: Any) -> None:
    # nan and inf passed `value <= 0` and crashed for_runner later (int(inf)): diff review F18; 1e18 passed and
    # overflowed setrlimit in every kernel (review r13, N4).
    with pytest.raises(ValueError, match=rf"^Limits\.{name} must be a positive finite number of at most 604800, "
                                         rf"got {re.escape(repr(value))}$"):
        Limits(**{name: value})
    assert getattr(Limits(**{name: 604_800}), name) == 604_800


@pytest.mark.parametrize("text", ["inf", "nan", "0", "-3"])
def test_the_grade_command_refuses_a_timeout_that_is_not_a_positive_finite_number(text: str, capsys) -> None:
    from coursekit.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["grade", "a1_sequence_loss", "--timeout", text])
    assert stopped.value.code == 2
    assert f"expected a positive finite number, got {text!r}" in capsys.readouterr().err


#: what each count or size accepts, as its error says (grader review r11, finding 7).
INT_RANGES = {
    "memory_mb": "an int of at least 512 and at most 16777216 (MiB a notebook may use beyond what Python, NumPy and "
                 "torch map at the start)",
    "nproc": "a positive int of at most 4194240 (Linux's largest pid_max, less the runner's processes)",
    "fsize_mb": "a positive int of at most 16777216 (MiB)",
    "disk_mb": "a positive int of at most 16777216 (MiB)",
    "disk_inodes": "a positive int of at most 4294967295 (inodes of the scratch space)",
    "nofile": "a positive int of at most 1048576 (Linux's default fs.nr_open)",
    "output_cell": "a positive int of at most 999980 (characters of each stream the protocol carries, less the "
                   "truncation marker)",
    "output_total": "a positive int of at most 20000000 (characters the grader keeps of a submission's output)",
    "diagnostics_bytes": "a positive int of at most 16777216 (bytes the grader keeps of each sandbox's stderr)",
}


@pytest.mark.parametrize("name", sorted(INT_RANGES))
@pytest.mark.parametrize("value", [0, -5, 0.5, 64.0, True, "64", None, math.nan])
def test_a_count_or_size_that_is_not_an_int_in_its_range_is_refused_by_name(name: str, value: Any) -> None:
    # 0.5 passed as "a positive finite number" and became 0: a tmpfs of size 0 (no size limit), a kernel that
    # cannot fork; the output caps were not checked at all.
    with pytest.raises(ValueError, match=rf"^Limits\.{name} must be {re.escape(INT_RANGES[name])}, got "
                                         rf"{re.escape(repr(value))}$"):
        Limits(**{name: value})


@pytest.mark.parametrize("name, most", [("output_cell", MAX_OUTPUT_CELL), ("output_total", MAX_OUTPUT_TOTAL),
                                        ("diagnostics_bytes", MAX_DIAGNOSTICS_BYTES), ("memory_mb", 2**24),
                                        ("fsize_mb", 2**24), ("disk_mb", 2**24), ("nofile", 2**20),
                                        ("nproc", 2**22 - 64), ("disk_inodes", 2**32 - 1)])
def test_an_output_cap_is_accepted_up_to_its_maximum_and_refused_past_it(name: str, most: int) -> None:
    # Review r12, R6: a memory, file or disk size past 64 bits of bytes, or more open files than fs.nr_open,
    # failed in every kernel's setrlimit instead of as a usage error.
    assert getattr(Limits(**{name: most}), name) == most
    with pytest.raises(ValueError, match=rf"^Limits\.{name} must be .*, got {most + 1}$"):
        Limits(**{name: most + 1})


def test_the_least_accepted_counts_reach_the_runner_unchanged() -> None:
    sent = Limits(memory_mb=MIN_MEMORY_MB, nproc=1, fsize_mb=1, disk_mb=1, disk_inodes=1, nofile=1, output_cell=1,
                  output_total=1, diagnostics_bytes=1).for_runner()
    assert (sent["memory_mb"], sent["nproc"], sent["disk_mb"], sent["output_cell"]) == (MIN_MEMORY_MB, 1, 1, 1)


def test_a_numpy_int_is_accepted_as_a_plain_int() -> None:
    limits = Limits(nproc=np.int64(8), disk_mb=np.int32(16))
    assert (limits.nproc, limits.disk_mb) == (8, 16) and type(limits.nproc) is int and type(limits.disk_mb) is int
    assert json.loads(json.dumps(limits.for_runner()))["nproc"] == 8


def test_the_largest_output_cell_keeps_a_verbose_cells_report_within_the_protocol() -> None:
    """An ``output_cell`` past 1,000,000 once made an honest verbose cell a protocol error (``kernel_died``)."""
    kernel = Kernel(Limits(timeout_s=5, output_cell=MAX_OUTPUT_CELL).for_runner(), dedicated_uid=False)
    report = kernel.run_cell(0, f"print('x' * {MAX_OUTPUT_CELL + 10})")
    assert not report.failed and report.stdout == "x" * MAX_OUTPUT_CELL + TRUNCATED
    assert protocol.decode(protocol.encode(report), protocol.REPORTS) == report
    longer = dataclasses.replace(report, stdout="x" + report.stdout)
    with pytest.raises(protocol.ProtocolError, match="stdout holds 1000001 characters, more than 1000000"):
        protocol.decode(protocol.encode(longer), protocol.REPORTS)


@pytest.mark.parametrize("text", ["100", "511"])
def test_the_grade_command_refuses_too_little_memory_with_the_limits_message(text: str, capsys) -> None:
    from coursekit.cli import main

    assert main(["grade", "a1_sequence_loss", "--memory", text]) == 2
    expected = f"coursekit grade: Limits.memory_mb must be {INT_RANGES['memory_mb']}, got {text}\n"
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize("text", ["0.5", "0", "-3", "lots"])
def test_the_grade_command_refuses_a_memory_that_is_not_a_positive_integer(text: str, capsys) -> None:
    from coursekit.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["grade", "a1_sequence_loss", "--memory", text])
    assert stopped.value.code == 2
    assert f"argument --memory: expected a positive integer, got {text!r}" in capsys.readouterr().err


def test_the_pages_state_the_budgets_the_grader_applies(repo_root: Path) -> None:
    limits = Limits()
    instructors = " ".join((repo_root / "book" / "for_instructors.md").read_text().split())
    for stated in (f"4 × `--timeout` + 30 s, {limits.wall_s:g} s by default",
                   f"4 × `--timeout` + 30 s of their own, {limits.calls_wall_s:g} s by default",
                   f"8 × `--timeout` + 60 s, {limits.total_wall_s:g} s by default"):
        assert stated in instructors, f"book/for_instructors.md no longer says {stated!r}"
    students = " ".join((repo_root / "book" / "for_students.md").read_text().split())
    for stated in (f"up to its last test cell, {limits.wall_s:g} seconds of wall-clock time",
                   f"the hidden cases get {limits.calls_wall_s:g} seconds of their own",
                   "the notebook 4 × T + 30 and the hidden cases 4 × T + 30", "remove long experiments"):
        assert stated in students, f"book/for_students.md no longer says {stated!r}"


def test_the_pages_state_that_a_function_past_its_time_limit_is_not_called_again(repo_root: Path) -> None:
    """Grader review r9, finding 4: the cases after a timed-out one are not run, and the pages must say so."""
    from coursekit.grading.verdicts import NOT_RUN_AFTER_TIMEOUT

    for page, rule in (("for_students.md", "again for that question: its later hidden cases are not run and count "
                                           "as failed (another question that grades the same function still calls it)"),
                       ("for_instructors.md", "the question's later hidden calls of it are not made and count as failed")):
        text = " ".join((repo_root / "book" / page).read_text().split())
        assert rule in text, f"book/{page} no longer says {rule!r}"
        assert f'("{NOT_RUN_AFTER_TIMEOUT}")' in text, f"book/{page} does not quote the feedback's words"


def _with_experiments(notebook: dict[str, Any], after: str | None) -> dict[str, Any]:
    """``notebook`` with :data:`EXPERIMENTS` experiments after the cell ``after`` (``None``: at the end)."""
    for number in range(EXPERIMENTS):
        if after is None:
            notebook["cells"].append({"cell_type": "code", "id": f"experiment-{number}", "metadata": {},
                                      "outputs": [], "execution_count": None, "source": EXPERIMENT})
        else:
            add_cell(notebook, EXPERIMENT, after=after)
    return notebook


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_sandbox()
    course = make_course(tmp_path_factory.mktemp("budgets"))
    submit(course, "slow_scratch", _with_experiments(solved_notebook(course), after=None))
    submit(course, "slow_answers", _with_experiments(solved_notebook(course), after="answer_token_nll"))
    reports = grade_assignment(course, ASSIGNMENT, GradeOptions(jobs=2, limits=LIMITS, progress=False))
    return {"course": course, "reports": {report.student: report for report in reports}}


@pytest.mark.slow
@pytest.mark.grading
@pytest.mark.a1
def test_slow_experiments_below_the_last_question_cost_nothing(graded: dict[str, Any]) -> None:
    report = graded["reports"]["slow_scratch"]
    assert (report.score, report.max_score, report.outcome) == (10.0, 10.0, "graded"), report
    assert report.seconds < LIMITS.wall_s, report
    autograded = graded["course"] / "autograded" / "slow_scratch" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    cells = json.loads(autograded.read_text())["cells"]
    assert [cell["outputs"] for cell in cells[-EXPERIMENTS:]] == [[{"output_type": "stream", "name": "stdout",
                                                                    "text": NOT_RUN_CELL}]] * EXPERIMENTS
    printed = [output.get("text", "") for cell in cells for output in cell.get("outputs", [])]
    assert not any("experiment done" in text for text in printed), printed


@pytest.mark.slow
@pytest.mark.grading
@pytest.mark.a1
def test_cells_above_the_last_question_that_outlive_the_cells_budget_are_stopped(graded: dict[str, Any]) -> None:
    report = graded["reports"]["slow_answers"]
    assert (report.score, report.outcome) == (0.0, "timeout"), report
    assert "killed at a per-submission time limit" in report.notes, report.notes
    assert any(note.startswith("the notebook's cells used up their time budget") for note in report.notes), report
    assert LIMITS.wall_s <= report.seconds <= LIMITS.wall_s + 5, report
