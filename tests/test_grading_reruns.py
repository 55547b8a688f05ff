"""The rerun policy against a real sandbox: culprits are left out, and every attempt shares one time budget."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from adversarial.course import (ASSIGNMENT, VENV_BIN, add_cell, make_course, set_answer, solutions, solved_notebook,
                               submit, tool_env)

from coursekit.grading import reruns
from coursekit.grading.driver import GradeOptions, grade_assignment
from coursekit.grading.limits import CALLS_BASE_S, SUBMISSION_START_S, SUBMISSION_STEPS, Limits
from coursekit.grading.package_view import plan_view
from coursekit.grading.protocol import CallStatus, CellStatus, StepEnd
from coursekit.grading.reruns import MAX_RESTARTS, run_submission
from coursekit.grading.result_budget import MAX_RESULT_BYTES, wire_size
from coursekit.grading.sandbox import Job, run_job
from coursekit.grading.wire import encode_value
from conftest import require_sandbox

pytestmark = [pytest.mark.slow, pytest.mark.grading]

#: a cell that ignores both of the kernel's timers and sleeps: only the runner can stop it.
DEAF = "import signal, time\nfor _s in (signal.SIGALRM, signal.SIGPROF):\n    signal.signal(_s, signal.SIG_IGN)\ntime.sleep(600)\n"


def _job(cells: list[str], calls: list[dict] | None = None) -> Job:
    return Job(files={"data.txt": base64.b64encode(b"x").decode()},
               cells=[{"index": i, "source": source} for i, source in enumerate(cells)],
               calls=calls or [], adapters=[], view=plan_view(set(), []))


@pytest.fixture(autouse=True)
def _sandbox() -> None:
    require_sandbox()


def test_every_attempt_shares_the_submissions_time_budget() -> None:
    limits = Limits(timeout_s=1.0, submission_timeout_s=15.0)
    run = run_submission(_job([DEAF] * (MAX_RESTARTS + 1)), limits)
    assert run.wall_killed and run.wall_killed_in == "cells" and run.attempts >= 2
    assert run.seconds <= limits.wall_s + 3.0, run.seconds
    assert [why for _index, why in run.skipped_cells] == ["timeout"] * (run.attempts - 1)


def _sleeping_calls(count: int) -> list[dict]:
    return [{"id": f"q#{i}", "kind": "function", "name": "slow", "tensors": False, "args": [], "kwargs": {},
             "banned": []} for i in range(count)]


#: a graded function that takes 3 s of wall clock and no CPU (each step may take 6 s at ``timeout_s=2``).
SLOW_FUNCTION = "import time\ndef slow():\n    time.sleep(3)\n    return 1\n"


def test_the_hidden_calls_have_a_time_budget_of_their_own() -> None:
    """Grader review r7, finding 6: cells and calls together past the cells' budget, each within its own."""
    limits = Limits(timeout_s=2.0, submission_timeout_s=20.0, calls_timeout_s=20.0)
    run = run_submission(_job([SLOW_FUNCTION, "time.sleep(4)", "time.sleep(4)"], _sleeping_calls(4)), limits)
    assert run.finished and not run.wall_killed, (run.seconds, run.cells_seconds, run.calls_seconds)
    assert [end.status for end in run.calls] == [CallStatus.OK] * 4
    assert run.cells_seconds >= 8 and run.calls_seconds >= 12
    assert run.seconds > limits.wall_s, "the test must spend more than the cells' budget in all"


def test_calls_that_outlive_their_own_budget_are_stopped_and_say_so() -> None:
    limits = Limits(timeout_s=2.0, submission_timeout_s=30.0, calls_timeout_s=7.0)
    run = run_submission(_job([SLOW_FUNCTION], _sleeping_calls(6)), limits)
    assert run.wall_killed and run.wall_killed_in == "calls" and run.attempts == 1
    assert [end.status for end in run.calls] == [CallStatus.OK] * len(run.calls) and 1 <= len(run.calls) <= 2
    assert run.calls_seconds <= limits.calls_wall_s + 3.0 and run.seconds <= limits.total_wall_s + 3.0


