"""The rerun policy's bookkeeping across attempts, on scripted runs (no sandbox).

``run_submission`` decides from each attempt's :class:`~coursekit.grading.sandbox.RawRun`
alone; here ``run_job`` is replaced by a script that answers the calls it is sent in
order and kills the kernel in the first one listed as deadly, so sequences of crashes
that a real notebook reaches only by chance (four functions crashing one after another)
are checked exactly. The real sandbox's side is in test_grading_reruns.py.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from coursekit.grading import reruns
from coursekit.grading.limits import MAX_RESTARTS, Limits
from coursekit.grading.outcomes import Evidence, classify
from coursekit.grading.package_view import plan_view
from coursekit.grading.protocol import CallEnd, CallStatus, CellEnd, CellStatus, Done, StepEnd
from coursekit.grading.reruns import run_submission
from coursekit.grading.sandbox import Job, RawRun

pytestmark = pytest.mark.grading


def _calls(*names: str) -> list[dict[str, Any]]:
    return [{"id": f"q#{i}", "kind": "function", "name": name, "tensors": False, "args": [], "kwargs": {},
             "banned": []} for i, name in enumerate(names)]


def _memory_taken_after(cells: list[CellEnd], frees: frozenset[int] = frozenset()) -> bool:
    """Whether memory a cell kept is still taken after ``cells`` ran: one kept it and no cell since freed it."""
    taken = False
    for cell in cells:
        taken = (taken or cell.memory_held) and cell.index not in frees
    return taken


def _as_measured(cells: list[CellEnd], calls: list[CallEnd] = (), frees: frozenset[int] = frozenset()  # type: ignore[assignment]
                 ) -> tuple[list[CellEnd], list[CallEnd]]:
    """``cells`` and ``calls`` as the runner measures them: a step starts near the memory limit when a cell
    before it kept its memory and no cell since freed it (the indices in ``frees`` do); a cell that kept its
    memory started below the limit (see :attr:`CellEnd.memory_held`)."""
    measured = [dataclasses.replace(cell, started_near_limit=_memory_taken_after(cells[:place], frees)
                                    and not cell.memory_held) for place, cell in enumerate(cells)]
    taken = _memory_taken_after(measured, frees)
    return measured, [dataclasses.replace(call, started_near_limit=taken and call.ended is not StepEnd.NOT_RUN)
                      for call in calls]


def _measured_run(cells: list[CellEnd], calls: list[CallEnd] = (), **fields: Any) -> RawRun:  # type: ignore[assignment]
    """A run whose ``cells`` and ``calls`` carry the runner's measured starts (see :func:`_as_measured`)."""
    cells, calls = _as_measured(list(cells), list(calls))
    return RawRun(ready=True, cells=cells, calls=calls, **fields)


def _scripted(monkeypatch: pytest.MonkeyPatch, deadly: set[str], oom_kills: int = 0, stalls: bool = False,
              cells: tuple[CellEnd, ...] = (), memory_errors: frozenset[str] = frozenset(),
              evidence: bool = False, frees: frozenset[int] = frozenset()) -> list[list[str]]:
    """Replace ``run_job`` with a script of what the runner reports: of ``cells``, those the job sends end as
    given; calls run in order, one of ``memory_errors`` raises a measured ``MemoryError``, and the first of
    ``deadly`` sent kills the kernel (by the OOM killer when ``oom_kills``; stalls when ``stalls``), with,
    when ``evidence``, a malformed runner line, two ignored reports, stderr and a signal's exit status.
    Each step starts near the memory limit, as the runner measures it, when a cell the job sent before it
    kept its memory and no cell since freed it (the indices in ``frees`` do). Returns the ids each attempt
    was sent."""
    sent: list[list[str]] = []

    def run_job(job: Job, limits: Limits, **budgets: Any) -> RawRun:
        ids = [call["id"] for call in job.calls]
        sent.append(ids)
        indices = {cell["index"] for cell in job.cells}
        ran, _ = _as_measured([cell for cell in cells if cell.index in indices], frees=frees)
        taken = _memory_taken_after(ran, frees)
        ends: list[CallEnd] = []
        for call_id in ids:
            if call_id in deadly:
                ended = StepEnd.KILLED if stalls else StepEnd.EXITED
                ends.append(CallEnd(call_id, CallStatus.STALLED if stalls else CallStatus.DIED, ended=ended,
                                    started_near_limit=taken))
                if evidence:
                    return RawRun(ready=True, cells=ran, calls=ends, oom_kills=oom_kills, protocol_errors=1,
                                  done=Done(stopped_call=call_id, ignored_reports=2), ignored_reports=2,
                                  diagnostics=f"died in {call_id}", returncode=-9)
                return RawRun(ready=True, cells=ran, calls=ends, done=Done(stopped_call=call_id), oom_kills=oom_kills,
                              returncode=0)
            if call_id in memory_errors:
                ends.append(CallEnd(call_id, CallStatus.OUT_OF_MEMORY, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT,
                                    started_near_limit=taken))
            else:
                ends.append(CallEnd(call_id, CallStatus.OK, value=1, ended=StepEnd.REPORTED, started_near_limit=taken))
        return RawRun(ready=True, cells=ran, calls=ends, done=Done(), returncode=0)

    monkeypatch.setattr(reruns, "run_job", run_job)
    return sent


def _outcome(run: RawRun) -> str:
    """The outcome the grader gives ``run`` for a notebook with nothing missing or tampered and no reference used."""
    prepared = SimpleNamespace(missing=[], tampered=[])
    return classify(Evidence.of(run, prepared, []))[0]  # type: ignore[arg-type]


