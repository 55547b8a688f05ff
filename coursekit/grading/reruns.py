"""The rerun policy: when the kernel dies in a cell or a call, run the submission again without it.

A kernel that dies (``os._exit``, a segfault, the memory cgroup's OOM killer)
or has to be killed (it ignored its time limit) in one cell would otherwise
lose every later answer, and a cell that hoards memory up to the limit starves
every later one. Like an instructor restarting a kernel and skipping the
culprit, the grader runs the submission again from scratch, in a fresh
sandbox, without that cell, at most :data:`MAX_RESTARTS` times. When the
kernel dies or stalls in a graded call, every call of that function is
answered without being made on the next attempt, in every question that grades
it (unless it died after a cell that kept its memory, while that memory was
still taken or after it had starved a step: that cell is left out first; a
call that would not stop is given up all the same, and such a cell left out in
the same rerun, which then, being without a cell, makes every call
not given up on again); when every call is then answered or given up (given
up, where a cell is left out with the function), no rerun could change a
score and none is made. A kernel that dies while the
spec's adapters run is not rerun, unless a cell before kept its memory (as
above): that cell is left out.

Time: every attempt shares the hidden calls' budget
(:attr:`Limits.calls_wall_s`). A rerun without a cell shares the cells'
budget (:attr:`Limits.wall_s`) with the attempt before it: the culprit's cost
is the notebook's own. A rerun without a graded function alone gets the cells'
budget afresh: its cells are the ones that already fitted it, and charging
them again would let one crash in a hidden case cost every question (grader
review r11, F3). Should such a rerun's cells run out of their budget all the
same, the submission keeps the calls the attempt before it made, which ran in
the same cells' names; only the calls it had not made yet are lost. A rerun
without a graded function alone is sent only the calls no attempt has answered yet:
a call answered before keeps its result, so the calls' shared budget pays for
each such call once, and a slow but correct function before the crash cannot
starve a later one (grader review r13, N2). A rerun without a cell (and
perhaps a function too) is sent every call not given up on, answered before or not: its calls run in other
names, so no earlier answer stands (nor is one kept should the rerun run out
of its cells' budget), and what the calls cost before is paid out of the same
shared budget, like the culprit's cells (r18, F2; r19, F1). So a submission takes at most :attr:`Limits.worst_wall_s`,
and :attr:`Limits.total_wall_s` when no graded call crashes or stalls; the run
reports the total time of every attempt.

Every decision rests on the runner's events and measurements (trusted, see
:mod:`~coursekit.grading.runner`) and the sandbox's memory cgroup, never on
anything the student's code wrote alone (where the kernel's word is used, as
for the kind of a failure measured at the limit after a hoarder, it can only
cost the student's own cell): a cell is a hoarder when the runner
measured the kernel's address space rising to its limit in it
(:attr:`~coursekit.grading.protocol.StepEnd.MEMORY_LIMIT`), whatever
exception the cell raised, *and* the memory stayed taken: the address space
was still near the limit when the cell ended
(:attr:`~coursekit.grading.protocol.CellEnd.memory_held`), or, in a run whose
runner ended without its last report before its cells were done, a later cell
failed for memory too or the memory cgroup's OOM killer killed a process. A
graded call that raised a ``MemoryError`` in a live kernel is no evidence
against an earlier cell that did not keep its memory: it failed on its own, nothing after it was lost, and a
rerun without the cell could only lose that cell's definitions (grader review
r16, F1: an a6 answer cell ending in its own ``MemoryError`` lost every
question when the hidden memory cases made a call run out too); nor, in a
run that finished or got as far as its graded calls or adapters, is a later
cell's, nor an OOM kill (r17, F1; r18, F1; r23, F2: the call it killed has its
function given up). A cell that held its memory is left out before any
that did not, so a cell that tried something too big and was not near the
limit when it ended (its memory freed as the exception unwound) keeps its
place, and its definitions, whenever a later cell is the one that kept the
memory. In a run that finished, a cell that kept its memory is left out only
when a step after it ran short of memory too: a later cell or a graded call
that failed for memory (``MemoryError`` or PyTorch's allocation error) and was
measured at the limit, or an OOM kill. A step that failed otherwise while the
memory was held is at the limit too (it started there), so it is no such
evidence (r29, F1); nor is a failure after a later cell that kept memory of
its own, which could take it only once the earlier memory was freed: that
failure is the later cell's (r30, F2). Otherwise the cell starved nothing, a
rerun without it could only lose its definitions, and it stays, named in the
run's notes (grader review r28, F2). In every kind of run, a cell's kept
memory counts against it only for what happened before a step started well
below the limit, as the runner measures each step's start
(:attr:`~coursekit.grading.protocol.CellEnd.started_near_limit`), or before a
later hoarder: a cell that freed the memory (``del``) or a later hoarder shows
it was gone, and a failure or death after that is not the earlier cell's (r31,
F2; r34, F1).
"""