def test_a_dying_cell_is_left_out_and_later_cells_still_run() -> None:
    run = run_submission(_job(["x = 1", "import os\nos._exit(3)", "print(open('data.txt').read(), x)"]),
                         Limits(timeout_s=5.0))
    assert run.finished and run.attempts == 2 and run.skipped_cells == [(1, "died")]
    assert [(c.index, c.status, c.stdout) for c in run.cells] == [(0, CellStatus.OK, ""), (2, CellStatus.OK, "x 1\n")]


def test_a_function_that_kills_the_kernel_is_not_called_again() -> None:
    calls = [{"id": f"q#{i}", "kind": "function", "name": name, "tensors": False, "args": [], "kwargs": {},
              "banned": []} for i, name in enumerate(["ok", "boom", "ok", "boom"])]
    run = run_submission(_job(["import os\ndef ok():\n    return 1\ndef boom():\n    os._exit(1)\n"], calls),
                         Limits(timeout_s=5.0))
    statuses = {end.call_id: end.status for end in run.calls}
    assert statuses == {"q#0": CallStatus.OK, "q#2": CallStatus.OK, "q#1": CallStatus.NOT_RUN_AFTER_DEATH,
                        "q#3": CallStatus.NOT_RUN_AFTER_DEATH}
    assert run.finished and run.attempts == 2


#: a1's ``sequence_loss`` answer, made to kill the kernel on its hidden 3-D cases (its visible checks are 1-D and 2-D).
CRASHES_ON_3D = ("import os\n_solved_sequence_loss = sequence_loss\n"
                 "def sequence_loss(token_losses, mask=None, *, reduction='sum'):\n"
                 "    if token_losses.dim() == 3:\n        os._exit(1)\n"
                 "    return _solved_sequence_loss(token_losses, mask, reduction=reduction)\n")
#: an experiment above the last question, 4 s of wall clock (no CPU), within a step's 3 x 3 s.
EXPERIMENT = "import time\ntime.sleep(4)\n"
#: the budgets of the slow notebook below: its cells (about 4 x 4 s and the notebook's own 5 s) fit the cells'
#: budget once, not twice.
SLOW_LIMITS = Limits(timeout_s=3.0, submission_timeout_s=30.0, calls_timeout_s=60.0)


@pytest.mark.a1
def test_a_crash_in_one_hidden_case_of_a_slow_notebook_costs_only_that_functions_question(
        tmp_path: Path) -> None:
    """Grader review r11, F3: the rerun without the crashing function was charged its cells again, in the budget
    the first attempt had used; it ran out before any call, and every question scored 0 (``timeout``)."""
    course = make_course(tmp_path / "course")
    notebook = solved_notebook(course)
    set_answer(notebook, "answer_sequence_loss", solutions(course)["answer_sequence_loss"] + CRASHES_ON_3D)
    for _ in range(4):
        add_cell(notebook, EXPERIMENT, after="answer_token_nll")
    submit(course, "slow_crash", notebook)
    report, = grade_assignment(course, ASSIGNMENT, GradeOptions(jobs=1, limits=SLOW_LIMITS, progress=False))
    scores = {question["grade_id"]: question["score"] for question in report.questions}
    assert scores == {"test_token_nll": 3.0, "test_sequence_loss": 0.0, "test_perplexity": 1.0, "test_fox": 2.0,
                      "test_mc_classification": 1.0}, report
    assert (report.score, report.outcome) == (7.0, "kernel_died"), report
    assert "the process died in a graded function; it was not called again" in report.notes, report.notes
    assert SLOW_LIMITS.wall_s < report.seconds <= SLOW_LIMITS.worst_wall_s + 5, "the cells must fit only once"


def _cases(name: str, count: int, first: int) -> list[dict]:
    return [{"id": f"q#{first + k}", "kind": "function", "name": name, "tensors": False, "args": [encode_value(k)],
             "kwargs": {}, "banned": []} for k in range(count)]


#: ``ok`` and ``last`` pass every case; ``boom`` passes its case 0 and kills the kernel on case 1.
THREE_FUNCTIONS = ("import os\ndef ok(k):\n    return k\ndef last(k):\n    return k\n"
                   "def boom(k):\n    if k == 1:\n        os._exit(1)\n    return k\n")


