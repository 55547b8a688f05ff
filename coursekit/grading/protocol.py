"""Every message between the grader, the trusted runner in the sandbox and the kernel it supervises.

Three parties talk over pipes, one JSON object per line::

    grader ──Setup, Calls──▶ runner ──RunCell, RunAdapter, RunCall────────▶ kernel
    grader ◀──events─────── runner ◀──CellReport, AdapterReport, CallReport── kernel

The *runner* (:mod:`coursekit.grading.runner`) never runs student code; the
*kernel* (:mod:`coursekit.grading.kernel`) is its child process and runs
nothing else, so everything the kernel sends is the student's word. Only the
runner emits the events that decide scores, deadlines and reruns, and it
bounds every report it relays. Each cell's and call's end carries the
runner's own measurements (:class:`StepEnd`, the step's CPU and wall-clock
time): the only account of limits the grader reads. The runner sends the kernel one step at a time
and accepts a report only for the step it just sent. Each message is a frozen dataclass with a
``KIND``; :func:`encode` and :func:`decode` are the only code that turns them
into bytes and back. Decoding is strict: an unknown kind or field, a field of
the wrong type, or a string, list or line past its bound raises
:class:`ProtocolError`. Values of graded calls travel in the tagged format of
:mod:`coursekit.grading.wire` and are decoded there, later, by the verdicts.

Example:
    >>> line = encode(CellStart(index=3))
    >>> line
    b'{"kind":"cell_start","index":3}\\n'
    >>> decode(line, EVENTS)
    CellStart(index=3)
"""

from __future__ import annotations

import dataclasses
import enum
import json
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Union

from coursekit.grading.wire import MAX_LIST_ITEMS

#: longest line accepted from any party: a graded call's value and gradients (a6 sends a few MiB).
MAX_LINE_BYTES = 64 * 2**20
#: what ends a stream of a cell whose output was cut (see :attr:`CellEnd.truncated`).
TRUNCATED = "\n[output truncated]\n"
#: most characters of a cell's stream (stdout, stderr) in a report or an event: it bounds ``Limits.output_cell``
#: (see :data:`~coursekit.grading.limits.MAX_OUTPUT_CELL`).
MAX_STREAM = 1_000_000
#: longest exception name, exception message and traceback relayed for a cell or a call.
MAX_ENAME = 100
MAX_EVALUE = 500
MAX_TRACEBACK = 4_000
#: longest cell source or adapter sent to the kernel (a notebook is at most 20 MB).
MAX_SOURCE = 20_000_000
#: most names listed in a call report (banned operators hit, withheld references reached).
MAX_NAMES = 32
MAX_NAME = 200
#: longest report line the runner accepts from the kernel after a cell, whatever ``output_cell`` is
#: (an honest report is at most 6 bytes per character of its capped fields: JSON escapes).
MIN_CELL_REPORT_BYTES = 3 * 2**20
#: longest report line after an adapter (it holds only the adapter's index).
MAX_ADAPTER_REPORT_BYTES = 1024
#: most opening brackets in one call report. An honest one holds a few dozen: an array is two
#: containers, lists nest at most ``wire.MAX_DEPTH`` deep, and base64 data holds no brackets.
#: Parsed, a million empty objects take about 70 MB.
MAX_CALL_BRACKETS = 1_000_000
#: most stand-ins a sandbox's view may hold (a view holds a few dozen).
MAX_TRIPWIRES = 1024
#: bytes of JSON per byte a call's value counts in :func:`~coursekit.grading.result_budget.wire_size`, at most:
#: a character counts one byte and ``json.dumps`` writes an astral one as two ``\\uXXXX`` escapes (12 bytes).
JSON_BYTES_PER_COUNTED = 12
#: bytes of a call report besides its value and gradients: the kind, the call id, the status, the
#: exception's name and the names hit, each escaped (6 bytes per character at most).
CALL_REPORT_ENVELOPE = 64 * 1024


class ProtocolError(ValueError):
    """A line that is not one of the expected messages, or breaks a bound."""


def _text(limit: int) -> dict[str, int]:
    return {"max": limit}


class CellStatus(str, enum.Enum):
    """How a cell ended, as the runner saw it."""

    OK = "ok"                 #: ran to the end
    ERROR = "error"           #: raised (its own error, the time limit or the memory limit)
    DIED = "died"             #: the kernel died in it (os._exit, a signal, the memory cgroup, or killed for flooding)
    STALLED = "stalled"       #: outlived its time limit: the runner killed the kernel


