"""A submission's outcome and notes, from what its run and its notebook show.

The outcome is the first rule of :data:`RULES` whose condition holds, else
``graded``: one table, read top to bottom, to find why a case ended as it did.
The notes list everything worth telling the instructor, whatever the outcome.

Which limit a run met is read from the runner's measurements
(:class:`~coursekit.grading.protocol.StepEnd`), the sandbox's memory cgroup
and the grader's own clock, never from what the student's code reported: a
cell's exception name is the student's choice (``raise MemoryError``, a
class named ``CellTimeout``). One exception, ranked below every trusted rule:
a graded call that the kernel says ran out of memory (a single allocation
past an address-space limit leaves no trace outside the process) gives a
finished, untampered run ``memory_limit``; that call fails either way.
Since a call's time limit counts only when the kernel reports the timeout and
the runner measured it (:func:`~coursekit.grading.protocol.stops_function`),
student code that catches its ``CellTimeout`` and raises something else turns
its own timeout into an ordinary failed case: the case is lost all the same,
and the function's later cases run within the same calls budget, as under
stock autograde, which applies the same rule.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from coursekit.grading.magics import cell_statements
from coursekit.grading.notebook import PreparedNotebook
from coursekit.grading.protocol import CallStatus, CellStatus, StepEnd
from coursekit.grading.sandbox import RawRun
from coursekit.grading.spec import Question, ValueQuestion
from coursekit.grading.verdicts import QuestionResult

OUTCOMES = (
    "graded",
    "uses_reference",
    "timeout",
    "memory_limit",
    "kernel_died",
    "invalid_notebook",
    "missing_notebook",
    "missing_cells",
    "tampered_cells",
    "too_large",
    "grader_error",
)
#: call statuses that only the runner or the grader give (the kernel cannot claim them).
_TIMEOUT_CALLS = {CallStatus.NOT_RUN, CallStatus.STALLED, CallStatus.NOT_RUN_AFTER_STALL}
#: how the runner saw a step end at a time limit, or at a memory limit.
_TIME_ENDS = {StepEnd.TIME_LIMIT, StepEnd.KILLED}
_MEMORY_ENDS = {StepEnd.MEMORY_LIMIT}
_DEATH_CALLS = {CallStatus.DIED, CallStatus.NOT_RUN_AFTER_DEATH}
_SKIPPED = {
    "memory": "the process ran out of memory in",
    "timeout": "the time limit was ignored by",
    "died": "the process died in",
}
#: what an answer cell did that made the grader skip it, as its question's feedback says it.
_SKIPPED_ANSWER = {
    "memory": "ran out of memory",
    "timeout": "would not stop at its time limit",
    "died": "crashed the process",
}


@dataclass(frozen=True)
class Evidence:
    """The facts the outcome rules read (see :data:`RULES`)."""

    uses_reference: bool
    wall_killed: bool
    runner_failed: bool
    stalled: bool
    finished: bool
    memory: bool
    timed_out: bool
    died: bool
    missing: bool
    tampered: bool
    claimed_memory: bool = False

    @classmethod
    def of(cls, run: RawRun, prepared: PreparedNotebook, results: list[QuestionResult]) -> "Evidence":
        """Gather the evidence from a run (after every attempt), its notebook and its verdicts."""
        ends = {cell.ended for cell in run.cells} | {call.ended for call in run.calls}
        calls = {call.status for call in run.calls}
        skipped = {why for _index, why in run.skipped_cells}
        last_step = run.cells[-1].status if run.cells else None
        stalled_call = any(call.status is CallStatus.STALLED for call in run.calls)
        return cls(
            uses_reference=any(r.uses_reference for r in results),
            wall_killed=run.wall_killed,
            runner_failed=not run.ready or run.protocol_errors > 0,
            stalled=run.unresponsive or not run.finished and (last_step is CellStatus.STALLED or stalled_call),
            finished=run.finished,
            memory=bool(ends & _MEMORY_ENDS) or "memory" in skipped or run.oom_kills > 0,
            timed_out=bool(ends & _TIME_ENDS) or bool(calls & _TIMEOUT_CALLS) or "timeout" in skipped,
            died=bool(run.skipped_cells) or bool(calls & _DEATH_CALLS),
            missing=bool(prepared.missing),
            tampered=bool(prepared.tampered),
            claimed_memory=CallStatus.OUT_OF_MEMORY in calls,
        )


@dataclass(frozen=True)
class Rule:
    """An outcome, the condition under which it is given, and the note that explains it."""

    outcome: str
    applies: Callable[[Evidence], bool]
    note: str = ""


#: read top to bottom; the first rule that applies decides.
RULES = (
    Rule("uses_reference", lambda e: e.uses_reference,
         "an answer reaches a reference that the sandbox withholds: its question earns nothing"),
    Rule("timeout", lambda e: e.wall_killed, "killed at a per-submission time limit"),
    Rule("kernel_died", lambda e: e.runner_failed,
         "the sandbox failed to run the notebook: the end of the runner's stderr is in the grader's log and in this "
         "submission's JSON report (grade-reports/<assignment>/<student>.json, `diagnostics`)"),
    Rule("timeout", lambda e: e.stalled, "killed: a cell or a graded call would not stop at its time limit"),
    Rule("memory_limit", lambda e: not e.finished and e.memory, "the process ended early"),
    Rule("kernel_died", lambda e: not e.finished, "the process ended early"),
    # The grader's own reading of the notebook outranks every limit a finished run met.
    Rule("missing_cells", lambda e: e.missing),
    Rule("tampered_cells", lambda e: e.tampered),
    Rule("memory_limit", lambda e: e.memory),
    Rule("timeout", lambda e: e.timed_out),
    Rule("kernel_died", lambda e: e.died),
    # The kernel's word about its own graded calls, below every trusted rule (see the module docstring).
    Rule("memory_limit", lambda e: e.claimed_memory, "a graded call reported running out of memory"),
)


def classify(evidence: Evidence) -> tuple[str, str]:
    """The outcome and its note (``""`` when none is needed).

    Example:
        >>> calm = Evidence(False, False, False, False, True, False, False, False, False, False)
        >>> classify(calm)
        ('graded', '')
        >>> import dataclasses
        >>> classify(dataclasses.replace(calm, tampered=True, memory=True))
        ('tampered_cells', '')
    """
    for rule in RULES:
        if rule.applies(evidence):
            return rule.outcome, rule.note
    return "graded", ""


#: which of the submission's two time budgets ran out (see :mod:`~coursekit.grading.limits`), as the notes say it.
_PHASE_OUT_OF_TIME = {
    "cells": "the notebook's cells used up their time budget (the cells' phases took {cells:.0f} s in all "
             "attempts together, the sandboxes' start included; the budget starts afresh when a graded "
             "function is given up, unless a cell is left out with it); the last attempt made no hidden call",
    "calls": "the hidden calls used up their own time budget ({calls:.0f} s, every attempt together); "
             "the calls left unanswered earn nothing",
}


def run_notes(run: RawRun) -> list[str]:
    """What the instructor should know about a run, whatever its outcome."""
    notes = []
    truncated = [cell.index for cell in run.cells if cell.truncated]
    if truncated:
        notes.append(f"output truncated: cell(s) {', '.join(map(str, truncated[:10]))}"
                     + (", ..." if len(truncated) > 10 else "") + " printed more than the output limits keep")
    for index, why in run.skipped_cells:
        notes.append(f"{_SKIPPED.get(why, _SKIPPED['died'])} cell {index}; it was skipped on a rerun")
    skipped = {index for index, _why in run.skipped_cells}
    # A cell that kept its memory and stays (grader review r27, F1; r28, F2): nothing after it ran short, no
    # attempt was left, or no rerun could change a score. A later cell that failed is named as measured: at the
    # limit, after the hoarder while its memory was still taken, or at a limit it started near (grader review
    # r30, F3); a cell that started below the limit shows the hoarder's memory was gone (r31, F2).
    holder = None
    for cell in run.cells:
        if cell.ended is not StepEnd.NOT_RUN and not cell.started_near_limit:
            holder = None
        if cell.ended is not StepEnd.MEMORY_LIMIT or cell.index in skipped:
            continue
        if cell.memory_held:
            notes.append(f"cell {cell.index} ran out of memory and kept it (near the limit when it ended); it was not "
                         "skipped")
            holder = cell.index
        elif holder is not None:
            notes.append(f"cell {cell.index} failed at the memory limit after cell {holder} kept its memory; it was "
                         "not skipped")
        elif cell.started_near_limit:
            notes.append(f"cell {cell.index} failed at the memory limit, which it was already near when it started; "
                         "it was not skipped")
        else:
            notes.append(f"cell {cell.index} ran out of memory and was not near the limit when it ended; it was not "
                         "skipped")
    statuses = {call.status for call in run.calls}
    if CallStatus.NOT_RUN_AFTER_STALL in statuses:
        notes.append("a graded function ignored its time limit; it was not called again")
    if CallStatus.NOT_RUN_AFTER_DEATH in statuses:
        notes.append("the process died in a graded function; it was not called again")
    if run.wall_killed_in:
        notes.append(_PHASE_OUT_OF_TIME[run.wall_killed_in].format(cells=run.cells_seconds, calls=run.calls_seconds))
    if run.kept_from_earlier:
        kept = "; the hidden calls made before the crash kept their results" if run.kept_calls else ""
        notes.append(f"a rerun ran out of its cells' time budget before it made its hidden calls{kept}")
    if run.oom_kills:
        notes.append(f"the sandbox's memory limit killed {run.oom_kills} process(es)")
    if run.ignored_reports:
        notes.append(f"the notebook wrote {run.ignored_reports} line(s) to the runner's channel; "
                     "they were ignored")
    if run.protocol_errors:
        notes.append(f"the runner sent {run.protocol_errors} malformed or out-of-order event(s)")
    if run.refused:
        notes.append(f"no student code ran: {run.refused}")
    if not run.sandboxed:
        notes.append("NOT SANDBOXED")
    if not run.cgroups:
        notes.append("NO CGROUP LIMITS")
    return notes


def _answer_names(question: Question) -> set[str]:
    """The names a question reads from the notebook: its variables, or the student's function."""
    if isinstance(question, ValueQuestion):
        return set(question.answers)
    return {question.student_function or question.function}


