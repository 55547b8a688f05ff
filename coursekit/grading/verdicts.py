"""Verdicts: compare what the sandbox sent back with the references, in the grader's process.

Only decoded plain data reaches these functions (see :mod:`coursekit.grading.wire`):
NumPy arrays of whitelisted dtypes, Python numbers, strings, lists. A student
object cannot be compared here because none ever arrives.
"""

from __future__ import annotations

import builtins
from dataclasses import asdict, dataclass, field
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from coursekit.grading.protocol import CallEnd, CallStatus
from coursekit.grading.spec import CheckedQuestion, PreparedCall, Question, ValueQuestion
from coursekit.grading.wire import WireError, decode_value

#: exception names quoted in feedback: Python's own, and the kernel's time and output limits.
KNOWN_EXCEPTIONS = frozenset(
    name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
) | {"CellTimeout"}

#: what the feedback says about a call that failed for a reason other than its own exception.
FAILURES = {
    CallStatus.TIMEOUT: "time limit reached",
    CallStatus.NOT_RUN: "time limit reached",
    CallStatus.STALLED: "would not stop at its time limit",
    CallStatus.NOT_RUN_AFTER_STALL: "would not stop at its time limit; not called again",
    CallStatus.OUT_OF_MEMORY: "ran out of memory",
    CallStatus.DIED: "the process died during this call",
    CallStatus.NOT_RUN_AFTER_DEATH: "the process died in this function; not called again",
    CallStatus.MALFORMED: "malformed result",
    CallStatus.TOO_LARGE: "result too large",
    # A withheld or banned status naming nothing the grader knows: the kernel's word alone.
    CallStatus.WITHHELD: "malformed result",
    CallStatus.BANNED: "malformed result",
}