from __future__ import annotations

import dataclasses
import time

from coursekit.grading.limits import MAX_RESTARTS, Limits
from coursekit.grading.protocol import CallEnd, CallStatus, CellEnd, CellStatus, StepEnd
from coursekit.grading.result_budget import wire_size
from coursekit.grading.sandbox import Job, RawRun, run_job

__all__ = ["DIED", "MAX_RESTARTS", "MEMORY", "TIMEOUT", "run_submission"]
#: why a cell is left out of the next attempt, as the reports say it.
DIED, MEMORY, TIMEOUT = "died", "memory", "timeout"


def _culprit_cell(run: RawRun) -> tuple[int, str] | None:
    """The cell to leave out next time, and why (``None``: no cell is to blame).

    Of the cells measured at the memory limit, the last that held its memory
    before the failure, and whose memory was still taken then or that starved a
    step before it was freed (no step after it
    started well below the limit, or a later hoarder: a cell that freed the memory
    shows it gone, see :func:`_released_at`; grader review r30, F2; r31, F1 and
    F2), starved what came after it: it goes first (in a run that finished, only when a step after
    it ran short of memory, see :func:`_short_of_memory_after`), before a cell the kernel then
    died in (a cell that would not stop is its own culprit, left out alone: the
    hoarder, if it keeps its memory again, goes on the next attempt; a graded
    call that would not stop is its own culprit too, and there the hoarder is
    left out in the same rerun: see :func:`run_submission`). Where none held it
    still (in a run that stopped, one whose memory was released before anything
    ran short of it does not count), the cell the kernel died in is the culprit;
    short of that, a cell at the limit counts only when the runner ended without its last report before its cells were done and a
    cell after it failed for memory too or the OOM killer killed a process
    (see :func:`_memory_failed_after`), the last such cell first, so an earlier
    cell that was not near the limit when it ended keeps its place (and its
    answer). A run that finished or got past its cells is never rerun on that
    evidence: each step that failed for memory failed on its own, and a rerun
    without an earlier cell could only lose that cell's definitions (grader
    review r17, F1; r18, F1; r23, F2).
    """
    done = run.done
    at_limit = [(position, cell) for position, cell in enumerate(run.cells) if cell.ended is StepEnd.MEMORY_LIMIT]
    # Positions in run.cells of the cells that kept their memory.
    held = [position for position, cell in at_limit if cell.memory_held]
    # In a run that stopped, the hoarders that may have caused it: those whose memory was still taken, and those
    # whose memory was released only after a step had run short of it (r33, F1).
    holding = [position for position in held
               if _released_at(run, position) is None or _short_of_memory_after(run, position)]
    if done is not None and done.stopped_cell is not None:
        last = run.cells[-1] if run.cells else None
        if last is not None and last.status is CellStatus.STALLED:
            return done.stopped_cell, TIMEOUT
        # A kernel that died after a cell kept the memory: that cell goes first (grader review r20, F2). The
        # dying cell has no report, so it is never a hoarder itself; it is left out of the list all the same.
        hoarders = [position for position in holding if run.cells[position].index != done.stopped_cell]
        if hoarders:
            return run.cells[hoarders[-1]].index, MEMORY
        return done.stopped_cell, MEMORY if run.oom_kills else DIED
    if holding and not run.finished:
        return run.cells[holding[-1]].index, MEMORY
    if held and run.finished:
        # In a run that finished, a hoarder starved nothing unless a step after it ran short of memory too: a
        # rerun without it could then only lose its definitions (grader review r28, F2). Only the steps before
        # its memory was released count: a later cell that kept memory of its own started a margin below the
        # limit, so the earlier one's was gone by then (r30, F2), as it is after a cell that freed it (r31, F2).
        # The last hoarder with such a step goes first, as in a run that stopped (r34, F1).
        for position in reversed(held):
            if _short_of_memory_after(run, position):
                return run.cells[position].index, MEMORY
        return None
    if run.finished:
        return None
    # A run that stopped after every hoarder's memory was released, before anything ran short of it: the cells at
    # the limit after the last release are judged as in a run with no hoarder (r32, F3; r33, F3).
    after = max((position + 1 + _released_at(run, position) for position in held), default=0)
    followed = [cell for position, cell in at_limit if position >= after and _memory_failed_after(run, position)]
    return (followed[-1].index, MEMORY) if followed else None