class StepEnd(str, enum.Enum):
    """How a step (a cell or a graded call) ended, as the runner measured it.

    The only account of limits that outcomes and reruns read: a cell's
    exception name or a call's status is the kernel's word, and the student
    chooses it (``raise MemoryError``, a class named ``CellTimeout``).
    """

    NOT_RUN = "not_run"              #: the runner did not run or time this step
    REPORTED = "reported"            #: the kernel reported, with no limit reached
    TIME_LIMIT = "time_limit"        #: it failed once it had used its CPU or wall-clock limit
    MEMORY_LIMIT = "memory_limit"    #: it failed after the kernel's address space rose to its limit in it
    KILLED = "killed"                #: it outlived its limits by the grace: the runner killed the kernel
    FLOODED = "flooded"              #: the runner killed the kernel for writing lines it did not wait for
    EXITED = "exited"                #: the kernel exited by itself
    SIGNALLED = "signalled"          #: a signal the runner did not send ended the kernel (``signal`` says which)
    TOO_LARGE = "too_large"          #: the call's report was longer than its bound: the runner refused it unread


class CallStatus(str, enum.Enum):
    """How a graded call ended. Every status but ``OK`` fails the call."""

    OK = "ok"
    RAISED = "raised"                 #: the function raised (``ename`` says what)
    TIMEOUT = "timeout"               #: stopped at its time limit by the kernel's own timer
    OUT_OF_MEMORY = "out_of_memory"   #: raised MemoryError or torch's allocation error
    DIED = "died"                     #: the kernel process died in it
    STALLED = "stalled"               #: outlived its time limit: the runner killed the kernel
    BANNED = "banned"                 #: ran a PyTorch operator its question bans
    WITHHELD = "withheld"             #: called a reference withheld from the sandbox
    MALFORMED = "malformed"           #: the kernel's report was not a valid result
    TOO_LARGE = "too_large"           #: its result would pass the submission's budget of result bytes
    NOT_RUN = "not_run"               #: not made: an earlier call of its function timed out in its question
    NOT_RUN_AFTER_STALL = "not_run_after_stall"   #: not called again: it would not stop
    NOT_RUN_AFTER_DEATH = "not_run_after_death"   #: not called again: it killed the kernel


# -- grader -> runner -----------------------------------------------------------------------

@dataclass(frozen=True)
class Setup:
    """Everything the runner needs before the first cell; nothing hidden.

    Attributes:
        files: the working copy, relative path -> base64 of the bytes.
        cells: ``[{"index": int, "source": str, "snapshot": bool}]``, the code cells to run in order;
            ``snapshot`` marks a test cell, after which the kernel keeps a copy of its names
            (see :class:`RunCell`).
        limits: the :class:`~coursekit.grading.limits.Limits` fields, as plain data.
        uid: the sandbox uid the kernel runs as (``None``: stay as is).
        workdir: the working copy's directory.
        sandboxed: inside bubblewrap (the runner may then remount its scratch file systems).
        memory_budget_mb: see :attr:`~coursekit.grading.spec.AssignmentSpec.memory_budget_mb`.
        capabilities: the capability bits bubblewrap was asked to leave the runner (``None``: not in
            bubblewrap); the runner refuses to run student code when it holds any other.
    """

    KIND: ClassVar[str] = "setup"
    files: dict[str, str] = field(metadata={"max": 2**31})
    cells: list[dict[str, Any]]
    limits: dict[str, Any]
    uid: Union[int, None]
    workdir: str
    sandboxed: bool
    memory_budget_mb: Union[int, None] = None
    capabilities: Union[int, None] = None