def _defined_names(source: str) -> set[str]:
    """The names a cell defines at its top level as the kernel runs it (magics translated); none if it won't parse."""
    names: set[str] = set()
    # The cell is the student's, but one the kernel already ran: it is within the notebook's size budget.
    for node in cell_statements(source, sys.maxsize).statements:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def skipped_answers(run: RawRun, cells: Sequence[dict[str, Any]], questions: Sequence[Question]) -> dict[str, str]:
    """For each question whose answer was defined in a cell skipped on a rerun, the sentence its feedback leads with.

    Without it the feedback would say only that the function is not defined
    (``NameError``), which is true of the last attempt but not what happened.

    Args:
        run: the submission's run (after every attempt).
        cells: the prepared notebook's cells.
        questions: the spec's questions.

    Returns:
        grade_id -> sentence, for the questions concerned.

    Example:
        >>> from coursekit.grading.spec import ValueQuestion
        >>> run = RawRun(skipped_cells=[(1, "memory")])
        >>> cells = [{"source": "x = 1", "metadata": {}},
        ...          {"source": "answer = 'B'", "metadata": {"nbgrader": {"solution": True}}}]
        >>> skipped_answers(run, cells, [ValueQuestion("test_mc", 1.0, {"answer": ("B",)})])
        {'test_mc': 'your answer cell (cell 1) ran out of memory and was skipped on a rerun, so what it defines \
was not there'}
    """
    found: dict[str, str] = {}
    for index, why in run.skipped_cells:
        cell = cells[index] if 0 <= index < len(cells) else {}
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not (isinstance(meta, dict) and meta.get("solution")):
            continue
        defined = _defined_names(cell.get("source", ""))
        for question in questions:
            if question.grade_id not in found and _answer_names(question) & defined:
                what = _SKIPPED_ANSWER.get(why, _SKIPPED_ANSWER["died"])
                found[question.grade_id] = (f"your answer cell (cell {index}) {what} and was skipped on a rerun, "
                                            "so what it defines was not there")
    return found