def _released_at(run: RawRun, position: int) -> int | None:
    """Where the memory the ``position``-th cell kept was found released: the first step after it that started
    below the memory limit, as its place among the steps after that cell (cells, then this attempt's graded
    calls), or ``None`` when every step after it started near the limit (its memory was taken to the end).

    A cell that frees what an earlier one kept (``del``), or that keeps memory of its own (it started more than
    a margin below the limit, see :attr:`~coursekit.grading.protocol.CellEnd.memory_held`, however near it was
    by :data:`~coursekit.grading.runner.RELEASE_MARGINS`), marks the earlier cell's memory as gone: a failure
    after it is not the earlier cell's doing (grader review r30, F2; r31, F2; r34, F1). A step whose
    event is missing (a line the grader dropped) or that was never sent (a call answered ``not_run`` after its
    function timed out in the question) released nothing that the runner measured (r32, F1).

    "Below the limit" means farther from it than twice the margin by which a step counts as having reached it
    (:func:`~coursekit.grading.runner.started_near_memory_limit`; an eighth of the limit, at least 128 MiB), so
    a ``del`` of a few tens of MiB after a cell that ended just inside the margin is no release (r33, F2), while
    freeing more than that is one, even if the cell still holds the rest (r34, F2: the events carry no sizes);
    a cell that frees the memory and takes it again before it ends is none either (r32, F5: the runner reads
    each step's size as it is sent; what happens between two readings is not known).

    Example:
        >>> hoarder = CellEnd(0, CellStatus.ERROR, ended=StepEnd.MEMORY_LIMIT, memory_held=True)
        >>> freed = CellEnd(1, CellStatus.OK, ended=StepEnd.REPORTED, started_near_limit=True)
        >>> after = CellEnd(2, CellStatus.OK, ended=StepEnd.REPORTED)
        >>> _released_at(RawRun(cells=[hoarder, freed, after]), 0)
        1
        >>> _released_at(RawRun(cells=[hoarder, freed]), 0) is None
        True
    """
    steps = [*run.cells[position + 1:], *run.calls]
    return next((place for place, step in enumerate(steps) if step.ended is not StepEnd.NOT_RUN and (
        not step.started_near_limit or isinstance(step, CellEnd) and step.memory_held)), None)


def _short_of_memory_after(run: RawRun, position: int) -> bool:
    """Whether a step after the ``position``-th cell ran short of memory while that cell's memory was still
    taken (before :func:`_released_at`): a cell or a graded call of this attempt that failed for memory and
    was measured at the limit, or, when its memory was taken to the end, a process the memory cgroup's OOM
    killer killed (the cgroup does not say in which step). Both halves count: after a hoarder every failed step
    is measured at the limit (it started there), and a failure's kind is what the kernel reports, so a
    student's own ``raise MemoryError`` there counts too, which can only cost that student's cell (grader
    review r29, F1 and F3; r30, F4). The calls an earlier attempt answered are not this attempt's evidence."""
    released = _released_at(run, position)
    steps = [*run.cells[position + 1:], *run.calls][:released]
    cells = len(run.cells) - position - 1
    if any(step.ended is StepEnd.MEMORY_LIMIT and _failed_for_memory(step.ename, step.evalue)
           for step in steps[:cells]):
        return True
    if any(end.ended is StepEnd.MEMORY_LIMIT and end.status is CallStatus.OUT_OF_MEMORY for end in steps[cells:]):
        return True
    return released is None and run.oom_kills > 0


