"""Verdicts: compare what the sandbox sent back with the references, in the grader's process.

Only decoded plain data reaches these functions (see :mod:`coursekit.grading.wire`):
NumPy arrays of whitelisted dtypes, Python numbers, strings, lists. A student
object cannot be compared here because none ever arrives.

The feedback of a question is a few lines, one per kind of failure::

    3 of 70 hidden checks of the function: wrong values when reduction='sequence_mean', a row of mask with no True;
    e.g. batch_loss(token_losses float32 (4, 7), mask bool (4, 7), reduction='sequence_mean'): first at [3] ...

The part before ``"; e.g. "`` is the *kind*: what went wrong, in the grader's
own words, and the factors (options, edge case, dtype; see
:mod:`~coursekit.grading.describe`) that every failing case of that kind
shares and not every case of the question has. The class report groups
students by it (:func:`failure_kind`). The part after it is one example: the
case's call with its dtypes and shapes, and the first differing position with
the reference's value there and the class of the returned one (larger,
smaller, nan, inf), or the expected shape and the returned number of
dimensions.

A graded function holds its hidden inputs and could spell them in anything it
returns or raises, so the feedback quotes none of its numbers or words: not a
returned value, not an exception's message (in letters, if digits were
masked), not a class name of its own. Its message goes to the instructor's
report alone (the ``raised`` field of :class:`QuestionResult`, digits masked by
:func:`quoted_message`), and an exception is named by its type only when
Python defines it. What the feedback does show of the student's result is a
few facts the student's code chose, each from a small set: the first
differing position, the class of the returned value there (larger, smaller,
``nan``, ``inf``), the returned number of dimensions, a wrong dtype or type
(``got float32``, ``got str``), and the class of an exception Python defines.
Each line carries a few bits (a position, about log2 of the array's size), and
a student's inputs are the same on every regrade, so a function built to leak
could read back a small input (a length, an id) over several submissions,
though not, in practice, an array of floats. The one hidden value the feedback
shows is the reference's value at one position. A failed *visible* check is
quoted in full (one line, capped): it ran while no hidden input was in the
process (see :func:`visible_check_failure`).
"""

from __future__ import annotations

import builtins
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from coursekit.grading.describe import CaseDescription, parameter_names
from coursekit.grading.protocol import CallEnd, CallStatus, CellEnd, CellStatus
from coursekit.grading.spec import CheckedQuestion, ExpectedRaise, PreparedCall, Question, ValueQuestion
from coursekit.grading.wire import WireError, decode_value

#: exception names quoted in feedback: Python's own, and the kernel's time and output limits.
KNOWN_EXCEPTIONS = frozenset(
    name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
) | {"CellTimeout"}

#: what the feedback says about a call that the runner did not make: an earlier call of the same function reached
#: its time limit, and a function is not called again after that (the rule bounds the hidden cases' time).
NOT_RUN_AFTER_TIMEOUT = "not run, since an earlier case of this function reached the time limit"