def _job(calls: list[dict[str, Any]], cells: int = 1) -> Job:
    return Job(files={}, cells=[{"index": i, "source": ""} for i in range(cells)], calls=calls, adapters=[],
               view=plan_view(set(), []))


def test_a_function_that_crashes_on_the_last_attempt_is_given_up_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r15, F3: on the last attempt the crash returned before the give-up, so ``f``'s first
    question kept the results it loses when ``f`` crashes first."""
    names = ("f", "a", "b", "c", "f", "d")
    assert MAX_RESTARTS == 3, "three functions crash before f, which crashes on the last attempt"
    sent = _scripted(monkeypatch, deadly={"q#1", "q#2", "q#3", "q#4"})
    run = run_submission(_job(_calls(*names)), Limits())
    assert run.attempts == MAX_RESTARTS + 1 and sent[-1] == ["q#4", "q#5"], sent
    statuses = {end.call_id: end.status for end in run.calls}
    # d's call, never made, has no event: it fails as "no result"; the call that died keeps its own event.
    assert statuses == {**{f"q#{i}": CallStatus.NOT_RUN_AFTER_DEATH for i in range(4)}, "q#4": CallStatus.DIED}, \
        statuses


def test_f_fails_in_every_question_whichever_function_crashed_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r14, F2, both orders on one spec: ``f`` graded before and after ``g``."""
    outcomes = []
    for deadly in ({"q#2", "q#3"}, {"q#3"}):
        _scripted(monkeypatch, deadly=deadly)
        run = run_submission(_job(_calls("f", "f", "g", "f")), Limits())
        outcomes.append({end.call_id: end.status for end in run.calls if end.call_id in ("q#0", "q#1")})
    assert outcomes == [{"q#0": CallStatus.NOT_RUN_AFTER_DEATH, "q#1": CallStatus.NOT_RUN_AFTER_DEATH}] * 2


def test_the_oom_killers_kills_of_every_attempt_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r15, F2: a call killed by the memory cgroup followed by a rerun lost its kill (the rerun's
    count, 0), so the outcome was kernel_died where the same kill in the last function gave memory_limit."""
    sent = _scripted(monkeypatch, deadly={"q#0"}, oom_kills=1)
    run = run_submission(_job(_calls("f", "g")), Limits())
    assert sent == [["q#0", "q#1"], ["q#1"]], sent
    assert run.oom_kills == 1 and run.finished, run


def test_no_rerun_when_every_call_is_answered_or_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = _scripted(monkeypatch, deadly={"q#2"})
    run = run_submission(_job(_calls("g", "f", "f")), Limits())
    assert len(sent) == 1 and run.attempts == 1 and run.finished, sent
    assert {end.call_id: end.status for end in run.calls} == {
        "q#0": CallStatus.OK, "q#1": CallStatus.NOT_RUN_AFTER_DEATH, "q#2": CallStatus.NOT_RUN_AFTER_DEATH}


def test_a_call_that_stalls_on_the_last_attempt_keeps_its_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r16, F2: at the cap the stalled call's own event was replaced, and the run read as a death."""
    _scripted(monkeypatch, deadly={"q#1", "q#2", "q#3", "q#4"}, stalls=True)
    run = run_submission(_job(_calls("f", "a", "b", "c", "f", "d")), Limits())
    assert {end.call_id: end.status for end in run.calls}["q#4"] is CallStatus.STALLED, run.calls
    assert _outcome(run) == "timeout"


def test_a_crashed_attempts_evidence_survives_the_rerun(monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r16, F3: the malformed runner line, stderr and exit status of the attempt that crashed were
    replaced by the clean rerun's."""
    _scripted(monkeypatch, deadly={"q#0"}, evidence=True)
    run = run_submission(_job(_calls("f", "g")), Limits())
    assert run.attempts == 2 and run.finished, run
    assert (run.protocol_errors, run.diagnostics, run.returncode) == (1, "died in q#0", -9)
    assert run.ignored_reports == 2, "review r17, F5: the forged lines are counted"


def test_a_graded_calls_own_memory_error_blames_no_cell_whose_memory_came_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r16, F1: an answer cell that ended in its own MemoryError (memory given back) was left out
    because a hidden call raised MemoryError too, and the rerun's NameErrors replaced every passing answer."""
    answer = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=False)
    sent = _scripted(monkeypatch, deadly=set(), cells=(answer,), memory_errors=frozenset({"q#1"}))
    run = run_submission(_job(_calls("f", "f")), Limits())
    assert len(sent) == 1 and run.attempts == 1 and not run.skipped_cells, sent
    assert [end.status for end in run.calls] == [CallStatus.OK, CallStatus.OUT_OF_MEMORY]


def test_a_finished_run_is_not_rerun_for_a_cell_a_later_cells_memory_error_followed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r17, F1: two cells that each ran out of memory and were not near the limit when they ended,
    in a run that finished: the first was left out on the later one's evidence, and the rerun lost its definitions."""
    first = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=False)
    second = CellEnd(1, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=False)
    sent = _scripted(monkeypatch, deadly=set(), cells=(first, second))
    run = run_submission(_job(_calls("f"), cells=2), Limits())
    assert len(sent) == 1 and not run.skipped_cells and run.finished, run