def _failed_for_memory(ename: str, evalue: str) -> bool:
    """Whether a cell's exception says an allocation failed: Python's ``MemoryError`` or PyTorch's allocator (as
    a graded call's status says, :func:`coursekit.grading.graded_call._out_of_memory`).

    Example:
        >>> _failed_for_memory("RuntimeError", "DefaultCPUAllocator: can't allocate memory: you tried ...")
        True
        >>> _failed_for_memory("AssertionError", "")
        False
    """
    return ename == "MemoryError" or (ename == "RuntimeError" and "can't allocate memory" in evalue)


def _memory_failed_after(run: RawRun, position: int) -> bool:
    """Whether, in a run that had not got past its cells, a cell after the ``position``-th failed for memory (as
    measured) or the cgroup's OOM killer killed a process. A graded call's own ``MemoryError`` never counts (see
    the module docstring), and nothing does once the run got past its cells (the runner said so, or a call or the
    adapters ran): every cell had run, as in a run that finished (grader review r18, F1; r19, F5; r20, F4; r23,
    F2: an OOM kill in a call gives up the call's function, as any death there does)."""
    done = run.done
    in_the_calls = (run.cells_done or bool(run.calls)
                    or done is not None and (done.stopped_call is not None or done.stopped_in_adapter))
    if in_the_calls:
        return False
    return any(cell.ended is StepEnd.MEMORY_LIMIT for cell in run.cells[position + 1:]) or run.oom_kills > 0