@dataclass(frozen=True)
class Calls:
    """The hidden calls, sent by the grader only once the runner reported :class:`CellsDone`.

    Attributes:
        adapters: spec code run in the kernel before the calls.
        calls: the calls in order; the keys of one call are listed under :class:`RunCall`.
        tripwires: the names of the sandbox's stand-ins for withheld references
            (:attr:`~coursekit.grading.package_view.ViewPlan.tripwires`): the runner relays
            no other name as a reference a call reached.
        result_caps: the most result text each call may send, by call id
            (:func:`~coursekit.grading.result_budget.call_cap`): the runner refuses a longer
            report before it decodes it (see :func:`call_report_bytes`).
        scopes: the index of the test cell whose names each call runs in, by call id (see
            :class:`RunCall`); a call not listed runs in the names as they are after the last cell.
    """

    KIND: ClassVar[str] = "calls"
    adapters: list[str]
    calls: list[dict[str, Any]]
    tripwires: list[str] = field(default_factory=list, metadata={"max_items": MAX_TRIPWIRES, "max": MAX_NAME})
    result_caps: dict[str, int] = field(default_factory=dict)
    scopes: dict[str, int] = field(default_factory=dict)


# -- runner -> grader: the events -----------------------------------------------------------

@dataclass(frozen=True)
class Ready:
    """The working copy is written, the limits are set and the kernel is running."""

    KIND: ClassVar[str] = "ready"


@dataclass(frozen=True)
class Refused:
    """The runner will not run student code: the sandbox is weaker than the grader asked for."""

    KIND: ClassVar[str] = "refused"
    reason: str = field(metadata=_text(MAX_EVALUE))


@dataclass(frozen=True)
class CellStart:
    """The kernel is now on cell ``index`` (the runner times it from here)."""

    KIND: ClassVar[str] = "cell_start"
    index: int


@dataclass(frozen=True)
class CellEnd:
    """Cell ``index`` ended; its output is capped by the runner.

    Attributes:
        index: the cell's position in the notebook.
        status: see :class:`CellStatus`.
        ename, evalue, traceback: the exception, when it raised.
        stdout, stderr: what it printed through ``sys.stdout`` and ``sys.stderr``.
        ended: how the step ended, as the runner measured it (:class:`StepEnd`).
        cpu_ms, wall_ms: the kernel's CPU time and the wall-clock time of the step, measured by the runner.
        signal: the signal that ended the kernel, when ``ended`` is ``SIGNALLED``.
        truncated: some of what it printed was dropped at the output limits (its stream ends in
            :data:`TRUNCATED`).
        memory_held: it ended at the memory limit (``ended`` is ``MEMORY_LIMIT``) and the kernel's address
            space, not near the limit when the cell started, was still near it when the cell reported, as
            the runner measured it: the cell keeps what it allocated.
        started_near_limit: the kernel's address space was already near its memory limit (within two of
            the margins by which a step reaches it, ``runner.RELEASE_MARGINS``; ``memory_held`` uses one) when
            the cell was sent, as the runner measured it (memory an earlier step kept, or a successful cell's data, was
            still taken), or the kernel was already gone and could not be measured.
    """

    KIND: ClassVar[str] = "cell_end"
    index: int
    status: CellStatus
    ename: str = field(default="", metadata=_text(MAX_ENAME))
    evalue: str = field(default="", metadata=_text(MAX_EVALUE))
    traceback: str = field(default="", metadata=_text(MAX_TRACEBACK))
    stdout: str = field(default="", metadata=_text(MAX_STREAM))
    stderr: str = field(default="", metadata=_text(MAX_STREAM))
    ended: StepEnd = StepEnd.NOT_RUN
    cpu_ms: int = 0
    wall_ms: int = 0
    signal: int = 0
    truncated: bool = False
    memory_held: bool = False
    started_near_limit: bool = False


@dataclass(frozen=True)
class CellsDone:
    """Every cell ran and the kernel is alive: the grader may now send :class:`Calls`."""

    KIND: ClassVar[str] = "cells_done"


@dataclass(frozen=True)
class CallStart:
    """The kernel is now on graded call ``call_id`` (the runner times it from here)."""

    KIND: ClassVar[str] = "call_start"
    call_id: str = field(metadata=_text(MAX_NAME))