def test_a_cell_that_held_its_memory_is_left_out_and_the_rerun_is_sent_without_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A cell after the hoarder ran short of memory too: the hoarder is left out."""
    hoarder = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=True)
    sent_cells: list[list[int]] = []
    _scripted(monkeypatch, deadly=set(), cells=(hoarder, CellEnd(1, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT)))
    scripted = reruns.run_job

    def recording(job: Job, limits: Limits, **budgets: Any) -> RawRun:
        sent_cells.append([cell["index"] for cell in job.cells])
        return scripted(job, limits, **budgets)

    monkeypatch.setattr(reruns, "run_job", recording)
    run = run_submission(_job(_calls("f"), cells=2), Limits())
    assert sent_cells == [[0, 1], [1]] and run.skipped_cells == [(0, "memory")], (sent_cells, run)
    assert _outcome(run) == "memory_limit"


#: what happens after a cell that kept its memory, in a run that finished: (the later cell, the second call's end,
#: OOM kills), and whether the cell is then left out.
AFTER_A_HOARDER = {
    "nothing": (CellEnd(1, CellStatus.OK), CallEnd("q#1", CallStatus.OK, value=1, ended=StepEnd.REPORTED), 0, False),
    "cell_out_of_memory": (CellEnd(1, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT),
                           CallEnd("q#1", CallStatus.OK, value=1, ended=StepEnd.REPORTED), 0, True),
    "cell_allocator": (CellEnd(1, CellStatus.ERROR, ename="RuntimeError", ended=StepEnd.MEMORY_LIMIT,
                               evalue="[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
                       CallEnd("q#1", CallStatus.OK, value=1, ended=StepEnd.REPORTED), 0, True),
    # r29, F1: after a hoarder every failed step is measured at the limit (it started there).
    "cell_other_error": (CellEnd(1, CellStatus.ERROR, ename="AssertionError", ended=StepEnd.MEMORY_LIMIT),
                         CallEnd("q#1", CallStatus.OK, value=1, ended=StepEnd.REPORTED), 0, False),
    "call_out_of_memory": (CellEnd(1, CellStatus.OK),
                           CallEnd("q#1", CallStatus.OUT_OF_MEMORY, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT),
                           0, True),
    "call_raised_at_the_limit": (CellEnd(1, CellStatus.OK),
                                 CallEnd("q#1", CallStatus.RAISED, ename="IndexError", ended=StepEnd.MEMORY_LIMIT),
                                 0, False),
    # r29, F3: a MemoryError the function raised itself, far from the limit, is the student's word alone.
    "call_claims_memory": (CellEnd(1, CellStatus.OK),
                           CallEnd("q#1", CallStatus.OUT_OF_MEMORY, ename="MemoryError", ended=StepEnd.REPORTED),
                           0, False),
    "oom_kill": (CellEnd(1, CellStatus.OK), CallEnd("q#1", CallStatus.OK, value=1, ended=StepEnd.REPORTED), 1, True),
}


@pytest.mark.parametrize("after", sorted(AFTER_A_HOARDER))
def test_a_finished_run_leaves_a_hoarder_out_only_when_a_step_after_it_ran_short_of_memory(
        monkeypatch: pytest.MonkeyPatch, after: str) -> None:
    """Grader review r28, F2: a cell that kept its memory in a run that finished was left out even when every
    later cell and call ran: the rerun could only lose its definitions (an answer cell's function: every point
    of its question). It stays, named in a note, unless a later cell or a call failed for memory at the limit
    or the OOM killer killed a process (r29, F1 and F3: both the measurement and the failure count)."""
    from coursekit.grading.outcomes import run_notes

    hoarder = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=True)
    later, second_call, oom_kills, left_out = AFTER_A_HOARDER[after]
    sent: list[list[int]] = []

    def run_job(job: Job, limits: Limits, **budgets: Any) -> RawRun:
        indices = [cell["index"] for cell in job.cells]
        sent.append(indices)
        if 0 not in indices:
            ends = [CallEnd(call["id"], CallStatus.OK, value=1, ended=StepEnd.REPORTED) for call in job.calls]
            return RawRun(ready=True, cells=[CellEnd(1, CellStatus.OK)], calls=ends, done=Done())
        cells, ends = _as_measured([hoarder, later],
                                   [CallEnd("q#0", CallStatus.OK, value=1, ended=StepEnd.REPORTED), second_call])
        return RawRun(ready=True, cells=cells, calls=ends, done=Done(), oom_kills=oom_kills)

    monkeypatch.setattr(reruns, "run_job", run_job)
    run = run_submission(_job(_calls("f", "f"), cells=2), Limits())
    if left_out:
        assert sent == [[0, 1], [1]] and run.skipped_cells == [(0, "memory")], (sent, run)
    else:
        assert sent == [[0, 1]] and run.attempts == 1 and not run.skipped_cells, (sent, run)
        assert "cell 0 ran out of memory and kept it (near the limit when it ended); it was not skipped" in (
            run_notes(run))
    assert _outcome(run) == "memory_limit"


@pytest.mark.parametrize(("failing", "culprit"), [(1, 0), (3, 2), (None, 2)])
def test_a_failure_for_memory_is_laid_at_the_last_hoarder_before_it(
        monkeypatch: pytest.MonkeyPatch, failing: int | None, culprit: int) -> None:
    """Grader review r30, F2: cells 0 and 2 each kept memory; cell 2 kept it having started below the limit, so
    cell 0's was gone by then, and a failure for memory after cell 2 (cell 3, or a graded call: ``None``) is no
    evidence against cell 0, whose definitions a rerun without it would lose."""
    def at_limit(index: int, held: bool = False) -> CellEnd:
        return CellEnd(index, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=held)

    cells = [at_limit(0, held=True), CellEnd(1, CellStatus.OK, ended=StepEnd.REPORTED), at_limit(2, held=True),
             CellEnd(3, CellStatus.OK, ended=StepEnd.REPORTED)]
    if failing is not None:
        cells[failing] = at_limit(failing)
    second = (CallEnd("q#1", CallStatus.OUT_OF_MEMORY, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT)
              if failing is None else CallEnd("q#1", CallStatus.OK, value=1, ended=StepEnd.REPORTED))
    cells, calls = _as_measured(cells, [CallEnd("q#0", CallStatus.OK, value=1), second])
    run = RawRun(ready=True, cells=cells, calls=calls, done=Done())
    assert reruns._culprit_cell(run) == (culprit, "memory")


@pytest.mark.parametrize("stop", ["cell", "call", "adapters", "no_report"])
def test_a_death_after_two_hoarders_leaves_the_later_one_out_first(monkeypatch: pytest.MonkeyPatch, stop: str) -> None:
    """Grader review r31, F1: the later of two cells that kept memory started below the limit, so the earlier one's
    memory was gone by then; a death after both is laid at the later one, whatever the step it came in."""
    def held(index: int) -> CellEnd:
        return CellEnd(index, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=True)

    cells = [held(0), CellEnd(1, CellStatus.OK, ended=StepEnd.REPORTED), held(2)]
    done = {"cell": Done(stopped_cell=3), "call": Done(stopped_call="q#0"), "adapters": Done(stopped_in_adapter=True),
            "no_report": None}[stop]
    if stop == "cell":
        cells.append(CellEnd(3, CellStatus.DIED, ended=StepEnd.EXITED))
    cells, _ = _as_measured(cells)
    run = RawRun(ready=True, cells=cells, done=done, oom_kills=1)
    assert reruns._culprit_cell(run) == (2, "memory")


def test_a_call_that_stalls_after_two_cells_ran_out_of_memory_leaves_no_cell_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r18, F1: in a run stopped in a graded call every cell had run, so a later cell's own
    MemoryError is no evidence against an earlier one; the answer cell was left out and every question lost its
    function."""
    answer = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=False)
    later = CellEnd(1, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=False)
    sent = _scripted(monkeypatch, deadly={"q#1"}, stalls=True, cells=(answer, later))
    run = run_submission(_job(_calls("f", "h", "f"), cells=2), Limits())
    assert not run.skipped_cells and sent == [["q#0", "q#1", "q#2"], ["q#2"]], (sent, run.skipped_cells)
    assert {end.call_id: end.status for end in run.calls} == {
        "q#0": CallStatus.OK, "q#1": CallStatus.NOT_RUN_AFTER_STALL, "q#2": CallStatus.OK}
    # The rerun finished, and its cells did run out of memory: memory_limit ranks above the given-up stall.
    assert _outcome(run) == "memory_limit"