def run_submission(job: Job, limits: Limits, *, use_sandbox: bool | None = None,
                   use_cgroups: bool | None = None) -> RawRun:
    """Run ``job``; when its kernel dies in a cell or a call, or a cell runs out of memory, try again without it.

    Args:
        job: the submission's work.
        limits: the resource limits; ``limits.calls_wall_s`` is shared by all attempts, ``limits.wall_s``
            by the attempts since the last rerun without a graded function alone (see the module docstring).
        use_sandbox, use_cgroups: see :func:`~coursekit.grading.sandbox.run_job`.

    Returns:
        The last attempt's run, with ``skipped_cells``, ``attempts``, the total
        ``seconds``, ``cells_seconds`` and ``calls_seconds``, and an event for every call it was not sent: the
        earlier attempt's event of a call answered before, a ``not_run_after_*`` one for each call of a function
        given up on (then, when no call is left to send, the attempt that gave up, marked finished); or, when a
        rerun without a graded function alone ran out of its cells' budget, the attempt before it, the same way (see
        :func:`_keeping_calls_made`), with ``kept_from_earlier`` set to ``"cells"`` and ``kept_calls`` to the
        number of calls it kept. ``oom_kills``, ``protocol_errors`` and ``ignored_reports`` count every
        attempt's; a finished rerun with no stderr of its own carries the ``diagnostics`` and ``returncode`` of
        the last attempt that was stopped.
    """
    started = time.monotonic()
    cells_left, calls_left = limits.wall_s, limits.calls_wall_s
    cells_spent = calls_spent = 0.0
    cells, calls = list(job.cells), list(job.calls)
    skipped: list[tuple[int, str]] = []
    given_up: list[CallEnd] = []
    # Calls an earlier attempt answered, of functions not given up on: a rerun is not sent them again.
    answered: list[CallEnd] = []
    # The last attempt that got as far as its calls and was stopped in one: what a rerun would otherwise lose.
    made_calls: RawRun | None = None
    oom_kills = protocol_errors = ignored_reports = 0
    fork_server_notes: list[str] = []
    stopped_evidence: tuple[str, int | None] | None = None
    for attempt in range(1, MAX_RESTARTS + 2):
        # The results kept from earlier attempts count against this one's share (a too_large event holds none).
        kept_bytes = sum(wire_size(end.value) + wire_size(end.grads) for end in answered
                         if end.status is not CallStatus.TOO_LARGE)
        # After one failed start through the fork server, the submission's later attempts do not try it again.
        run = run_job(dataclasses.replace(job, cells=cells, calls=calls, result_bytes=job.result_bytes - kept_bytes),
                      limits, cells_s=cells_left, calls_s=calls_left, use_sandbox=use_sandbox,
                      use_cgroups=use_cgroups, use_fork_server=not fork_server_notes)
        cells_left -= run.cells_seconds
        calls_left -= run.calls_seconds
        cells_spent += run.cells_seconds
        calls_spent += run.calls_seconds
        # Decided on this attempt's own events and measurements, before earlier attempts' are added (r14, F3).
        stopped_call = run.done.stopped_call if run.done is not None else None
        culprit = _culprit_cell(run)
        own_calls = list(run.calls)
        # The OOM killer's kills and the runner's malformed events of every attempt: one in a call followed by a
        # rerun still counts (r15, F2; r16, F3), and the diagnostics of the last attempt that was stopped.
        oom_kills += run.oom_kills
        protocol_errors += run.protocol_errors
        # Kept on the run, not its Done: an attempt killed at the wall clock has none (r18, F6).
        ignored_reports += run.ignored_reports
        if run.done is not None and (run.done.stopped_cell is not None or run.done.stopped_call is not None
                                     or run.done.stopped_in_adapter):
            stopped_evidence = (run.diagnostics, run.returncode)
        run.attempts, run.skipped_cells, run.oom_kills = attempt, list(skipped), oom_kills
        run.protocol_errors, run.ignored_reports = protocol_errors, ignored_reports
        if run.fork_server_note:
            fork_server_notes.append(f"attempt {attempt}: {run.fork_server_note}")
        run.fork_server_note = "; ".join(fork_server_notes)
        # A finished rerun's own stderr, if it wrote any, explains its own events (r17, F4).
        if stopped_evidence is not None and run.finished and not run.diagnostics.strip():
            run.diagnostics, run.returncode = stopped_evidence
        run.calls += answered + given_up
        run.seconds = time.monotonic() - started
        run.cells_seconds, run.calls_seconds = cells_spent, calls_spent
        if made_calls is not None and run.wall_killed_in == "cells":
            return _keeping_calls_made(made_calls, given_up, run)
        if run.wall_killed or run.unresponsive:
            return run
        # The call's own event may be missing (a line the grader dropped): then it died.
        ended = next((e for e in own_calls if e.call_id == stopped_call), None)
        stalled = ended is not None and ended.status is CallStatus.STALLED
        # A call can die because an earlier cell hoarded the memory: leave that cell out first. A call that would
        # not stop is its own culprit, as a cell is: its function is given up, and a cell that held its memory
        # is left out in the same rerun (grader review r22, F1; r23, F1).
        # At the cap no cell can be left out: a death in a call after a hoarder gives its function up all the same,
        # as any death at the cap does (r26, F2).
        if stopped_call is not None and (culprit is None or stalled or attempt > MAX_RESTARTS):
            why = CallStatus.NOT_RUN_AFTER_STALL if stalled else CallStatus.NOT_RUN_AFTER_DEATH
            name = next((call["name"] for call in calls if call["id"] == stopped_call), None)
            if name is None:
                return run
            # Every call of the function fails, in every question, answered by an earlier attempt or not, so a
            # question's score does not depend on which function crashed first (grader review r14, F2).
            dropped = {call["id"] for call in job.calls if call["name"] == name}
            given_up += [CallEnd(call["id"], why) for call in job.calls if call["id"] in dropped]
            kept = [end for end in answered + own_calls if end.call_id not in dropped]
            if attempt > MAX_RESTARTS:
                # No attempt left: the function is given up on all the same (r15, F3), but the call that stopped
                # the kernel keeps its own event, so a stall still reads as one (r16, F2); the calls not made fail.
                own_end = [end for end in own_calls if end.call_id == stopped_call]
                rest = [end for end in given_up if end.call_id != stopped_call]
                return dataclasses.replace(run, calls=kept + own_end + rest)
            # Without a cell left out, the answers stand; with one, every call not given up on is made again
            # (below, as for a cell's own culprit).
            settled = {end.call_id for end in (kept if culprit is None else []) + given_up}
            if not any(call["id"] not in settled for call in (calls if culprit is None else job.calls)):
                # Every call not given up is answered (with a cell to leave out, none is: every call is then
                # made again), so a rerun would only run the cells again and could change no score (r14, F1; r25, F4).
                done = dataclasses.replace(run.done, stopped_call=None)
                return dataclasses.replace(run, calls=kept + given_up, done=done)
            if culprit is None:
                # The cells' budget starts afresh only for a rerun without a function alone: one that leaves a cell
                # out too shares it, as any rerun without a cell does (r24, F1).
                answered = kept
                calls = [call for call in calls if call["id"] not in settled]
                made_calls, cells_left = run, limits.wall_s
                continue
            # A cell to leave out as well: on to the code below, as for a cell's own culprit.
        elif culprit is None or attempt > MAX_RESTARTS:
            return run
        # Leave the culprit cell out. Without it the calls run in other names: no earlier answer stands, not even
        # as the fallback of a rerun that runs out of its cells' budget, and every call not given up on is made
        # again, out of the same shared budget (grader review r18, F2; r19, F1).
        # Some call is left to make here, or the job has none: a rerun that would have none left is not made (the
        # graded-call branch above returns before it comes here, r25, F4; r28, F5).
        abandoned = {end.call_id for end in given_up}
        skipped.append(culprit)
        cells = [cell for cell in cells if cell["index"] != culprit[0]]
        answered, made_calls = [], None
        calls = [call for call in job.calls if call["id"] not in abandoned]
    return run