def test_a_rerun_whose_cells_run_out_of_their_budget_keeps_the_calls_made_before_the_crash(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r11, F3: should the rerun's cells take longer than the first time, past their budget, the
    calls made before the crash keep their results instead of the submission losing them all."""
    def slower_rerun(job: Job, limits: Limits, **budgets: Any) -> Any:
        if all(call["name"] != "boom" for call in job.calls):
            job = dataclasses.replace(job, cells=job.cells + [{"index": 10 + k, "source": "import time\ntime.sleep(4)"}
                                                              for k in range(3)])
        return run_job(job, limits, **budgets)

    monkeypatch.setattr(reruns, "run_job", slower_rerun)
    calls = _cases("ok", 1, 0) + _cases("boom", 3, 1) + _cases("last", 2, 4)
    limits = Limits(timeout_s=2.0, submission_timeout_s=10.0)
    run = run_submission(_job([THREE_FUNCTIONS], calls), limits)
    assert run.attempts == 2 and not run.wall_killed and not run.finished, run
    assert [(cell.index, cell.status) for cell in run.cells] == [(0, CellStatus.OK)]
    statuses = {end.call_id: end.status for end in run.calls}
    assert statuses == {"q#0": CallStatus.OK, "q#1": CallStatus.NOT_RUN_AFTER_DEATH, "q#2": CallStatus.DIED,
                        "q#3": CallStatus.NOT_RUN_AFTER_DEATH}, statuses
    assert limits.wall_s < run.cells_seconds <= 2 * limits.wall_s + 3.0, run.cells_seconds
    assert run.kept_from_earlier == "cells"    # review r12, R4: the report says the rerun ran out


#: ``ok`` and ``last`` take 3 s of wall clock (no CPU) each call; ``boom`` passes its case 0 and kills the kernel on 1.
SLOW_BEFORE_A_CRASH = ("import os, time\ndef ok(k):\n    time.sleep(3)\n    return k\n"
                       "def last(k):\n    time.sleep(3)\n    return k\n"
                       "def boom(k):\n    if k == 1:\n        os._exit(1)\n    return k\n")


def test_a_rerun_is_sent_only_the_calls_no_attempt_has_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r13, N2: a rerun made again the calls the attempt before it had answered, on the calls' shared
    budget, so a slow but correct function before a crash starved the function after it (here, made again, the
    two ``ok`` calls would take 6 of the 17 s that the two ``last`` calls need)."""
    sent: list[list[str]] = []
    budgets_sent: list[int] = []

    def recording(job: Job, limits: Limits, **budgets: Any) -> Any:
        sent.append([call["id"] for call in job.calls])
        budgets_sent.append(job.result_bytes)
        return run_job(job, limits, **budgets)

    monkeypatch.setattr(reruns, "run_job", recording)
    calls = _cases("ok", 2, 0) + _cases("boom", 2, 2) + _cases("last", 2, 4)
    limits = Limits(timeout_s=2.0, submission_timeout_s=30.0, calls_timeout_s=17.0)
    run = run_submission(_job([SLOW_BEFORE_A_CRASH], calls), limits)
    assert sent == [[call["id"] for call in calls], ["q#4", "q#5"]], sent
    assert run.attempts == 2 and run.finished and not run.wall_killed, run
    statuses = {end.call_id: end.status for end in run.calls}
    assert statuses == {"q#0": CallStatus.OK, "q#1": CallStatus.OK, "q#2": CallStatus.NOT_RUN_AFTER_DEATH,
                        "q#3": CallStatus.NOT_RUN_AFTER_DEATH, "q#4": CallStatus.OK, "q#5": CallStatus.OK}, statuses
    assert len(run.calls) == 6, run.calls
    kept = sum(wire_size(end.value) + wire_size(end.grads) for end in run.calls if end.call_id in ("q#0", "q#1"))
    assert budgets_sent == [MAX_RESULT_BYTES, MAX_RESULT_BYTES - kept] and kept > 0, "results kept count once"
    assert 12 <= run.calls_seconds <= limits.calls_wall_s, run.calls_seconds
    assert not run.kept_from_earlier


#: ``f`` passes every case but ``k = 7``, where it kills the kernel; ``g`` kills it on every case.
TWO_CRASHES = ("import os\ndef f(k):\n    if k == 7:\n        os._exit(1)\n    return k\n"
               "def g(k):\n    os._exit(1)\n")


def test_a_crash_in_the_last_graded_function_needs_no_rerun() -> None:
    """Grader review r14, F1: with every other call answered, the rerun ran the whole notebook again to make
    no call at all (its cells' budget afresh, and a flaky cell's chance to change a visible check)."""
    calls = _cases("f", 2, 0) + [dict(_cases("f", 1, 2)[0], args=[encode_value(7)])]
    run = run_submission(_job([TWO_CRASHES], calls), Limits(timeout_s=5.0))
    assert run.attempts == 1 and run.finished, run
    statuses = {end.call_id: end.status for end in run.calls}
    assert statuses == {f"q#{i}": CallStatus.NOT_RUN_AFTER_DEATH for i in range(3)}, statuses


def test_a_function_given_up_fails_every_question_whichever_function_crashed_first() -> None:
    """Grader review r14, F2: ``f`` is graded before and after ``g``. When ``g`` crashed first, the rerun was not
    sent ``f``'s answered calls, and ``f``'s later crash gave up only the calls not yet answered: its first
    question kept its points, which it loses when ``f`` crashes first."""
    first_f = _cases("f", 2, 0)
    calls = first_f + _cases("g", 1, 2) + [dict(_cases("f", 1, 3)[0], args=[encode_value(7)])]
    run = run_submission(_job([TWO_CRASHES], calls), Limits(timeout_s=5.0))
    assert run.attempts == 2 and run.finished, run
    statuses = {end.call_id: end.status for end in run.calls}
    assert statuses == {f"q#{i}": CallStatus.NOT_RUN_AFTER_DEATH for i in range(4)}, statuses
    assert len(run.calls) == 4, run.calls


def test_the_pages_state_how_reruns_are_timed(repo_root: Path) -> None:
    """Grader review r11, F3: students were not told that a crash in a hidden case reruns the notebook, nor how
    the rerun is timed; the instructors' page must state the worst case the grader allows."""
    limits = Limits()
    instructors = " ".join((repo_root / "book" / "for_instructors.md").read_text().split())
    # The cells' budget once per attempt at most, and the calls' once.
    steps, base = (MAX_RESTARTS + 2) * SUBMISSION_STEPS, (MAX_RESTARTS + 1) * SUBMISSION_START_S + CALLS_BASE_S
    for stated in (f"{steps} × `--timeout` + {base:g} s, {limits.worst_wall_s:g} s by default",
                   f"at most {MAX_RESTARTS} reruns"):
        assert stated in instructors, f"book/for_instructors.md no longer says {stated!r}"
    students = " ".join((repo_root / "book" / "for_students.md").read_text().split())
    for stated in ("runs your notebook again from the start without that function",
                   f"its cells get their {limits.wall_s:g} seconds afresh",
                   "the hidden cases already run before the crash keep their results and are not run again"):
        assert stated in students, f"book/for_students.md no longer says {stated!r}"



def test_the_grade_command_help_states_how_reruns_are_timed(capsys) -> None:
    """Review r68: the help of ``--timeout`` said the cells' budget held "reruns included", which a rerun
    without a graded function alone contradicts (it gets the cells' budget afresh)."""
    from coursekit.cli import main

    with pytest.raises(SystemExit):
        main(["grade", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    steps, base = (MAX_RESTARTS + 2) * SUBMISSION_STEPS, (MAX_RESTARTS + 1) * SUBMISSION_START_S + CALLS_BASE_S
    for stated in (f"cells get {SUBMISSION_STEPS}x this plus {SUBMISSION_START_S:g} s of wall-clock time",
                   "the calls' budget is shared by every rerun",
                   "given afresh only to a rerun that leaves out a graded function alone",
                   f"at most {MAX_RESTARTS} reruns, {steps}x plus {base:g} s at worst"):
        assert stated in help_text, f"coursekit grade --help no longer says {stated!r}"
    assert "reruns included" not in help_text

#: a cell that keeps what it allocates up to the address-space limit.
HOG = "_hog = []\nwhile True:\n    _hog.append(bytearray(50_000_000))"
#: the limits of the tests whose cells write memory up to the limit (1 GiB): 0.7-0.8 s of CPU in a sandbox on an
#: idle machine, but the same writing in the adversarial corpus (torch.ones) used more than a 3 s CPU limit when CI
#: ran it beside other sandboxes, and ended in a timeout. These tests are about memory, so their CPU limit is set far
#: above what the writing costs.
HOG_LIMITS = Limits(timeout_s=20.0, memory_mb=1024)
#: a cell after it that needs memory, so that the hoarder starved it: the hoarder is left out (a hoarder that starved
#: nothing stays, grader review r28, F2: see tests/test_grading_rerun_policy.py).
NEEDS_MEMORY = "_buffer = bytearray(200_000_000)\nprint('after')"


def test_an_exception_named_like_a_limit_buys_no_second_attempt_and_a_real_hog_does() -> None:
    """Grader review r2, finding 9: reruns read the runner's measurements, never the name a cell raises."""
    limits = HOG_LIMITS
    forged = run_submission(_job(["raise MemoryError('forged')",
                                  "class CellTimeout(BaseException):\n    pass\nraise CellTimeout('forged')",
                                  "print('after')"]), limits)
    assert forged.finished and forged.attempts == 1 and forged.skipped_cells == []
    assert [(c.ename, c.ended) for c in forged.cells] == [
        ("MemoryError", StepEnd.REPORTED), ("CellTimeout", StepEnd.REPORTED), ("", StepEnd.REPORTED)]
    hog = run_submission(_job([HOG, NEEDS_MEMORY]), limits)
    assert hog.finished and hog.attempts == 2 and hog.skipped_cells == [(0, "memory")]
    assert [(c.index, c.stdout) for c in hog.cells] == [(1, "after\n")]


#: a cell that defines something, then tries more memory than there is inside a function: what it allocated is
#: freed as the exception unwinds (grader review r4, finding 2).
FREED_AFTER_TRYING = ("def answer():\n    return 42\n"
                      "def _try_big():\n    kept = []\n    while True:\n        kept.append(bytearray(2**25))\n"
                      "_try_big()")


def test_a_cell_whose_memory_came_back_is_not_a_hoarder_and_keeps_its_definitions() -> None:
    """Grader review r4, finding 2: the rerun dropped the answer although nothing after it was starved."""
    run = run_submission(_job([FREED_AFTER_TRYING, "print(answer())"]), HOG_LIMITS)
    assert run.finished and run.attempts == 1 and run.skipped_cells == []
    assert [(c.index, c.ended, c.memory_held, c.stdout) for c in run.cells] == [
        (0, StepEnd.MEMORY_LIMIT, False, ""), (1, StepEnd.REPORTED, False, "42\n")]


def test_a_cell_that_keeps_its_memory_is_measured_holding_it() -> None:
    run = run_submission(_job([HOG, NEEDS_MEMORY]), HOG_LIMITS)
    assert run.skipped_cells == [(0, "memory")]
    assert run.attempts == 2


@pytest.mark.parametrize("after", ["print('after')", "raise ValueError('not about memory')"])
def test_a_hoarder_that_starved_nothing_stays_with_its_definitions(after: str) -> None:
    """Grader review r28, F2 and r29, F1: a hoarder in a run that finished is left out only when a later step
    failed for memory; a cell that needs none, or fails for another reason (measured at the limit all the same,
    as it started there), leaves it in place, and what it defined is still there."""
    run = run_submission(_job(["def answer():\n    return 42\n" + HOG, after, "print(answer())"]),
                         HOG_LIMITS)
    assert run.finished and run.attempts == 1 and run.skipped_cells == [], run
    assert run.cells[0].memory_held and run.cells[-1].stdout == "42\n", run.cells


def test_memory_is_counted_on_top_of_the_kernels_starting_address_space() -> None:
    """Grader review r4, finding 5: at --memory 512 the kernel, which starts with torch mapped (~600 MiB), could
    map nothing more; the limit is now on top of that start, so a 300 MiB array fits under 512."""
    cell = ("import resource, torch\n"
            "_start = int([l for l in open('/proc/self/status') if l.startswith('VmSize')][0].split()[1]) * 1024\n"
            "_limit = resource.getrlimit(resource.RLIMIT_AS)[0]\n"
            "_x = torch.ones(300 * 2**18)\n"
            "print(_limit - _start >= 400 * 2**20, float(_x.sum()))\n")
    run = run_submission(_job([cell]), Limits(timeout_s=5.0, memory_mb=512))
    assert [(c.status, c.stdout) for c in run.cells] == [(CellStatus.OK, f"True {300 * 2**18:.1f}\n")]


#: appended to the first answer cell: an experiment that tries ever larger inputs, all freed when the function
#: returns, then gives up with a MemoryError (the honest case: the cell keeps its definitions).
TRIED_AND_FREED = """
def _how_far_can_i_go():
    import torch
    held = []
    for size in (64 << 20, 1 << 20, 64 << 10):
        try:
            while True:
                held.append(torch.ones(size, dtype=torch.uint8))
        except MemoryError:
            pass
    raise MemoryError("too big for this machine")
_how_far_can_i_go()
"""
#: a scratch cell just above the last test cell (cells below it are not run): fills the address space with
#: buffers it keeps in a global, then raises.
SCRATCH_HOARD = """big = []
for size in (64 << 20, 1 << 20):
    try:
        while True:
            big.append(torch.ones(size, dtype=torch.uint8))
    except MemoryError:
        pass
raise MemoryError("out of memory in my scratch cell")
"""
#: each assignment's memory budget in the review's runs: a1's default is too large for its calls to starve.
MEMORY_ARGS = {"a1_sequence_loss": ["--memory", "512"], "a6_large_vocab": []}


def _first_answer(notebook: dict[str, Any]) -> int:
    return next(i for i, cell in enumerate(notebook["cells"])
                if cell["cell_type"] == "code" and cell["metadata"].get("nbgrader", {}).get("solution"))


def _last_test(notebook: dict[str, Any]) -> int:
    return max(i for i, cell in enumerate(notebook["cells"])
               if cell["metadata"].get("nbgrader", {}).get("grade") and cell["cell_type"] == "code")


@pytest.fixture(scope="module", params=sorted(MEMORY_ARGS))
def hoarded_after_freed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``coursekit grade`` of the review's pair: ``b_only`` hoards in a scratch cell above its last test cell (the
    review's hoarded in the last cell, which is no longer run); ``a_then_b`` also tries too much, and frees it, in
    its first answer cell."""
    assignment = request.param
    course = make_course(tmp_path_factory.mktemp(assignment), assignment=assignment)
    solved = solved_notebook(course, assignment)
    answer, last = _first_answer(solved), _last_test(solved)
    b_only = copy.deepcopy(solved)
    b_only["cells"].insert(last, {"cell_type": "code", "id": "scratch-hoard", "metadata": {}, "outputs": [],
                                  "execution_count": None, "source": SCRATCH_HOARD})
    if assignment == "a1_sequence_loss":
        # a1's last test cell and hidden calls need too little memory to run out: a scratch cell after the hoard that
        # needs some does, so the hoard starved something and is skipped (grader review r28, F2).
        b_only["cells"].insert(last + 1, {"cell_type": "code", "id": "scratch-needs", "metadata": {}, "outputs": [],
                                          "execution_count": None, "source": "print(len(bytearray(200_000_000)))\n"})
    a_then_b = copy.deepcopy(b_only)
    a_then_b["cells"][answer]["source"] += TRIED_AND_FREED
    submit(course, "b_only", b_only, assignment=assignment)
    submit(course, "a_then_b", a_then_b, assignment=assignment)
    done = subprocess.run([str(VENV_BIN / "coursekit"), "grade", assignment, "--no-progress", "--jobs", "1",
                           *MEMORY_ARGS[assignment]], cwd=course, env=tool_env(), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = {}
    for path in (course / "grade-reports" / assignment).glob("*.json"):
        data = json.loads(path.read_text())
        reports[data["student"]] = data
    return {"reports": reports, "answer": answer, "last": last}


def test_a_later_hoarder_is_skipped_and_an_earlier_cell_whose_memory_came_back_keeps_its_answer(
        hoarded_after_freed: dict[str, Any]) -> None:
    """Grader review r5, finding 10: each step is measured by itself (the hoarder is seen at the limit although an
    earlier cell set the lifetime peak), and the cell that held the memory is left out, not the first at the limit."""
    reports, answer, last = (hoarded_after_freed[key] for key in ("reports", "answer", "last"))
    hoarder = f"the process ran out of memory in cell {last}; it was skipped on a rerun"
    assert (reports["b_only"]["score"], reports["b_only"]["outcome"]) == (10.0, "memory_limit"), reports["b_only"]
    assert reports["b_only"]["notes"][:1] == [hoarder], reports["b_only"]["notes"]
    kept = reports["a_then_b"]
    assert (kept["score"], kept["outcome"]) == (10.0, "memory_limit"), kept
    assert kept["notes"][:2] == [hoarder, f"cell {answer} ran out of memory and was not near the limit when it "
                                          "ended; it was not skipped"], kept["notes"]