def test_a_rerun_without_a_cell_makes_every_call_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r18, F2: a result an earlier attempt gave with the hoarding cell in place does not stand once
    the cell is left out; every call not given up on is sent again."""
    hoarder = CellEnd(1, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=True)
    sent: list[list[str]] = []
    attempts = iter([
        # g dies; nothing blames a cell, so g is given up and f's first call keeps its result.
        RawRun(ready=True, cells=[CellEnd(0, CellStatus.OK), CellEnd(1, CellStatus.OK)],
               calls=[CallEnd("q#0", CallStatus.OK, value=1), CallEnd("q#1", CallStatus.DIED, ended=StepEnd.EXITED)],
               done=Done(stopped_call="q#1")),
        # The rerun finishes, but cell 1 now held its memory and a call ran short of it: the cell is left out.
        _measured_run(cells=[CellEnd(0, CellStatus.OK), hoarder],
               calls=[CallEnd("q#2", CallStatus.OUT_OF_MEMORY, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT)],
               done=Done()),
        RawRun(ready=True, cells=[CellEnd(0, CellStatus.OK)],
               calls=[CallEnd("q#0", CallStatus.OK, value=2), CallEnd("q#2", CallStatus.OK, value=2)], done=Done()),
    ])

    calls_budgets: list[float] = []

    def run_job(job: Job, limits: Limits, **budgets: Any) -> RawRun:
        sent.append([call["id"] for call in job.calls])
        calls_budgets.append(budgets["calls_s"])
        return dataclasses.replace(next(attempts), calls_seconds=10.0)

    monkeypatch.setattr(reruns, "run_job", run_job)
    run = run_submission(_job(_calls("f", "g", "f"), cells=2), Limits())
    assert sent == [["q#0", "q#1", "q#2"], ["q#2"], ["q#0", "q#2"]], sent
    # The calls' budget is shared by every attempt, the one whose answers were dropped included.
    full = Limits().calls_wall_s
    assert calls_budgets == [full, full - 10, full - 20], calls_budgets
    assert run.skipped_cells == [(1, "memory")] and run.finished
    assert {end.call_id: (end.status, end.value) for end in run.calls} == {
        "q#0": (CallStatus.OK, 2), "q#1": (CallStatus.NOT_RUN_AFTER_DEATH, None), "q#2": (CallStatus.OK, 2)}


def test_lines_the_notebook_wrote_in_an_attempt_killed_at_the_wall_clock_are_still_counted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r18, F6: the count was kept on the last attempt's Done, which a wall-clock kill leaves out."""
    attempts = iter([
        RawRun(ready=True, calls=[CallEnd("q#0", CallStatus.DIED, ended=StepEnd.EXITED)],
               done=Done(stopped_call="q#0", ignored_reports=3), ignored_reports=3, returncode=0),
        RawRun(ready=True, wall_killed=True, wall_killed_in="calls"),
    ])
    monkeypatch.setattr(reruns, "run_job", lambda job, limits, **budgets: next(attempts))
    run = run_submission(_job(_calls("f", "g")), Limits())
    assert run.attempts == 2 and run.done is None and run.ignored_reports == 3, run