@dataclass(frozen=True)
class CallEnd:
    """Graded call ``call_id`` ended.

    Attributes:
        call_id: which call.
        status: see :class:`CallStatus`.
        value: the returned value in the wire format (``None`` unless ``OK``).
        grads: the requested gradients in the wire format.
        ename: the exception's class name when it raised.
        hits: the banned operators it ran, or the withheld references it called.
        evalue: the exception's message when it raised (the student's own words, capped; the
            feedback quotes a bounded part of it).
        ended: how the step ended, as the runner measured it (:class:`StepEnd`).
        cpu_ms, wall_ms: the kernel's CPU time and the wall-clock time of the step, measured by the runner.
        signal: the signal that ended the kernel, when ``ended`` is ``SIGNALLED``.
        started_near_limit: the kernel's address space was already near its memory limit when the call was
            sent, as the runner measured it (see :class:`CellEnd`); ``False`` for a call never sent
            (``ended`` is ``NOT_RUN``), which measured nothing.
    """

    KIND: ClassVar[str] = "call_end"
    call_id: str = field(metadata=_text(MAX_NAME))
    status: CallStatus
    value: Any = None
    grads: list[Any] = field(default_factory=list, metadata={"max_items": MAX_LIST_ITEMS})
    ename: str = field(default="", metadata=_text(MAX_ENAME))
    hits: list[str] = field(default_factory=list, metadata={"max_items": MAX_NAMES, "max": MAX_NAME})
    evalue: str = field(default="", metadata=_text(MAX_EVALUE))
    ended: StepEnd = StepEnd.NOT_RUN
    cpu_ms: int = 0
    wall_ms: int = 0
    signal: int = 0
    started_near_limit: bool = False


@dataclass(frozen=True)
class Done:
    """The runner is finished; when the kernel died or was killed, in which step.

    Attributes:
        stopped_cell: the cell index the kernel died in or was killed in.
        stopped_call: the call id the kernel died in or was killed in.
        stopped_in_adapter: the kernel died while the spec's adapters ran (no call could run).
        ignored_reports: lines written to the runner's channel that were not the report it waited for.
    """

    KIND: ClassVar[str] = "done"
    stopped_cell: Union[int, None] = None
    stopped_call: Union[str, None] = field(default=None, metadata=_text(MAX_NAME))
    stopped_in_adapter: bool = False
    ignored_reports: int = 0


# -- runner <-> kernel ----------------------------------------------------------------------

@dataclass(frozen=True)
class RunCell:
    """Runner to kernel: execute one cell, then send its :class:`CellReport`.

    Attributes:
        index: the cell's position in the notebook.
        source: its code.
        snapshot: a test cell: once it has run, keep a shallow copy of the notebook's names for the
            calls of its questions (:func:`~coursekit.grading.snapshot.snapshot`), which stock
            nbgrader makes right there.
    """

    KIND: ClassVar[str] = "run_cell"
    index: int
    source: str
    snapshot: bool = False


@dataclass(frozen=True)
class RunAdapter:
    """Runner to kernel, once every cell has run: execute one of the spec's adapters, then send an
    :class:`AdapterReport`. A broken notebook may break an adapter; then only its calls fail.

    The runner sends every adapter, in order, before the first call of each scope.

    Attributes:
        index: the adapter's position in :attr:`Calls.adapters`.
        source: its code.
        scope: the test cell whose names it runs in (see :class:`RunCall`).
    """

    KIND: ClassVar[str] = "run_adapter"
    index: int
    source: str
    scope: Union[int, None] = None


@dataclass(frozen=True)
class RunCall:
    """Runner to kernel, after the adapters: make one graded call, then send its :class:`CallReport`.

    The runner does not send a call whose function already hit its time limit
    (it reports it ``not_run`` itself).

    Attributes:
        call: ``{"id", "kind": "function" | "variable", "name", "tensors", "args", "kwargs", "banned"}``
            plus, for gradients, ``"grad_wrt"`` and ``"cotangent"``; arguments in the wire format;
            ``banned`` lists the ATen operators (every overload) that must not run during the call.
        scope: the index of the question's test cell: the call runs in the names as they stood
            after it (:func:`~coursekit.grading.snapshot.question_scope`); ``None``: as they are now.
    """

    KIND: ClassVar[str] = "run_call"
    call: dict[str, Any]
    scope: Union[int, None] = None


@dataclass(frozen=True)
class CellReport:
    """Kernel to runner: how a cell ended. The student's word: the runner caps every field.

    ``memory_at_failure`` is the kernel's address space (bytes) read as the
    cell's exception reached it, while the frames it unwound still held what
    they allocated: a spike shorter than the runner's polls shows there. The
    runner believes it no further than the kernel's lifetime peak.
    """

    KIND: ClassVar[str] = "cell_report"
    index: int
    failed: bool
    ename: str = field(default="", metadata=_text(MAX_ENAME))
    evalue: str = field(default="", metadata=_text(MAX_EVALUE))
    traceback: str = field(default="", metadata=_text(MAX_TRACEBACK))
    stdout: str = field(default="", metadata=_text(MAX_STREAM))
    stderr: str = field(default="", metadata=_text(MAX_STREAM))
    memory_at_failure: int = 0