#: what the feedback says about a call that failed for a reason other than its own exception.
FAILURES = {
    CallStatus.TIMEOUT: "time limit reached",
    CallStatus.NOT_RUN: NOT_RUN_AFTER_TIMEOUT,
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
#: the reasons of calls that were not made: which cases they are depends on the spec's order, not on the answer,
#: so their line names no factor, label or example.
NOT_MADE = frozenset(FAILURES[status] for status in (CallStatus.NOT_RUN, CallStatus.NOT_RUN_AFTER_STALL,
                                                     CallStatus.NOT_RUN_AFTER_DEATH))

#: why a question's hidden checks were not counted: its test cell's visible checks did not pass.
VISIBLE_CHECK_FAILED = "a visible check failed"
#: the same when they did not finish (the process died, or they would not stop at their time limit).
VISIBLE_CHECK_UNFINISHED = "the visible checks did not finish"
#: the same when a graded call reached a reference that the sandbox withholds.
REFERENCE_REACHED = "the function reached the reference solution"
#: the same when a graded call ran an operation the question bans.
BANNED_OPERATION_USED = "the function used a banned operation"
#: the most kinds of failure listed per question (the most frequent first).
MAX_KINDS = 6
#: the most characters of a student's exception message quoted in an example.
QUOTED_CHARS = 160
#: what separates a failure's kind from its example.
EXAMPLE = "; e.g. "
#: the count in front of a failure, as in "3 of 70 hidden checks of the function" and the colon after it.
COUNT_PREFIX = re.compile(r"^\d+ of \d+ hidden checks of the \w+: ")


@dataclass
class QuestionResult:
    """The outcome of one autograded question.

    Attributes:
        grade_id: nbgrader grade_id.
        score: points earned.
        max_score: points available.
        passed: hidden cases answered correctly; ``None`` when they were not
            counted (the question is then forfeit, whatever the hidden cases
            gave; ``not_counted`` says why).
        total: hidden cases asked.
        messages: the feedback: short reasons for failures, in the grader's words.
        uses_reference: a call reached a reference that the sandbox withholds.
        raised: for the instructor's report only, never the feedback: the start of
            the student's exception message (digits masked) in each example that
            raised, after the example's call.
        not_counted: why the hidden checks were not counted (``""``: they were):
            :data:`VISIBLE_CHECK_FAILED`, :data:`VISIBLE_CHECK_UNFINISHED`,
            :data:`REFERENCE_REACHED` or :data:`BANNED_OPERATION_USED`.
    """

    grade_id: str
    score: float
    max_score: float
    passed: int | None
    total: int
    messages: list[str] = field(default_factory=list)
    uses_reference: bool = False
    raised: list[str] = field(default_factory=list)
    not_counted: str = ""

    @property
    def outcome(self) -> str:
        """``"passed"``, ``"partial"`` or ``"failed"``."""
        return "passed" if self.passed == self.total else "partial" if self.passed else "failed"

    def counted(self) -> str:
        """What the feedback's first line says of the hidden checks, for both graders.

        A forfeit names its reason rather than "0 of 6 hidden checks passed",
        which would read as if the checks had run and failed.

        Example:
            >>> QuestionResult("test_f", 1.0, 2.0, 3, 6).counted()
            '3 of 6 hidden checks passed'
            >>> QuestionResult("test_f", 0.0, 2.0, None, 6, ["f must not use F.ctc_loss"],
            ...                not_counted=BANNED_OPERATION_USED).counted()
            'hidden checks not counted: the function used a banned operation'
        """
        if self.passed is not None:
            return f"{self.passed} of {self.total} hidden checks passed"
        return f"hidden checks not counted: {self.not_counted}"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for the JSON report."""
        return {**asdict(self), "outcome": self.outcome}


def failure_kind(message: str) -> str:
    """A feedback line's kind: without the count in front and the example behind.

    Students whose lines have the same kind failed in the same way; the class
    report groups them by it.

    Example:
        >>> failure_kind("3 of 9 hidden checks of the function: wrong values when reduction='sum'; e.g. f(x): ...")
        "wrong values when reduction='sum'"
    """
    return COUNT_PREFIX.sub("", message, count=1).split(EXAMPLE, 1)[0]


@dataclass(frozen=True)
class Mismatch:
    """Why one answer differs from the reference.

    Attributes:
        reason: what went wrong, in the grader's words (the feedback groups by it).
        detail: one example, in the grader's words: where, and the expected value or shape.
        path: the item of a returned list that differs (indices, outermost first).
        said: the student's exception message as :func:`quoted_message` shows it, for the instructor only.
    """

    reason: str
    detail: str = ""
    path: tuple[int, ...] = ()
    said: str = ""

    def located(self, outputs: Sequence[str]) -> Mismatch:
        """The reason after the returned list's item it is about (named by ``outputs``); deeper indices in the detail.

        Example:
            >>> Mismatch("wrong values", "first at [0]: expected 1", (1, 3)).located(("loss", "gradients"))
            Mismatch(reason='gradients: wrong values', detail='item [3], first at [0]: expected 1', path=(), said='')
        """
        if not self.path:
            return self
        first = outputs[self.path[0]] if self.path[0] < len(outputs) else f"item {self.path[0]} of the result"
        # Deeper indices vary from case to case: in the example, so that the kind stays one line.
        inner = "".join(f"[{i}]" for i in self.path[1:])
        detail = ", ".join(part for part in (f"item {inner}" if inner else "", self.detail) if part)
        return Mismatch(f"{first}: {self.reason}", detail, said=self.said)


def _as_array(value: object) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    if type(value) in (bool, int, float):
        return np.asarray(value)
    return None


def _number(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}" if math.isfinite(value) else str(float(value))
    return str(value.item() if isinstance(value, np.generic) else value)


def _returned_class(got: object, want: object) -> str:
    """What class the returned value falls in, never the value: the student's code chose it."""
    if isinstance(got, (bool, np.bool_)) or isinstance(want, (bool, np.bool_)):
        return "a different value"
    got, want = float(got), float(want)
    if math.isnan(got):
        return "nan"
    if math.isinf(got):
        return "inf" if got > 0 else "-inf"
    if math.isnan(want) or math.isinf(want):
        return "a finite number"
    return "a larger value" if got > want else "a smaller value"


def _shape_difference(got: tuple[int, ...], want: tuple[int, ...]) -> str:
    """How a returned shape differs from the expected one, without its dimensions (the student's code chose them)."""
    if len(got) == len(want) and sorted(got) == sorted(want):
        return "the same dimensions in another order (a transpose?)"
    try:
        broadcast = np.broadcast_shapes(got, want) == got
    except ValueError:
        broadcast = False
    plural = "" if len(got) == 1 else "s"
    return f"{len(got)} dimension{plural}" + (" that the expected shape broadcasts to" if broadcast else "")


def _first_difference(answer: np.ndarray, reference: np.ndarray, same: np.ndarray) -> Mismatch:
    where = tuple(int(i) for i in np.argwhere(~same)[0]) if reference.ndim else ()
    got, want = answer[where], reference[where]
    at = f"first at {list(where)}: " if where else ""
    return Mismatch("wrong values", f"{at}expected {_number(want)}, got {_returned_class(got, want)}")


def compare(student: object, expected: object, *, rtol: float, atol: float,
            exact_dtype: bool = True) -> Mismatch | None:
    """Compare a decoded student answer with the reference.

    Args:
        student: decoded value (array, number, string, list).
        expected: the reference value computed by the grader.
        rtol, atol: tolerances for floating-point values.
        exact_dtype: a floating array must have the floating reference array's dtype
            (float32 for float32, float64 for float64), as the pages promise: "compared in
            value, dtype, shape". A Python float answers any floating reference: it has
            no dtype of its own, and a question that wants a tensor checks for one in its
            visible checks. An integer (a Python ``int`` or an integer array) never answers
            a floating reference here: a function that should return floats and returns
            integers has the wrong dtype. A value question's answers are numbers, so it
            passes ``False``: a floating answer of any dtype, or an integer one (``2`` where
            2.0 is expected: a student may well store a whole number as one), is compared
            by its value. A bool is never a number here, even then.

    Returns:
        ``None`` when they agree, else why not.

    Raises:
        TypeError: ``expected`` is none of the types the reference may return.

    Example:
        >>> compare(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9]), rtol=1e-5, atol=1e-8) is None
        True
        >>> compare(np.array([1.0, 2.5]), np.array([1.0, 2.0]), rtol=1e-5, atol=1e-8)
        Mismatch(reason='wrong values', detail='first at [1]: expected 2, got a larger value', path=(), said='')
        >>> compare(np.zeros((3, 2)), np.zeros((2, 3)), rtol=0, atol=0).detail
        'expected shape (2, 3), got the same dimensions in another order (a transpose?)'
        >>> compare(np.zeros((7, 2, 3)), np.zeros((2, 3)), rtol=0, atol=0).detail
        'expected shape (2, 3), got 3 dimensions that the expected shape broadcasts to'
        >>> compare(np.array([1, 2]), np.array([1.0, 2.0]), rtol=1e-5, atol=1e-8).reason
        'expected floating-point values, got int64'
        >>> compare(np.array([1.0, 2.0], dtype=np.float32), np.array([1.0, 2.0]), rtol=1e-5, atol=1e-8).reason
        'expected float64 values, got float32'
        >>> compare(2.0, np.array(2.0, dtype=np.float32), rtol=1e-5, atol=1e-8) is None
        True
        >>> compare(2, 2.0, rtol=1e-5, atol=1e-8, exact_dtype=False) is None
        True
        >>> compare(2, 2.0, rtol=1e-5, atol=1e-8).reason
        'expected floating-point values, got int64'
        >>> compare(True, 1.0, rtol=1e-5, atol=1e-8, exact_dtype=False).reason
        'expected floating-point values, got bool'
        >>> compare("b ", "B", rtol=0, atol=0) is None
        True
    """
    if isinstance(expected, str):
        if not isinstance(student, str):
            return Mismatch(f"expected a string, got {type(student).__name__}")
        return None if student.strip().casefold() == expected.strip().casefold() else Mismatch("wrong answer")
    if isinstance(expected, list):
        if not isinstance(student, list) or len(student) != len(expected):
            return Mismatch(f"expected a list of {len(expected)} items")
        for index, (s, e) in enumerate(zip(student, expected)):
            inner = compare(s, e, rtol=rtol, atol=atol, exact_dtype=exact_dtype)
            if inner:
                return Mismatch(inner.reason, inner.detail, (index, *inner.path))
        return None
    reference = _as_array(expected)
    answer = _as_array(student)
    if reference is None:
        raise TypeError(f"expected must be an array, number, string or list, got {type(expected).__name__}")
    if answer is None:
        return Mismatch(f"expected numbers, got {type(student).__name__}")
    if answer.shape != reference.shape:
        return Mismatch("wrong shape", f"expected shape {tuple(reference.shape)}, "
                                       f"got {_shape_difference(answer.shape, reference.shape)}")
    if reference.dtype.kind == "f":
        number = not exact_dtype and answer.dtype.kind in "iu"
        if answer.dtype.kind != "f" and not number:
            return Mismatch(f"expected floating-point values, got {answer.dtype}")
        arrays = isinstance(student, np.ndarray) and isinstance(expected, np.ndarray)
        if exact_dtype and arrays and answer.dtype != reference.dtype:
            return Mismatch(f"expected {reference.dtype} values, got {answer.dtype}")
        same = np.isclose(answer.astype(np.float64), reference.astype(np.float64), rtol=rtol, atol=atol,
                          equal_nan=True)
        return None if bool(np.all(same)) else _first_difference(answer, reference, same)
    if reference.dtype.kind == "b" and answer.dtype.kind != "b":
        return Mismatch(f"expected bool values, got {answer.dtype}")
    if answer.dtype.kind not in "biu" or answer.dtype.kind == "b" and reference.dtype.kind != "b":
        return Mismatch(f"expected {reference.dtype} values, got {answer.dtype}")
    same = answer == reference
    return None if bool(np.all(same)) else _first_difference(answer, reference, np.asarray(same))


def quoted_message(ename: str, evalue: str) -> str:
    """The start of a student's exception message, on one line, every digit shown as ``#``: for the instructor only.

    The message is the student's own text, and a graded function holds its
    hidden inputs and may write them into it, in digits or in any other
    alphabet. So it never reaches the feedback (see the module's docstring);
    the instructor's report keeps its start, short and on one line, with the
    digits masked and a class name Python does not define left out.

    Example:
        >>> quoted_message("ValueError", "lengths must lie in [0, 5],   got [6, 2]")
        'ValueError: lengths must lie in [#, #], got [#, #]'
    """
    return _one_line(ename, re.sub(r"[0-9]+", "#", evalue))


def _one_line(ename: str, evalue: str) -> str:
    """``ename: evalue`` on one line, capped at :data:`QUOTED_CHARS`, a class name Python does not define left out."""
    text = " ".join(evalue.split())
    text = text if len(text) <= QUOTED_CHARS else text[: QUOTED_CHARS - 3] + "..."
    name = ename if ename in KNOWN_EXCEPTIONS else ""
    return ": ".join(part for part in (name, text) if part)


def _quoted(end: CallEnd) -> str:
    return quoted_message(end.ename, end.evalue)


def _failure(end: CallEnd) -> Mismatch:
    """Why a call that did not return a value failed."""
    if end.status in FAILURES:
        return Mismatch(FAILURES[end.status])
    # A class name of the student's own making could spell out anything: only Python's own are named.
    if end.ename in KNOWN_EXCEPTIONS:
        hint = " (is it defined?)" if end.ename == "NameError" else ""
        return Mismatch(f"raised {end.ename}{hint}", said=_quoted(end))
    return Mismatch("raised an exception of its own class", said=_quoted(end))


def _check_raise(expected: ExpectedRaise, end: CallEnd) -> Mismatch | None:
    if end.status is CallStatus.OK:
        return Mismatch(f"returned a value instead of raising {expected.ename}")
    if end.status is not CallStatus.RAISED:
        return _failure(end)
    if end.ename != expected.ename:
        found = _failure(end)
        return Mismatch(f"{found.reason} instead of {expected.ename}", found.detail, said=found.said)
    if expected.naming not in end.evalue:
        return Mismatch(f"raised {expected.ename} whose message does not name {expected.naming!r}",
                        said=_quoted(end))
    return None


def _check_call(prepared: PreparedCall, end: CallEnd | None, question: Question,
                names: Sequence[str] = ()) -> Mismatch | None:
    """Check one call; ``names`` are the positional parameters' names (for the gradients)."""
    if end is None:
        return Mismatch("no result (the process stopped before this call)")
    if isinstance(prepared.expected, ExpectedRaise):
        return _check_raise(prepared.expected, end)
    if end.status is not CallStatus.OK:
        return _failure(end)
    try:
        value = decode_value(end.value)
        grads = [decode_value(g) for g in end.grads]
    except WireError:
        # A fixed text: the error may quote nothing, since the kernel wrote the value.
        return Mismatch("malformed result")
    if isinstance(question, CheckedQuestion):
        try:
            verdict = question.check(value, prepared.expected.case, prepared.expected.check_seed)
        except Exception as error:  # noqa: BLE001 - odd student data must fail the case, not stop the batch
            return Mismatch(f"the returned values could not be checked ({type(error).__name__})")
        return None if verdict is None else Mismatch(str(verdict)[:200])
    if isinstance(question, ValueQuestion):
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.reshape(())
        reasons = [compare(value, e, rtol=question.rtol, atol=question.atol, exact_dtype=False)
                   for e in prepared.expected]
        # Never the expected value: for a variable it is the answer itself.
        return None if any(r is None for r in reasons) else Mismatch(f"{prepared.call['name']}: wrong answer")
    atol = question.atol if prepared.atol is None else prepared.atol
    mismatch = compare(value, prepared.expected, rtol=question.rtol, atol=atol)
    if mismatch:
        return mismatch.located(question.outputs)
    if len(grads) != len(prepared.expected_grads):
        return Mismatch("missing gradients")
    for position, got, want in zip(prepared.call.get("grad_wrt", []), grads, prepared.expected_grads):
        mismatch = compare(got, want, rtol=question.rtol, atol=atol)
        if mismatch:
            name = names[position] if position < len(names) else f"argument {position}"
            located = mismatch.located(())
            return Mismatch(f"gradient of {name}: {located.reason}", located.detail)
    return None


def _forfeit(question: Question, total: int, message: str, why: str, *,
             uses_reference: bool = False) -> QuestionResult:
    """A question scored 0, its hidden checks not counted (``passed`` is ``None``) because of ``why``."""
    return QuestionResult(question.grade_id, 0.0, float(question.points), None, total, [message], uses_reference,
                          not_counted=why)


def _shared(descriptions: Sequence[CaseDescription | None]) -> list[str]:
    """The factors every description has, in the first one's order."""
    known = [d for d in descriptions if d is not None]
    if not known or len(known) < len(descriptions):
        return []
    return [f for f in known[0].factors if all(f in d.factors for d in known[1:])]


def _separates(dtype: str, factors: Sequence[str], passing: Sequence[PreparedCall]) -> bool:
    """Whether a dtype factor is needed: some passing case has every other factor but another dtype."""
    return any(p.description is not None and p.description.dtype != dtype
               and all(f in p.description.factors for f in factors if f != dtype) for p in passing)


def _kind(reason: str, members: Sequence[PreparedCall], everywhere: set[str],
          passing: Sequence[PreparedCall]) -> str:
    if reason in NOT_MADE:
        return reason
    factors = [f for f in _shared([p.description for p in members]) if f not in everywhere]
    descriptions = [p.description for p in members if p.description is not None]
    # A label the line names already says the options it restates.
    restated = {f for d in descriptions if d.label in factors for f in d.restated}
    # A dtype that passing cases with the same other factors also have is not what the failures share.
    dtypes = {d.dtype for d in descriptions if d.dtype and not _separates(d.dtype, factors, passing)}
    factors = [f for f in factors if f not in restated and f not in dtypes]
    if factors:
        return f"{reason} when {', '.join(factors)}"
    labels = list(dict.fromkeys(p.description.label for p in members if p.description and p.description.label))
    return reason + (f", including {' and '.join(labels)}" if labels else "")


@dataclass(frozen=True)
class _Group:
    """The failures of one kind, with the one shown as the example."""

    kind: str
    count: int
    example: Mismatch
    prepared: PreparedCall

    @property
    def call(self) -> str:
        return self.prepared.description.call if self.prepared.description else ""


def _groups(failures: Sequence[tuple[Mismatch, PreparedCall]], calls: Sequence[PreparedCall]) -> list[_Group]:
    """The kinds of failure, the most frequent first, at most :data:`MAX_KINDS`."""
    everywhere = set(_shared([c.description for c in calls]))
    failed = {id(prepared) for _, prepared in failures}
    passing = [c for c in calls if id(c) not in failed]
    by_reason: dict[str, list[tuple[Mismatch, PreparedCall]]] = {}
    for mismatch, prepared in failures:
        by_reason.setdefault(mismatch.reason, []).append((mismatch, prepared))
    groups = []
    for reason, members in sorted(by_reason.items(), key=lambda item: -len(item[1]))[:MAX_KINDS]:
        kind = _kind(reason, [p for _, p in members], everywhere, passing)
        # The example: an edge case the spec labelled when there is one, since the kind may name it.
        mismatch, prepared = next(((m, p) for m, p in members if p.description and p.description.label), members[0])
        groups.append(_Group(kind, len(members), mismatch, prepared))
    return groups


def feedback_lines(failures: Sequence[tuple[Mismatch, PreparedCall]], calls: Sequence[PreparedCall], *,
                   what: str = "function") -> list[str]:
    """One line per kind of failure, the most frequent first, each with one example.

    A kind is a reason (``wrong values``, ``raised ValueError``, ``gradient of
    logits: wrong values``) with the factors that all its failing cases share
    and not all the question's cases have (``when reduction='sum', nan in
    token_losses``); when they share none, the edge cases the spec labelled
    among them (``, including a row with no candidate``). An option the shared
    label names with its value is not said again, and a dtype is named only when
    a passing case with the same other factors has another dtype. Calls that
    were not made (after an earlier call of the function reached its time limit,
    stalled or died) have a line of their own with no factor and no example.

    Args:
        failures: each failed call's mismatch and prepared call, in call order.
        calls: all the question's prepared calls.
        what: ``"function"`` or ``"answer"``.

    Returns:
        At most :data:`MAX_KINDS` lines.
    """
    lines = []
    for group in _groups(failures, calls):
        example = "" if group.kind in NOT_MADE else ": ".join(
            part for part in (group.call, group.example.detail) if part)
        line = f"{group.count} of {len(calls)} hidden checks of the {what}: {group.kind}"
        lines.append(line + (EXAMPLE + example if example else ""))
    return lines


def raised_messages(failures: Sequence[tuple[Mismatch, PreparedCall]], calls: Sequence[PreparedCall]) -> list[str]:
    """For the instructor: the student's exception message of each example of :func:`feedback_lines` that raised.

    Args:
        failures, calls: as for :func:`feedback_lines`.

    Returns:
        ``"<call>: <quoted message>"`` per kind whose example raised, in the feedback's order.
    """
    return [": ".join(part for part in (group.call, group.example.said) if part)
            for group in _groups(failures, calls) if group.example.said]


def score_question(question: Question, calls: Sequence[PreparedCall], ends: Mapping[str, CallEnd],
                   tripwires: Collection[str] = ()) -> QuestionResult:
    """Score one question from the runner's call events.

    A call that reached a withheld reference, or ran a banned operator, forfeits
    the whole question: it scores 0 and its hidden checks are not counted
    (:meth:`QuestionResult.counted` says why). Otherwise partial credit is ``points * passed / total``,
    rounded to 1e-3, and the messages are :func:`feedback_lines`. The feedback
    names only what the grader knows: the view's stand-ins and the question's
    banned operators (by their ``shown_as``); any other name in an event is
    dropped, since the kernel wrote it.

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
                        REFERENCE_REACHED, uses_reference=True)
    shown = {op.aten: op.shown_as for op in getattr(question, "banned", ())}
    labels = sorted({shown[hit] for end in mine if end.status is CallStatus.BANNED for hit in end.hits if hit in shown})
    if labels:
        return _forfeit(question, total, f"{name} must not use {', '.join(labels)}", BANNED_OPERATION_USED)
    reference = getattr(question, "reference", None)
    names = parameter_names(reference) if reference is not None else []
    failures = []
    for prepared in calls:
        mismatch = _check_call(prepared, ends.get(prepared.call["id"]), question, names)
        if mismatch is not None:
            failures.append((mismatch, prepared))
    passed = total - len(failures)
    score = round(float(question.points) * passed / total, 3) if total else 0.0
    what = "answer" if isinstance(question, ValueQuestion) else "function"
    messages = feedback_lines(failures, calls, what=what)
    return QuestionResult(question.grade_id, score, float(question.points), passed, total, messages,
                          raised=raised_messages(failures, calls))


def visible_check_failure(question: Question, total: int, end: CellEnd | None) -> QuestionResult | None:
    """The question's result when its test cell's visible checks did not pass, else ``None``.

    Stock nbgrader runs a test cell's visible checks before its hidden block,
    so a check that raises scores the cell 0; ``coursekit grade`` runs them too,
    where the cell stands, and applies the same rule, so both graders agree.
    The feedback quotes the check's exception on one line, capped at
    :data:`QUOTED_CHARS`, its class named only when Python defines it, and,
    unlike :func:`quoted_message`, with its digits: a visible check's message
    cannot carry hidden inputs, since the sandbox receives the hidden calls
    only after the notebook's last cell has run, so masking would only hide
    the numbers the released check was written to show (a threshold, the
    student's own loss).

    Args:
        question: the question.
        total: how many hidden checks it has.
        end: the event of its test cell's run (``None``: the cell never ran).

    Returns:
        A forfeit, or ``None`` when the visible checks passed.

    Example:
        >>> from coursekit.grading.spec import ValueQuestion
        >>> question = ValueQuestion("test_mc", 1, {"answer": ("B",)})
        >>> failed = CellEnd(3, CellStatus.ERROR, ename="AssertionError", evalue="answer with A, B, C or D")
        >>> visible_check_failure(question, 1, failed).messages
        ['a visible check failed: AssertionError: answer with A, B, C or D']
        >>> nll = CellEnd(3, CellStatus.ERROR, ename="AssertionError", evalue="validation NLL 2.347 is not below 2.0")
        >>> visible_check_failure(question, 1, nll).messages
        ['a visible check failed: AssertionError: validation NLL 2.347 is not below 2.0']
        >>> visible_check_failure(question, 1, CellEnd(3, CellStatus.OK)) is None
        True
    """
    if end is not None and end.status is CellStatus.OK:
        return None
    if end is not None and end.status is CellStatus.ERROR:
        quoted = _one_line(end.ename, end.evalue)
        return _forfeit(question, total, VISIBLE_CHECK_FAILED + (f": {quoted}" if quoted else ""),
                        VISIBLE_CHECK_FAILED)
    return _forfeit(question, total, VISIBLE_CHECK_UNFINISHED, VISIBLE_CHECK_UNFINISHED)