def test_a_rerun_without_a_cell_that_runs_out_of_its_cells_budget_keeps_no_earlier_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r19, F1: after f died and then g died after cell 1 kept its memory, the rerun without cell 1 ran out of
    its cells' budget and the submission fell back on the first attempt's answers, made with cell 1 in place,
    while h's answer of the second attempt was lost and the notes said no cell was skipped."""
    at_limit = CellEnd(1, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=False)
    held = dataclasses.replace(at_limit, memory_held=True)
    attempts = iter([
        RawRun(ready=True, cells=[CellEnd(0, CellStatus.OK), at_limit],
               calls=[CallEnd("q#0", CallStatus.OK, value=1), CallEnd("q#1", CallStatus.DIED, ended=StepEnd.EXITED)],
               done=Done(stopped_call="q#1")),
        # This time cell 1 kept its memory, and g died: the cell is left out first (r20, F2).
        _measured_run(cells=[CellEnd(0, CellStatus.OK), held],
               calls=[CallEnd("q#2", CallStatus.OK, value=1), CallEnd("q#3", CallStatus.DIED, ended=StepEnd.KILLED)],
               done=Done(stopped_call="q#3"), oom_kills=1),
        RawRun(ready=True, cells=[CellEnd(0, CellStatus.OK)], wall_killed=True, wall_killed_in="cells"),
    ])
    monkeypatch.setattr(reruns, "run_job", lambda job, limits, **budgets: next(attempts))
    run = run_submission(_job(_calls("h", "f", "h", "g"), cells=2), Limits())
    assert run.skipped_cells == [(1, "memory")] and run.wall_killed_in == "cells" and not run.kept_from_earlier
    assert {end.call_id: end.status for end in run.calls} == {"q#1": CallStatus.NOT_RUN_AFTER_DEATH}
    assert _outcome(run) == "timeout"


@pytest.mark.parametrize("stopped", ["adapter", "no_report"])
def test_a_run_that_got_as_far_as_its_calls_leaves_no_cell_out_on_a_later_cells_memory_error(
        monkeypatch: pytest.MonkeyPatch, stopped: str) -> None:
    """Grader review r19, F4 and F5: a kernel that died in the adapters, or a runner that ended without its last
    report after making calls, had run every cell, as in a run stopped in a graded call (r18, F1)."""
    first = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=False)
    second = CellEnd(1, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=False)
    if stopped == "adapter":
        run = RawRun(ready=True, cells=[first, second], done=Done(stopped_in_adapter=True))
    else:
        run = RawRun(ready=True, cells=[first, second], calls=[CallEnd("q#0", CallStatus.OK, value=1)])
    assert reruns._culprit_cell(run) is None
    # With no call made and no last report, the runner may have died in a cell after them: the first is blamed.
    assert reruns._culprit_cell(dataclasses.replace(run, calls=[], done=None)) == (0, "memory")


def test_a_death_after_a_cell_that_held_its_memory_leaves_that_cell_out_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r20, F2: the cell the kernel died in was left out while the hoarder before it stayed, so each
    rerun lost a later cell (an answer, say) and kept the cell that starved it."""
    hoarder = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=True)
    # As the runner reports a death: the cell's own end, then Done naming it.
    death = CellEnd(2, CellStatus.DIED, ended=StepEnd.EXITED)
    died = _measured_run(cells=[hoarder, CellEnd(1, CellStatus.OK), death], done=Done(stopped_cell=2))
    assert reruns._culprit_cell(died) == (0, "memory")
    assert reruns._culprit_cell(dataclasses.replace(died, oom_kills=1)) == (0, "memory")
    # Without a hoarder before it, the cell it died in is the culprit, as before.
    alone = dataclasses.replace(died, cells=[CellEnd(0, CellStatus.OK), CellEnd(1, CellStatus.OK), death])
    assert reruns._culprit_cell(alone) == (2, "died")
    # A cell that would not stop is its own culprit, a hoarder before it or not.
    stalled = CellEnd(2, CellStatus.STALLED, ended=StepEnd.KILLED)
    assert reruns._culprit_cell(dataclasses.replace(died, cells=[hoarder, CellEnd(1, CellStatus.OK), stalled])) \
        == (2, "timeout")


def test_a_runner_that_said_its_cells_were_done_leaves_no_cell_out_on_a_later_cells_memory_error() -> None:
    """Grader review r20, F4: 'a call was made' missed a runner that reported its cells done and ended before any
    call ended; the runner's CellsDone is recorded on the run."""
    first = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=False)
    second = CellEnd(1, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=False)
    assert reruns._culprit_cell(RawRun(ready=True, cells=[first, second], cells_done=True)) is None