@dataclass(frozen=True)
class AdapterReport:
    """Kernel to runner: adapter ``index`` ran (or failed; its calls will fail)."""

    KIND: ClassVar[str] = "adapter_report"
    index: int


@dataclass(frozen=True)
class CallReport:
    """Kernel to runner: how a graded call ended (the student's word, checked before it is relayed)."""

    KIND: ClassVar[str] = "call_report"
    call_id: str = field(metadata=_text(MAX_NAME))
    status: CallStatus
    value: Any = None
    grads: list[Any] = field(default_factory=list, metadata={"max_items": MAX_LIST_ITEMS})
    ename: str = field(default="", metadata=_text(MAX_ENAME))
    hits: list[str] = field(default_factory=list, metadata={"max_items": MAX_NAMES, "max": MAX_NAME})
    evalue: str = field(default="", metadata=_text(MAX_EVALUE))


Message = Union[Setup, Calls, Ready, Refused, CellStart, CellEnd, CellsDone, CallStart, CallEnd, Done,
                RunCell, RunAdapter, RunCall, CellReport, AdapterReport, CallReport]


def _kinds(*classes: type) -> Mapping[str, type]:
    return {cls.KIND: cls for cls in classes}  # type: ignore[attr-defined]


#: what the runner may send the grader.
EVENTS = _kinds(Ready, Refused, CellStart, CellEnd, CellsDone, CallStart, CallEnd, Done)
#: what the grader sends the runner, one of each, in this order.
SETUP, CALLS = _kinds(Setup), _kinds(Calls)
#: what the runner sends the kernel, and what it accepts back.
COMMANDS = _kinds(RunCell, RunAdapter, RunCall)
REPORTS = _kinds(CellReport, AdapterReport, CallReport)


def encode(message: Message) -> bytes:
    """One message as one line of JSON (``kind`` first).

    Args:
        message: any message of this module.

    Returns:
        UTF-8 bytes ending in a newline.

    Example:
        >>> encode(Done())
        b'{"kind":"done","stopped_cell":null,"stopped_call":null,"stopped_in_adapter":false,"ignored_reports":0}\\n'
    """
    data: dict[str, Any] = {"kind": message.KIND}
    for item in dataclasses.fields(message):
        value = getattr(message, item.name)
        data[item.name] = value.value if isinstance(value, enum.Enum) else value
    return (json.dumps(data, separators=(",", ":"), allow_nan=False) + "\n").encode()