def _keeping_calls_made(made: RawRun, given_up: list[CallEnd], last: RawRun) -> RawRun:
    """The submission's run when ``last``, a rerun that left out only a graded function, ran out of its cells'
    budget.

    ``made`` is the attempt before it that got as far as its calls: its cells
    all ran, and the calls it made ran in their names, so they keep their
    results, as they would have on a rerun that finished. Each call given up
    on (``given_up``) is answered as not made again, but the call that stopped
    ``made`` keeps its own event (it died or stalled there and then); the calls
    ``made`` never reached have no event and fail. The attempts and times
    are ``last``'s totals.

    Example:
        >>> from coursekit.grading.protocol import Done
        >>> made = RawRun(calls=[CallEnd("q#0", CallStatus.OK), CallEnd("q#1", CallStatus.OK),
        ...                      CallEnd("q#2", CallStatus.DIED)], done=Done(stopped_call="q#2"))
        >>> given_up = [CallEnd(f"q#{i}", CallStatus.NOT_RUN_AFTER_DEATH) for i in (1, 2, 3)]
        >>> kept = _keeping_calls_made(made, given_up, RawRun(attempts=2, wall_killed=True, wall_killed_in="cells"))
        >>> [(end.call_id, end.status.value) for end in kept.calls]
        [('q#0', 'ok'), ('q#2', 'died'), ('q#1', 'not_run_after_death'), ('q#3', 'not_run_after_death')]
        >>> kept.attempts, kept.wall_killed, kept.kept_from_earlier, kept.kept_calls
        (2, False, 'cells', 1)
        >>> died_first = RawRun(calls=[CallEnd("q#0", CallStatus.DIED)], done=Done(stopped_call="q#0"))
        >>> _keeping_calls_made(died_first, given_up[:1], RawRun(attempts=2)).kept_calls   # nothing kept
        0
    """
    stopped = made.done.stopped_call if made.done is not None else None
    own = {end.call_id for end in made.calls if end.call_id == stopped}
    replaced = {end.call_id for end in given_up} - own
    calls = [end for end in made.calls if end.call_id not in replaced]
    kept = sum(end.call_id not in own for end in calls)
    calls += [end for end in given_up if end.call_id in replaced]
    return dataclasses.replace(made, calls=calls, attempts=last.attempts, seconds=last.seconds,
                               cells_seconds=last.cells_seconds, calls_seconds=last.calls_seconds,
                               oom_kills=last.oom_kills, protocol_errors=last.protocol_errors,
                               ignored_reports=last.ignored_reports, fork_server_note=last.fork_server_note,
                               kept_from_earlier="cells",
                               kept_calls=kept)