def test_a_call_that_stalls_after_a_cell_that_held_its_memory_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r22, F1: the hoarder was left out instead, every call was made again and the stall ran a
    second time out of the shared calls' budget; a call that will not stop is its own culprit, as a cell is."""
    hoarder = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=True)
    sent = _scripted(monkeypatch, deadly={"q#1"}, stalls=True, cells=(hoarder, CellEnd(1, CellStatus.OK)))
    run = run_submission(_job(_calls("f", "g", "f"), cells=2), Limits())
    # g stalls: it is given up and, in the same rerun, the hoarder is left out, so f's calls are made again once.
    assert sent == [["q#0", "q#1", "q#2"], ["q#0", "q#2"]], sent
    assert run.skipped_cells == [(0, "memory")] and run.finished
    assert {end.call_id: end.status for end in run.calls}["q#1"] is CallStatus.NOT_RUN_AFTER_STALL


def test_a_stall_in_the_last_function_after_a_hoarder_still_leaves_the_hoarder_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r23, F1: with g given up and f answered no call was left, so the run ended with the hoarder
    in and every answer it starved lost."""
    hoarder = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=True)
    sent = _scripted(monkeypatch, deadly={"q#1"}, stalls=True, cells=(hoarder, CellEnd(1, CellStatus.OK)))
    scripted, cells_budgets = reruns.run_job, []

    def timed(job: Job, limits: Limits, **budgets: Any) -> RawRun:
        cells_budgets.append(budgets["cells_s"])
        return dataclasses.replace(scripted(job, limits, **budgets), cells_seconds=40.0)

    monkeypatch.setattr(reruns, "run_job", timed)
    run = run_submission(_job(_calls("f", "g"), cells=2), Limits())
    assert sent == [["q#0", "q#1"], ["q#0"]], sent
    assert run.skipped_cells == [(0, "memory")] and run.attempts == 2
    # Review r24, F1: a rerun that leaves a cell out shares the cells' budget, even when it gives up a function too.
    assert cells_budgets == [Limits().wall_s, Limits().wall_s - 40], cells_budgets


def test_no_rerun_is_made_when_every_function_is_given_up_whatever_cell_would_be_left_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r25, F4 (which undid r24, F4): with every function given up, a rerun without the hoarder
    could change no score (every question is graded through calls) and could only replace the stall's verdict."""
    hoarder = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=True)
    sent = _scripted(monkeypatch, deadly={"q#0"}, stalls=True, cells=(hoarder, CellEnd(1, CellStatus.OK)))
    run = run_submission(_job(_calls("g", "g"), cells=2), Limits())
    assert sent == [["q#0", "q#1"]] and not run.skipped_cells, sent
    assert {end.status for end in run.calls} == {CallStatus.NOT_RUN_AFTER_STALL}
    # A job with no call at all is still rerun without its hoarder, when a cell after it ran short of memory: its
    # cells are all there is to it.
    sent = _scripted(monkeypatch, deadly=set(), cells=(hoarder, CellEnd(1, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT)))
    cells_only = run_submission(_job([], cells=2), Limits())
    assert sent == [[], []] and cells_only.skipped_cells == [(0, "memory")]


def test_a_death_in_the_adapters_after_a_hoarder_leaves_the_hoarder_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r25, F1: the pages said a death while the adapters run is never rerun; after a cell that kept
    its memory (which may have starved them) that cell is left out and every call made."""
    hoarder = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=True)
    sent: list[tuple[list[int], list[str]]] = []
    attempts = iter([
        _measured_run(cells=[hoarder, CellEnd(1, CellStatus.OK)], cells_done=True,
               done=Done(stopped_in_adapter=True), diagnostics="died in the adapters", returncode=-9),
        RawRun(ready=True, cells=[CellEnd(1, CellStatus.OK)], cells_done=True,
               calls=[CallEnd("q#0", CallStatus.OK, value=1)], done=Done()),
    ])

    def run_job(job: Job, limits: Limits, **budgets: Any) -> RawRun:
        sent.append(([cell["index"] for cell in job.cells], [call["id"] for call in job.calls]))
        return next(attempts)

    monkeypatch.setattr(reruns, "run_job", run_job)
    run = run_submission(_job(_calls("f"), cells=2), Limits())
    assert sent == [([0, 1], ["q#0"]), ([1], ["q#0"])] and run.skipped_cells == [(0, "memory")] and run.finished
    # Review r27, F2: the stopped attempt's stderr and exit status explain the rerun, which wrote none.
    assert (run.diagnostics, run.returncode) == ("died in the adapters", -9)
    # Without a hoarder, a death in the adapters is not rerun.
    assert reruns._culprit_cell(RawRun(ready=True, cells=[CellEnd(0, CellStatus.OK)], cells_done=True,
                                       done=Done(stopped_in_adapter=True))) is None


def test_an_oom_kill_in_a_call_gives_up_the_function_and_leaves_a_cell_that_freed_its_memory_in(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r23, F2: the kill blamed an earlier cell that had given its memory back (an answer cell that
    tried too much), which lost its definitions, while every call was made again."""
    freed = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=False)
    sent = _scripted(monkeypatch, deadly={"q#1"}, oom_kills=1, cells=(freed, CellEnd(1, CellStatus.OK)))
    run = run_submission(_job(_calls("f", "g", "f"), cells=2), Limits())
    assert sent == [["q#0", "q#1", "q#2"], ["q#2"]], sent
    assert not run.skipped_cells and _outcome(run) == "memory_limit"