def _check(name: str, value: object, hint: object, meta: Mapping[str, Any]) -> object:
    """``value`` if it has the type ``hint`` and keeps within ``meta``'s bounds, else ProtocolError."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin is Union:
        if value is None and type(None) in arguments:
            return None
        hint = next(a for a in arguments if a is not type(None))
        return _check(name, value, hint, meta)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise ProtocolError(f"{name} must be one of {[m.value for m in hint]}, got {str(value)[:40]!r}") from None
    if hint is bool or hint is int:
        if type(value) is not hint:
            raise ProtocolError(f"{name} must be {hint.__name__}, got {type(value).__name__}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ProtocolError(f"{name} must be a string, got {type(value).__name__}")
        if len(value) > meta.get("max", MAX_SOURCE):
            raise ProtocolError(f"{name} holds {len(value)} characters, more than {meta.get('max', MAX_SOURCE)}")
        return value
    if origin is list:
        if not isinstance(value, list) or len(value) > meta.get("max_items", 1_000_000):
            raise ProtocolError(f"{name} must be a list of at most {meta.get('max_items', 1_000_000)} items")
        return [_check(f"{name}[]", item, arguments[0], meta) for item in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ProtocolError(f"{name} must be an object, got {type(value).__name__}")
        return {str(k): _check(f"{name}.{k}", v, arguments[1], {}) for k, v in value.items()}
    raise ProtocolError(f"{name}: no rule to check {hint!r}")


def call_id(grade_id: str, index: int) -> str:
    """The id of question ``grade_id``'s call number ``index``, as the grader sends it and every event names it.

    Example:
        >>> call_id("test_token_nll", 3), call_question(call_id("test_token_nll", 3))
        ('test_token_nll#3', 'test_token_nll')
    """
    return f"{grade_id}#{index}"


def call_question(call: str) -> str:
    """The question (its ``grade_id``) that the call with id ``call`` belongs to (see :func:`call_id`)."""
    return call.rpartition("#")[0]


#: how far short of a time limit, as a fraction of it, a step may stop and still count as having reached it.
#: A timer that stopped a step fired at its limit, but the clock that times the step can read a little short of
#: the one the timer counts on: the runner's fallback to ``/proc``'s times, or stock autograde's
#: ``time.process_time``, read several per cent short on a loaded machine.
LIMIT_TOLERANCE = 0.1


def reached_time_limit(cpu_s: float, wall_s: float, limits: Mapping[str, Any]) -> bool:
    """Whether a step that took ``cpu_s`` seconds of CPU and ``wall_s`` of wall clock reached a time limit.

    Args:
        cpu_s, wall_s: the step's times, measured outside the code it ran.
        limits: the step's limits, ``step_cpu_s`` and ``step_wall_s``
            (:meth:`~coursekit.grading.limits.Limits.for_runner`).

    Returns:
        Whether either time is within :data:`LIMIT_TOLERANCE` of its limit, or past it.

    Example:
        >>> limits = {"step_cpu_s": 1.0, "step_wall_s": 3.0}
        >>> [reached_time_limit(cpu, wall, limits) for cpu, wall in [(0.95, 1.0), (0.1, 2.8), (0.5, 1.0)]]
        [True, True, False]
    """
    return (cpu_s >= (1 - LIMIT_TOLERANCE) * float(limits["step_cpu_s"])
            or wall_s >= (1 - LIMIT_TOLERANCE) * float(limits["step_wall_s"]))


def stops_function(event: CallEnd, limits: Mapping[str, Any]) -> bool:
    """Whether a graded call's end stops its function's later calls in its question (they end ``NOT_RUN``).

    Only a call that timed out does: the kernel reported its timer stopped it
    (``TIMEOUT``) and the call's measured times reached the limit. A
    ``TIMEOUT`` for a call that used no such time is the student's own
    ``raise``, and a call that raised its own error is a raised call however
    long it ran. Both graders apply this rule to their own events (the runner,
    and stock autograde's :func:`~coursekit.course.hidden_score.call_ends`),
    so both make the same calls.

    Args:
        event: the call's end, with its measured ``cpu_ms`` and ``wall_ms``.
        limits: the step's limits (see :func:`reached_time_limit`).

    Returns:
        Whether the function's later calls in the question are not made.

    Example:
        >>> limits = {"step_cpu_s": 1.0, "step_wall_s": 3.0}
        >>> stops_function(CallEnd("q#0", CallStatus.TIMEOUT, cpu_ms=1000), limits)
        True
        >>> stops_function(CallEnd("q#0", CallStatus.TIMEOUT, cpu_ms=10), limits)   # a forged timeout
        False
        >>> stops_function(CallEnd("q#0", CallStatus.RAISED, cpu_ms=990), limits)   # its own error, late
        False
    """
    return event.status is CallStatus.TIMEOUT and reached_time_limit(event.cpu_ms / 1000, event.wall_ms / 1000,
                                                                     limits)


def cell_report_bytes(output_cell: int) -> int:
    """The longest :class:`CellReport` line an honest kernel can send when each stream keeps ``output_cell``
    characters.

    Example:
        >>> cell_report_bytes(20_000) == MIN_CELL_REPORT_BYTES, cell_report_bytes(1_000_000) // 2**20
        (True, 11)
    """
    characters = 2 * (int(output_cell) + 100) + MAX_ENAME + MAX_EVALUE + MAX_TRACEBACK
    return max(MIN_CELL_REPORT_BYTES, 6 * characters + 1024)


def call_report_bytes(result_cap: int | None) -> int:
    """The longest :class:`CallReport` line whose value and gradients can keep within ``result_cap``.

    ``result_cap`` counts bytes as :func:`~coursekit.grading.result_budget.wire_size`
    does; JSON may spell each of them in up to :data:`JSON_BYTES_PER_COUNTED`
    bytes, and the rest of the report takes at most :data:`CALL_REPORT_ENVELOPE`.

    Example:
        >>> call_report_bytes(100_000) // 1024, call_report_bytes(None) == MAX_LINE_BYTES
        (1235, True)
    """
    if result_cap is None:
        return MAX_LINE_BYTES
    return min(MAX_LINE_BYTES, JSON_BYTES_PER_COUNTED * int(result_cap) + CALL_REPORT_ENVELOPE)


def brackets(line: bytes) -> int:
    """How many ``{`` and ``[`` ``line`` holds, inside strings or not: at least its JSON objects and arrays.

    ``json.loads`` builds about twenty bytes of Python objects per byte of
    ``[{},{},...]``; counting first, at the speed of a byte search, lets a
    reader refuse such a line before it builds anything.

    Example:
        >>> brackets(b'{"text": "[["}'), brackets(b'[{}, {}, [1]]')
        (3, 4)
    """
    return line.count(b"{") + line.count(b"[")


def decode(line: bytes, kinds: Mapping[str, type], max_line: int | None = MAX_LINE_BYTES,
           max_brackets: int | None = None) -> Any:
    """Parse one line into the message it holds, if its kind is one of ``kinds``.

    Args:
        line: one line (with or without its newline).
        kinds: the acceptable messages (:data:`EVENTS`, :data:`REPORTS`, ...).
        max_line: the longest line accepted; ``None`` only for the grader's own
            :class:`Setup`, which carries the submitted files.
        max_brackets: the most opening brackets the line may hold (see
            :func:`brackets`), checked before it is parsed; ``None``: any.

    Returns:
        The message.

    Raises:
        ProtocolError: not JSON, not an object, an unexpected kind, a missing or
            unknown field, a wrong type, or a bound broken.

    Example:
        >>> decode(b'{"kind": "cell_start", "index": "0"}', EVENTS)
        Traceback (most recent call last):
        ...
        coursekit.grading.protocol.ProtocolError: index must be int, got str
        >>> decode(b'{"kind": "setup"}', EVENTS)
        Traceback (most recent call last):
        ...
        coursekit.grading.protocol.ProtocolError: unexpected message kind 'setup'
    """
    if max_line is not None and len(line) > max_line:
        raise ProtocolError(f"a line of {len(line)} bytes is longer than {max_line}")
    if max_brackets is not None and brackets(line) > max_brackets:
        raise ProtocolError(f"a line holds more than {max_brackets} opening brackets")
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        raise ProtocolError("not a JSON line") from None
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        raise ProtocolError("a message must be a JSON object with a string 'kind'")
    kind = data.pop("kind")
    cls = kinds.get(kind)
    if cls is None:
        raise ProtocolError(f"unexpected message kind {kind[:40]!r}")
    hints = typing.get_type_hints(cls)
    fields = {item.name: item for item in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ProtocolError(f"{cls.KIND} has no field {sorted(unknown)[0][:40]!r}")
    values = {}
    for name, item in fields.items():
        if name not in data:
            if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{cls.KIND} needs the field {name!r}")
            continue
        values[name] = _check(name, data[name], hints[name], item.metadata)
    return cls(**values)


class LineReader:
    """Split a byte stream into lines, dropping any line longer than ``max_line`` as it arrives.

    Work and memory are linear in the input whatever its shape: only the newest
    chunk is searched for newlines, and an over-long line is skipped up to its
    newline instead of being kept.

    Example:
        >>> reader = LineReader(max_line=8)
        >>> reader.feed(b"short\\nmuch too long")
        [b'short']
        >>> reader.feed(b" still\\nok\\n"), reader.oversized
        ([b'ok'], 1)
    """

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self.max_line = max_line
        self.oversized = 0
        self._pending = bytearray()
        self._skipping = False

    @property
    def skipping(self) -> bool:
        """Whether the reader is in an over-long line, dropping it up to its newline."""
        return self._skipping

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add ``chunk``; return the complete lines it finished (without their newlines)."""
        lines: list[bytes] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if not self._skipping:
                if len(self._pending) + len(piece) > self.max_line:
                    self._skipping = True
                    self.oversized += 1
                    self._pending.clear()
                else:
                    self._pending += piece
            if end < 0:
                return lines
            if not self._skipping:
                lines.append(bytes(self._pending))
            self._pending.clear()
            self._skipping = False
            start = end + 1