@dataclass
class QuestionResult:
    """The outcome of one autograded question.

    Attributes:
        grade_id: nbgrader grade_id.
        score: points earned.
        max_score: points available.
        passed: hidden cases answered correctly.
        total: hidden cases asked.
        messages: short reasons for failures (never the hidden inputs).
        uses_reference: a call reached a reference that the sandbox withholds.
    """

    grade_id: str
    score: float
    max_score: float
    passed: int
    total: int
    messages: list[str] = field(default_factory=list)
    uses_reference: bool = False

    @property
    def outcome(self) -> str:
        """``"passed"``, ``"partial"`` or ``"failed"``."""
        return "passed" if self.passed == self.total else "partial" if self.passed else "failed"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for the JSON report."""
        return {**asdict(self), "outcome": self.outcome}


def _as_array(value: object) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    if type(value) in (bool, int, float):
        return np.asarray(value)
    return None


def compare(student: object, expected: object, *, rtol: float, atol: float) -> str | None:
    """Compare a decoded student answer with the reference.

    Args:
        student: decoded value (array, number, string, list).
        expected: the reference value computed by the grader.
        rtol, atol: tolerances for floating-point values.

    Returns:
        ``None`` when they agree, else a short reason.

    Example:
        >>> compare(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9]), rtol=1e-5, atol=1e-8) is None
        True
        >>> compare(np.array([1, 2]), np.array([1.0, 2.0]), rtol=1e-5, atol=1e-8)
        'expected floating-point values, got int64'
        >>> compare("b ", "B", rtol=0, atol=0) is None
        True
    """
    if isinstance(expected, str):
        if not isinstance(student, str):
            return f"expected a string, got {type(student).__name__}"
        return None if student.strip().casefold() == expected.strip().casefold() else "wrong answer"
    if isinstance(expected, list):
        if not isinstance(student, list) or len(student) != len(expected):
            return f"expected a sequence of {len(expected)} values"
        for s, e in zip(student, expected):
            reason = compare(s, e, rtol=rtol, atol=atol)
            if reason:
                return reason
        return None
    reference = _as_array(expected)
    answer = _as_array(student)
    if reference is None:
        raise TypeError(f"expected must be an array, number, string or list, got {type(expected).__name__}")
    if answer is None:
        return f"expected numbers, got {type(student).__name__}"
    if answer.shape != reference.shape:
        # Neither shape is named: the student's is theirs to choose (a zero-size
        # array can carry any other dimensions), the reference's follows the
        # hidden inputs.
        return "wrong shape"
    if reference.dtype.kind == "f":
        if answer.dtype.kind != "f":
            return f"expected floating-point values, got {answer.dtype}"
        ok = np.isclose(answer.astype(np.float64), reference.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True)
        return None if bool(np.all(ok)) else "wrong values"
    if reference.dtype.kind == "b" and answer.dtype.kind != "b":
        return f"expected bool values, got {answer.dtype}"
    if answer.dtype.kind not in "biu" or answer.dtype.kind == "b" and reference.dtype.kind != "b":
        return f"expected {reference.dtype} values, got {answer.dtype}"
    return None if np.array_equal(answer, reference) else "wrong values"


def _failure(end: CallEnd) -> str:
    """Why a call that did not return a value failed, in words that reveal nothing hidden."""
    if end.status in FAILURES:
        return FAILURES[end.status]
    # Only the exception's type: its message is student-controlled and could
    # smuggle the hidden inputs into the feedback.
    if end.ename in KNOWN_EXCEPTIONS:
        return f"raised {end.ename}" + (" (is it defined?)" if end.ename == "NameError" else "")
    # A class name of the student's own making could spell out hidden inputs.
    return "raised an exception"


def _check_call(prepared: PreparedCall, end: CallEnd | None, question: Question) -> str | None:
    if end is None:
        return "no result (the process stopped before this call)"
    if end.status is not CallStatus.OK:
        return _failure(end)
    try:
        value = decode_value(end.value)
        grads = [decode_value(g) for g in end.grads]
    except WireError:
        # A fixed text: the error may quote nothing, since the kernel wrote the value.
        return "malformed result"
    if isinstance(question, CheckedQuestion):
        try:
            verdict = question.check(value, prepared.expected)
        except Exception as error:  # noqa: BLE001 - odd student data must fail the case, not stop the batch
            return f"the returned values could not be checked ({type(error).__name__})"
        return None if verdict is None else str(verdict)[:200]
    if isinstance(question, ValueQuestion):
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.reshape(())
        reasons = [compare(value, e, rtol=question.rtol, atol=question.atol) for e in prepared.expected]
        return None if any(r is None for r in reasons) else f"{prepared.call['name']}: wrong answer"
    reason = compare(value, prepared.expected, rtol=question.rtol, atol=question.atol)
    if reason:
        return reason
    if len(grads) != len(prepared.expected_grads):
        return "missing gradients"
    for got, want in zip(grads, prepared.expected_grads):
        reason = compare(got, want, rtol=question.rtol, atol=question.atol)
        if reason:
            return "gradient: " + reason
    return None


def _forfeit(question: Question, total: int, message: str, *, uses_reference: bool = False) -> QuestionResult:
    return QuestionResult(question.grade_id, 0.0, float(question.points), 0, total, [message], uses_reference)


def score_question(question: Question, calls: Sequence[PreparedCall], ends: Mapping[str, CallEnd],
                   tripwires: Collection[str] = ()) -> QuestionResult:
    """Score one question from the runner's call events.

    A call that reached a withheld reference, or ran a banned operator, forfeits
    the whole question. Otherwise partial credit is ``points * passed / total``,
    rounded to 1e-3. The feedback names only what the grader knows: the view's
    stand-ins and the question's banned operators (by their ``shown_as``); any
    other name in an event is dropped, since the kernel wrote it.

    Args:
        question: the question.
        calls: its prepared calls (inputs and references).
        ends: the runner's call events, by call id.
        tripwires: the names of the sandbox's stand-ins for withheld references.

    Returns:
        The question's result.
    """
    total = len(calls)
    name = getattr(question, "student_function", "") or getattr(question, "function", "")
    mine = [ends[c.call["id"]] for c in calls if c.call["id"] in ends]
    known = set(tripwires)
    reached = sorted({hit for end in mine if end.status is CallStatus.WITHHELD for hit in end.hits if hit in known})
    if reached:
        return _forfeit(question, total, f"{name} reaches the reference ({', '.join(reached)}), which earns nothing",
                        uses_reference=True)
    shown = {op.aten: op.shown_as for op in getattr(question, "banned", ())}
    labels = sorted({shown[hit] for end in mine if end.status is CallStatus.BANNED for hit in end.hits if hit in shown})
    if labels:
        return _forfeit(question, total, f"{name} must not use {', '.join(labels)}")
    passed = 0
    reasons: dict[str, int] = {}
    for prepared in calls:
        reason = _check_call(prepared, ends.get(prepared.call["id"]), question)
        if reason is None:
            passed += 1
        else:
            reasons[reason] = reasons.get(reason, 0) + 1
    score = round(float(question.points) * passed / total, 3) if total else 0.0
    what = "answer" if isinstance(question, ValueQuestion) else "function"
    messages = [f"{count} of {total} hidden checks of the {what}: {reason}" for reason, count in reasons.items()]
    return QuestionResult(question.grade_id, score, float(question.points), passed, total, messages[:5])