def test_a_call_that_dies_after_a_cell_that_held_its_memory_leaves_that_cell_out_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A death may be the hoarder's doing (memory the call could not get): the cell goes first, the function stays."""
    hoarder = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=True)
    sent = _scripted(monkeypatch, deadly={"q#1"}, cells=(hoarder, CellEnd(1, CellStatus.OK)))
    run = run_submission(_job(_calls("f", "g", "f"), cells=2), Limits())
    assert sent[:2] == [["q#0", "q#1", "q#2"], ["q#0", "q#1", "q#2"]], sent
    assert run.skipped_cells[0] == (0, "memory")


def test_at_the_cap_a_death_in_a_call_after_a_hoarder_gives_the_function_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r26, F2: with no attempt left to leave the hoarder out, the run came back as it was, and the
    crashed function kept its earlier answers, which a death without a hoarder takes from it."""
    hoarders = tuple(CellEnd(i, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=True)
                     for i in range(MAX_RESTARTS + 1))
    _scripted(monkeypatch, deadly={"q#2"}, cells=hoarders)
    run = run_submission(_job(_calls("g", "f", "g"), cells=MAX_RESTARTS + 1), Limits())
    assert run.attempts == MAX_RESTARTS + 1 and len(run.skipped_cells) == MAX_RESTARTS, run.skipped_cells
    statuses = {end.call_id: end.status for end in run.calls}
    assert statuses == {"q#0": CallStatus.NOT_RUN_AFTER_DEATH, "q#1": CallStatus.OK, "q#2": CallStatus.DIED}, statuses


@pytest.mark.parametrize("freed", [True, False])
@pytest.mark.parametrize("after", ["cell_out_of_memory", "call_out_of_memory", "death_in_a_call"])
def test_a_failure_after_a_cell_freed_a_hoarders_memory_is_not_laid_at_the_hoarder(
        monkeypatch: pytest.MonkeyPatch, after: str, freed: bool) -> None:
    """Grader review r31, F2: cell 0 kept its memory and cell 1 freed it (``del``), so cell 2 and the calls
    started below the limit (as the runner measures it); a step that then runs short of memory, or dies, does so
    on its own, and a rerun without cell 0 could only lose its definitions. Unfreed, cell 0 is left out first."""
    hoarder = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=True)
    later = (CellEnd(2, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT)
             if after == "cell_out_of_memory" else CellEnd(2, CellStatus.OK, ended=StepEnd.REPORTED))
    sent = _scripted(monkeypatch, deadly={"q#1"} if after == "death_in_a_call" else set(),
                     cells=(hoarder, CellEnd(1, CellStatus.OK, ended=StepEnd.REPORTED), later),
                     memory_errors=frozenset({"q#1"}) if after == "call_out_of_memory" else frozenset(),
                     frees=frozenset({1}) if freed else frozenset())
    run = run_submission(_job(_calls("f", "g"), cells=3), Limits())
    if not freed:
        assert run.skipped_cells == [(0, "memory")] and sent == [["q#0", "q#1"], ["q#0", "q#1"]], (sent, run)
        return
    assert not run.skipped_cells and sent == [["q#0", "q#1"]], (sent, run)
    expected = {"cell_out_of_memory": CallStatus.OK, "call_out_of_memory": CallStatus.OUT_OF_MEMORY,
                "death_in_a_call": CallStatus.NOT_RUN_AFTER_DEATH}[after]
    assert {end.call_id: end.status for end in run.calls} == {"q#0": CallStatus.OK, "q#1": expected}, run.calls


@pytest.mark.parametrize("stop", ["cell", "oom_kill", "no_report", "no_report_oom_kill"])
def test_a_death_after_a_cell_freed_a_hoarders_memory_is_not_laid_at_the_hoarder(stop: str) -> None:
    """Grader review r31, F2: once a cell started below the limit, the memory cell 0 kept was gone; a death in a
    later cell is that cell's, and an OOM kill (in a run that finished or not) or a runner that ended without its
    last report is no evidence against cell 0 (r33, F3). With no cell between them that started below it, cell 0
    goes first."""
    hoarder = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=True)
    cells = [hoarder, CellEnd(1, CellStatus.OK, ended=StepEnd.REPORTED), CellEnd(2, CellStatus.OK, ended=StepEnd.REPORTED)]
    done: Done | None = Done()
    if stop == "cell":
        cells[2], done = CellEnd(2, CellStatus.DIED, ended=StepEnd.EXITED), Done(stopped_cell=2)
    elif stop.startswith("no_report"):
        done = None
    for frees, culprit in [(frozenset({1}), (2, "died") if stop == "cell" else None), (frozenset(), (0, "memory"))]:
        measured, _ = _as_measured(cells, frees=frees)
        run = RawRun(ready=True, cells=measured, done=done, oom_kills=int(stop.endswith("oom_kill")))
        assert reruns._culprit_cell(run) == culprit, (frees, measured)


def test_a_call_never_sent_or_relayed_as_malformed_does_not_release_a_hoarders_memory() -> None:
    """Grader review r32, F1 and F2: a call answered ``not_run`` (its function timed out earlier in the question)
    was never measured, and a call the runner relays as malformed keeps what it measured; neither may read as a
    step that started below the limit, or a hoarder before them escapes a later call's failure for memory."""
    from coursekit.grading.runner import relayable

    hoarder = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=True)
    nan_result = CallEnd("q#2", CallStatus.OK, value=float("nan"), ended=StepEnd.REPORTED, started_near_limit=True)
    malformed = relayable(nan_result)
    assert (malformed.status, malformed.started_near_limit, malformed.value) == (CallStatus.MALFORMED, True, None)
    calls = [CallEnd("q#0", CallStatus.TIMEOUT, ended=StepEnd.TIME_LIMIT, cpu_ms=5_000, started_near_limit=True),
             CallEnd("q#1", CallStatus.NOT_RUN), malformed,
             CallEnd("r#3", CallStatus.OUT_OF_MEMORY, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT,
                     started_near_limit=True)]
    run = RawRun(ready=True, cells=[hoarder], calls=calls, done=Done())
    assert reruns._culprit_cell(run) == (0, "memory")


def test_a_stopped_run_whose_hoarder_was_released_judges_later_cells_as_without_a_hoarder() -> None:
    """Grader review r32, F3: a runner that ended without its last report after cell 0's kept memory was freed
    (cell 1) and two later cells ran out: the last of them goes, as in a run with no hoarder, not nothing."""
    hoarder = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=True)
    at_limit = [CellEnd(i, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT) for i in (2, 3)]
    cells, _ = _as_measured([hoarder, CellEnd(1, CellStatus.OK, ended=StepEnd.REPORTED), *at_limit], frees=frozenset({1}))
    assert reruns._culprit_cell(RawRun(ready=True, cells=cells, oom_kills=1)) == (3, "memory")
    assert reruns._culprit_cell(RawRun(ready=True, cells=cells[1:], oom_kills=1)) == (3, "memory")


@pytest.mark.parametrize("stop", ["adapters", "call", "no_report"])
def test_a_hoarder_that_starved_a_cell_before_its_memory_was_freed_is_left_out_of_a_stopped_run(stop: str) -> None:
    """Grader review r33, F1: cell 0 kept its memory, cell 1 then ran out of it (it started near the limit), and
    only then did cell 2 free it; a run stopped after that (in the adapters, a call, or with no last report) leaves
    cell 0 out, as a run that finished would, so that cell 1's answer can run with the memory it needed."""
    hoarder = CellEnd(0, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=True)
    starved = CellEnd(1, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT)
    cells, calls = _as_measured([hoarder, starved, CellEnd(2, CellStatus.OK, ended=StepEnd.REPORTED),
                                 CellEnd(3, CellStatus.OK, ended=StepEnd.REPORTED)],
                                [CallEnd("q#0", CallStatus.DIED, ended=StepEnd.EXITED)] if stop == "call" else [],
                                frees=frozenset({2}))
    done = {"adapters": Done(stopped_in_adapter=True), "call": Done(stopped_call="q#0"), "no_report": None}[stop]
    run = RawRun(ready=True, cells=cells, calls=calls, done=done, cells_done=stop != "no_report")
    assert reruns._culprit_cell(run) == (0, "memory")


@pytest.mark.parametrize("stop", ["finished", "no_report", "call", "cell"])
def test_a_later_hoarder_that_started_within_two_margins_still_ends_the_earlier_ones_window(stop: str) -> None:
    """Grader review r34, F1: cell 2 kept memory of its own (it started more than one margin below the limit) but
    within the two margins by which a release is measured; the earlier hoarder's memory was gone all the same, so
    a failure after cell 2 is laid at cell 2 in every kind of run, as before the release rule."""
    def at_limit(index: int, held: bool = False, near: bool = True) -> CellEnd:
        return CellEnd(index, CellStatus.ERROR, ename="MemoryError", ended=StepEnd.MEMORY_LIMIT, memory_held=held,
                       started_near_limit=near)

    cells = [at_limit(0, held=True, near=False), CellEnd(1, CellStatus.OK, ended=StepEnd.REPORTED,
                                                         started_near_limit=True),
             at_limit(2, held=True), at_limit(3)]
    done = {"finished": Done(), "no_report": None, "call": Done(stopped_call="q#0"), "cell": Done(stopped_cell=4)}[stop]
    calls = [CallEnd("q#0", CallStatus.DIED, ended=StepEnd.EXITED, started_near_limit=True)] if stop == "call" else []
    if stop == "cell":
        cells.append(CellEnd(4, CellStatus.DIED, ended=StepEnd.EXITED, started_near_limit=True))
    run = RawRun(ready=True, cells=cells, calls=calls, done=done)
    assert reruns._culprit_cell(run) == (2, "memory")
    if stop == "finished":
        # Cell 2's own failure for memory is no evidence against cell 0: its window ended where cell 2 began (r35, F1).
        passed = dataclasses.replace(cells[3], status=CellStatus.OK, ename="", ended=StepEnd.REPORTED)
        assert reruns._culprit_cell(dataclasses.replace(run, cells=[*cells[:3], passed])) is None


def test_every_attempts_fork_server_note_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review r47, 3 and r49, 1: an attempt whose runner bubblewrap had to start is logged, and the submission's
    later attempts do not try the server again."""
    attempts: list[int] = []
    asked: list[bool] = []

    def run_job(job: Job, limits: Limits, **budgets: Any) -> RawRun:
        attempts.append(len(attempts) + 1)
        asked.append(budgets["use_fork_server"])
        if len(attempts) == 1:
            return RawRun(ready=True, calls=[CallEnd("q#0", CallStatus.DIED, ended=StepEnd.EXITED)],
                          done=Done(stopped_call="q#0"), fork_server_note="the fork server did not start the runner (x)")
        return RawRun(ready=True, calls=[], done=Done())

    monkeypatch.setattr(reruns, "run_job", run_job)
    run = run_submission(_job(_calls("f", "g")), Limits())
    assert attempts == [1, 2] and asked == [True, False], "after a failed start, the server is not asked again"
    assert run.fork_server_note == "attempt 1: the fork server did not start the runner (x)"
