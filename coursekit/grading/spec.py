"""Grading specs: for each autograder test cell, how the grader checks it out of process.

A spec lives in ``assignments/autograde/<assignment>.py`` (outside ``source/``,
so it is not copied into the release and never mounted into the sandbox; it is
public in this repository, like the source notebooks' solutions) and defines a
module-level ``SPEC = AssignmentSpec(...)``. Each question names the
nbgrader ``grade_id`` it scores, the student function (or module-level
variable) to read, how to generate hidden inputs, the ``coursekit`` reference
to compare against, the tolerances and the points.

The hidden inputs are drawn from a seed of their own for every student
(:func:`hidden_seed`: the course's grading secret, the spec's seed, the
course, the assignment and the student), so inputs that leak from one
notebook fit no other. The spec's seed is public (the specs are in the
course's repository); the secret is not (see :mod:`~coursekit.grading.secret`),
so no student can draw their own inputs outside the grader. They are
generated, and the references computed, in the grader's own process.

A :class:`CheckedQuestion` (a training loop, say) is judged on data of the
spec's own, drawn from :func:`check_seed`: keyed by the secret too, so no
student can draw it, but the same for every student, so that every trained
model meets the same bar.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib.util
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, Union

import numpy as np
import torch

from coursekit.grading.graded_call import GRADER_OPERATORS
from coursekit.grading.protocol import call_id
from coursekit.grading.describe import CaseDescription, describe_case, parameter_names
from coursekit.grading.vjp import vector_jacobian_product
from coursekit.grading.wire import encode_value


@dataclass(frozen=True)
class Case:
    """One hidden input: positional and keyword arguments (NumPy arrays and plain scalars).

    Attributes:
        args, kwargs: the arguments.
        grad_wrt: when set, overrides the question's for this case.
        label: the edge case it is, in the student's words ("a row with no unmasked
            token"); the feedback names it (see :mod:`~coursekit.grading.describe`).
        raises: the exception class the function must raise on this input
            (``"ValueError"``); the reference must raise it too. Empty: it must return.
        naming: with ``raises``, a word the exception's message must contain (the
            argument it names, as the notebook asks).
        atol: when set, the absolute tolerance of this case's outputs and gradients in place of
            the question's: for float32 inputs of large magnitude, where a correct answer that
            adds and subtracts in another order than the reference differs from it by a few
            units in the last place of that magnitude, not of the result.

    Example:
        >>> Case((np.zeros(3),), {"reduction": "sum"}).kwargs
        {'reduction': 'sum'}
        >>> Case((np.zeros(3),), naming="x")
        Traceback (most recent call last):
        ...
        ValueError: Case.naming needs Case.raises, got naming='x' and raises=''
    """

    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    grad_wrt: tuple[int, ...] | None = None
    label: str = ""
    raises: str = ""
    naming: str = ""
    atol: float | None = None

    def __post_init__(self) -> None:
        if self.naming and not self.raises:
            raise ValueError(f"Case.naming needs Case.raises, got naming={self.naming!r} and raises={self.raises!r}")


@dataclass(frozen=True)
class ExpectedRaise:
    """The expected outcome of a case that must raise: the class's name and a word its message must hold.

    Example:
        >>> ExpectedRaise("ValueError", "reduction").ename
        'ValueError'
    """

    ename: str
    naming: str = ""


@dataclass(frozen=True)
class BannedOp:
    """A PyTorch operator that a question's function must not run (``F.ctc_loss`` for a CTC exercise).

    The ban is on the ATen operator, below every Python name: during the
    question's graded calls the operator's CPU kernels (dense, sparse and the
    other layouts) raise, so a call through an alias, ``getattr`` or
    ``torch.ops.aten`` earns nothing. Outside the graded calls the notebook may
    use it (to check an answer against it, say); comments and strings are
    never read. The ban is a deterrent, not a wall: it is put in place inside
    the process that runs the student's code, and a cell that patches the
    grader's kernel module or ``torch.library`` switches it off (see
    :mod:`coursekit.grading.kernel`). A route that computes the same values
    through other operators (``logsumexp``, say) is not banned either.

    Attributes:
        aten: the operator's name in ``torch.ops.aten`` (all its overloads are banned),
            e.g. ``"_ctc_loss"``, which ``F.ctc_loss`` runs.
        shown_as: how the feedback names it, e.g. ``"F.ctc_loss"``.

    Example:
        >>> BannedOp("_ctc_loss", "F.ctc_loss").shown_as
        'F.ctc_loss'
        >>> BannedOp("no_such_op", "?")
        Traceback (most recent call last):
        ...
        ValueError: BannedOp.aten must name an operator of torch.ops.aten, got 'no_such_op'

    The operators the graders may run in a graded call (:data:`~coursekit.grading.graded_call.GRADER_OPERATORS`)
    cannot be banned. The functions the spec's adapters define run inside the ban when a graded call calls them,
    so they must not run a banned operator (a5's CTC adapter runs ``log_softmax``: a5 could not ban
    ``_log_softmax``).
    """

    aten: str
    shown_as: str

    def __post_init__(self) -> None:
        try:
            getattr(torch.ops.aten, self.aten)
        except (AttributeError, RuntimeError):
            raise ValueError(f"BannedOp.aten must name an operator of torch.ops.aten, got {self.aten!r}") from None
        if self.aten in GRADER_OPERATORS:
            raise ValueError(f"BannedOp.aten cannot be {self.aten!r}: the graders may run it inside a graded call "
                             f"(coursekit.grading.graded_call.GRADER_OPERATORS: {sorted(GRADER_OPERATORS)})")


def _in_coursekit(function: object) -> bool:
    return str(getattr(function, "__module__", "")).startswith("coursekit.")


def _check_withholds(withholds: object) -> None:
    if not isinstance(withholds, tuple) or not all(callable(f) and _in_coursekit(f) for f in withholds):
        raise ValueError(f"withholds must be a tuple of coursekit functions, got {withholds!r}")


def withheld_name(function: Callable[..., Any]) -> str:
    """``module.name`` of a withheld ``coursekit`` function: the name of its stand-in in the sandbox.

    Example:
        >>> from coursekit.losses import ctc_loss
        >>> withheld_name(ctc_loss)
        'coursekit.losses.ctc.ctc_loss'
    """
    return f"{function.__module__}.{function.__name__}"


@dataclass(frozen=True)
class FunctionQuestion:
    """A question graded by calling a student function on hidden cases.

    Attributes:
        grade_id: the nbgrader grade_id of the autograder test cell it scores.
        function: the student function's name in the notebook.
        points: the cell's max points (must equal the gradebook's).
        cases: ``rng -> list[Case]``; the hidden inputs.
        reference: the function the answers are compared with (called on torch tensors).
        rtol, atol: tolerances for float outputs and gradients.
        grad_wrt: positions of float arguments whose gradients are compared too.
        banned: PyTorch operators the function must not run (see :class:`BannedOp`).
        adapter: optional source run in the sandbox after the student's cells that
            defines ``function`` on top of the student's code, for answers whose
            arguments are not plain arrays (a model, a list of batches). It only
            reshapes data: the outputs are still compared with ``reference``
            in the grader's process.
        student_function: with an adapter, the student's function it wraps
            (named in feedback, and withheld from the sandbox like ``function``).
        withholds: ``coursekit`` functions that compute the answer and must not be in
            the sandbox, named explicitly: a reference written in the spec file
            (``_reference_ctc``) hides the library function it calls, whatever the
            student's function is called. ``reference`` itself is withheld when it
            lives in ``coursekit``.
        outputs: with an adapter that returns a list, what each item is ("the loss",
            "input_ids after the call"), so the feedback names the item that differs.
        adapter_options: keyword arguments that only the adapter reads (left out of
            the feedback's description of a case).
        options: the reference's positional parameters whose scalar values are options
            (``max_len``): shown in the feedback and grouped by, like every keyword
            argument. Any other positional scalar is a hidden input, shown by its
            type only (see :mod:`~coursekit.grading.describe`).
    """

    grade_id: str
    function: str
    points: float
    cases: Callable[[np.random.Generator], Sequence[Case]]
    reference: Callable[..., Any]
    rtol: float = 1e-5
    atol: float = 1e-6
    grad_wrt: tuple[int, ...] = ()
    banned: tuple[BannedOp, ...] = ()
    adapter: str = ""
    student_function: str = ""
    withholds: tuple[Callable[..., Any], ...] = ()
    outputs: tuple[str, ...] = ()
    adapter_options: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_withholds(self.withholds)
        unknown = sorted(set(self.options) - set(parameter_names(self.reference)))
        if unknown:
            raise ValueError(f"{self.grade_id}: options must name positional parameters of the reference "
                             f"{parameter_names(self.reference)}, got {unknown}")


@dataclass(frozen=True)
class ValueQuestion:
    """A question graded by reading module-level variables (multiple choice, computed numbers).

    Attributes:
        grade_id: the nbgrader grade_id of the autograder test cell it scores.
        points: the cell's max points, shared equally between the variables.
        answers: variable name -> accepted answers, each a string or a float (``2.0``,
            not ``2``); strings compare after strip/casefold, floats by value with
            tolerance, whatever the student's numeric type: a float, an int, or a
            one-element array of any floating or integer dtype (a bool is not a number
            here; see :func:`~coursekit.grading.verdicts.compare`).

    Raises:
        ValueError: an accepted answer is neither a string nor a float (an int would be
            compared exactly, and refuse a student's ``2.0``).
    """

    grade_id: str
    points: float
    answers: dict[str, tuple[Union[str, float], ...]]
    rtol: float = 1e-5
    atol: float = 1e-6

    def __post_init__(self) -> None:
        for name, accepted in self.answers.items():
            for index, answer in enumerate(accepted):
                if not isinstance(answer, (str, float)):
                    raise ValueError(f"{self.grade_id}: answers[{name!r}][{index}] must be a str or a float "
                                     f"(2.0, not 2), got {type(answer).__name__} {answer!r}")


@dataclass(frozen=True)
class CheckedQuestion:
    """A question whose answer has no single right value, checked by the grader on what came back.

    For a training loop, say: the sandbox runs the student's function (through
    an adapter that builds the model from the case's seed and returns the
    trained parameters as plain arrays), and ``check`` then judges those
    numbers in the grader's own process, for instance by loading them into a
    model built there and measuring it on data the student never saw: data
    drawn from the check's seed (:func:`check_seed`), which the sandbox never
    receives.

    Attributes:
        grade_id: the nbgrader grade_id of the autograder test cell it scores.
        function: the function called in the sandbox (usually the adapter's).
        points: the cell's max points, shared equally between the cases.
        cases: ``rng -> list[Case]``; the inputs sent to the sandbox.
        check: ``(value, case, check_seed) -> None | str``: ``None`` when the
            decoded value (arrays, numbers, strings, lists) is acceptable for
            ``case``, else a short reason that reveals nothing hidden;
            ``check_seed`` (:func:`check_seed`) seeds the data it measures on.
            An exception it raises counts as a failed case, never as a crash of the grader.
        banned, adapter, student_function, withholds: as for :class:`FunctionQuestion`.
    """

    grade_id: str
    function: str
    points: float
    cases: Callable[[np.random.Generator], Sequence[Case]]
    check: Callable[[Any, Case, int], Union[str, None]]
    banned: tuple[BannedOp, ...] = ()
    adapter: str = ""
    student_function: str = ""
    withholds: tuple[Callable[..., Any], ...] = ()

    def __post_init__(self) -> None:
        _check_withholds(self.withholds)


Question = Union[FunctionQuestion, ValueQuestion, CheckedQuestion]


@dataclass(frozen=True)
class AssignmentSpec:
    """All the out-of-process checks of one assignment notebook.

    Attributes:
        assignment: nbgrader assignment id.
        notebook: the notebook's name without ``.ipynb``.
        seed: the spec's part of every student's seed of hidden inputs; public, like
            the spec file (the private part is the course's grading secret).
        questions: one per autograder test cell.
        memory_budget_mb: when set, the address space the notebook's code may
            add to a process that has imported NumPy and torch. The runner
            lowers its hard limit to that before any student code runs, so no
            cell can lift it; a question then asks for a case too large for an
            answer that materialises what it should not (all the logits, say).
    """

    assignment: str
    notebook: str
    seed: int
    questions: tuple[Question, ...]
    memory_budget_mb: int | None = None

    def __post_init__(self) -> None:
        ids = [q.grade_id for q in self.questions]
        if len(set(ids)) != len(ids):
            raise ValueError(f"questions must have distinct grade_id values, got {ids}")
        budget = self.memory_budget_mb
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 64):
            raise ValueError(f"memory_budget_mb must be None or an int >= 64, got {budget!r}")


@dataclass(frozen=True)
class CheckedCase:
    """What a :class:`CheckedQuestion`'s check receives beside the value: the case and the check's seed.

    Attributes:
        case: the case the sandbox was called with.
        check_seed: :func:`check_seed`, which never reaches the sandbox.
    """

    case: Case
    check_seed: int


@dataclass
class PreparedCall:
    """One call the runner makes, with the reference answer kept on the grader's side.

    ``expected`` is the reference output, an :class:`ExpectedRaise`, the
    accepted answers of a :class:`ValueQuestion`, or the :class:`CheckedCase` a
    :class:`CheckedQuestion`'s check receives. ``description`` is what the
    feedback says about the case (``None`` for a variable).
    """

    call: dict[str, Any]
    expected: Any
    expected_grads: list[np.ndarray]
    description: CaseDescription | None = None
    atol: float | None = None


def load_spec(path: Path) -> AssignmentSpec:
    """Import a spec file and return its ``SPEC``.

    Args:
        path: ``assignments/autograde/<assignment>.py``.

    Returns:
        The spec.

    Raises:
        FileNotFoundError: no such file.
        TypeError: the file defines no ``SPEC`` of type :class:`AssignmentSpec`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"spec file {path} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"coursekit_autograde_{path.stem}", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, AssignmentSpec):
        raise TypeError(f"spec file {path} must define SPEC = AssignmentSpec(...), got {type(spec).__name__}")
    return spec


def _require_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or not secret:
        raise TypeError(f"secret must be non-empty bytes (the course's grading secret), got {type(secret).__name__}"
                        f"{' of length 0' if isinstance(secret, bytes) else ''}")


def hidden_seed(spec: AssignmentSpec, course: str, student: str, secret: bytes) -> int:
    """The seed of one student's hidden inputs: spec seed, course, assignment and student, keyed by the secret.

    Args:
        spec: the assignment's spec (its public ``seed`` and its ``assignment`` id).
        course: the nbgrader course id.
        student: the student id.
        secret: the course's grading secret (:func:`~coursekit.grading.secret.load_secret`),
            which the hash is keyed with: without it the seed cannot be computed.

    Returns:
        A 128-bit integer.

    Raises:
        TypeError: ``secret`` is not non-empty bytes.

    Example:
        >>> spec = AssignmentSpec("a1", "a1", 7, ())
        >>> hidden_seed(spec, "seqloss", "ada", b"k" * 32) == hidden_seed(spec, "seqloss", "ada", b"k" * 32)
        True
        >>> len({hidden_seed(spec, c, s, k) for c in ("seqloss", "other") for s in ("ada", "bob")
        ...      for k in (b"k" * 32, b"j" * 32)})
        8
    """
    _require_secret(secret)
    material = "\x1f".join([str(spec.seed), course, spec.assignment, student]).encode()
    return int.from_bytes(hmac.new(secret, material, hashlib.sha256).digest()[:16], "little")


def _rng(seed: int, grade_id: str, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(grade_id.encode()), index])


def graded_names(spec: AssignmentSpec) -> set[str]:
    """The names of every function the assignment grades: the student's, the references', the ones it withholds.

    The sandbox withholds every ``coursekit`` module that defines one of them
    (see :mod:`~coursekit.grading.package_view`).

    Example:
        >>> from coursekit.losses import ctc_loss, token_nll
        >>> question = FunctionQuestion("t", "nll", 1, list, token_nll, withholds=(ctc_loss,))
        >>> sorted(graded_names(AssignmentSpec("a", "a", 0, (question,))))
        ['ctc_loss', 'nll', 'token_nll']
    """
    names: set[str] = set()
    for question in spec.questions:
        names.update(function.__name__ for function in withheld_functions(question))
        if not isinstance(question, ValueQuestion):
            names.update(n for n in (question.function, question.student_function) if n)
    return names


def withheld_functions(question: Question) -> list[Callable[..., Any]]:
    """The ``coursekit`` functions that ``question`` keeps out of the sandbox: its reference and its ``withholds``.

    Example:
        >>> from coursekit.losses import token_nll
        >>> [f.__name__ for f in withheld_functions(FunctionQuestion("t", "nll", 1, list, token_nll))]
        ['token_nll']
    """
    if isinstance(question, ValueQuestion):
        return []
    reference = getattr(question, "reference", None)
    found = [reference] if reference is not None and _in_coursekit(reference) else []
    return found + list(question.withholds)


def _to_torch(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, (list, tuple)):
        return type(value)(_to_torch(v) for v in value)
    return value


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    if isinstance(value, (list, tuple)):
        return [_to_numpy(v) for v in value]
    return value


def adapters(spec: AssignmentSpec) -> list[str]:
    """The adapter sources of the spec's questions, in question order.

    Example:
        >>> adapters(AssignmentSpec("a", "a", 0, ()))
        []
    """
    return [q.adapter for q in spec.questions if isinstance(q, (FunctionQuestion, CheckedQuestion)) and q.adapter]


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Compute references on one thread: the sandboxes have the other cores, and tiny tensors gain nothing."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


#: what :func:`check_seed` hashes beside the spec's seed and assignment: the same for every course and student.
CHECK_DATA_LABEL = "check data"


def check_seed(spec: AssignmentSpec, secret: bytes) -> int:
    """The seed of the data an assignment's checks measure trained models on: keyed by the secret, one per assignment.

    The same for every student (every trained model meets the same bar) and
    every course that shares the secret; without the secret it cannot be
    computed, so no student can draw the check's data at home. It reaches
    the student's kernel only under stock ``nbgrader autograde``
    (:mod:`coursekit.course.kernel_seed`), never the sandbox.

    Args:
        spec: the assignment's spec (its public ``seed`` and its ``assignment`` id).
        secret: the course's grading secret (:func:`~coursekit.grading.secret.load_secret`).

    Returns:
        A 128-bit integer.

    Raises:
        TypeError: ``secret`` is not non-empty bytes.

    Example:
        >>> spec = AssignmentSpec("a3", "a3", 7, ())
        >>> check_seed(spec, b"k" * 32) == check_seed(spec, b"k" * 32) != check_seed(spec, b"j" * 32)
        True
        >>> check_seed(spec, b"k" * 32) == check_seed(AssignmentSpec("a4", "a4", 7, ()), b"k" * 32)
        False
    """
    _require_secret(secret)
    material = "\x1f".join([str(spec.seed), spec.assignment, CHECK_DATA_LABEL]).encode()
    return int.from_bytes(hmac.new(secret, material, hashlib.sha256).digest()[:16], "little")


def prepare_calls(spec: AssignmentSpec, *, course: str, student: str,
                  secret: bytes) -> dict[str, list[PreparedCall]]:
    """Generate one student's hidden calls and their reference answers, grouped by grade_id.

    The result depends only on the spec and :func:`hidden_seed`'s arguments, so
    a student gets the same inputs on every executor and every regrade. That is
    by design (a regrade reproduces the grade), and it means that inputs which
    reach a student once are valid for that student's later submissions of
    the same assignment. So the feedback quotes neither them nor anything the
    student's code chose: it describes a case by its options and the dtypes and
    shapes of its arrays, and a failure in the grader's own words, with at most
    one position and the reference's value there (see
    :mod:`~coursekit.grading.verdicts`).

    Args:
        spec: the assignment's spec.
        course: the nbgrader course id.
        student: the student id.
        secret: the course's grading secret (see :func:`hidden_seed` and :func:`check_seed`).

    Returns:
        ``{grade_id: [PreparedCall, ...]}`` in question order.
    """
    return prepare_seeded_calls(spec, hidden_seed(spec, course, student, secret), check_seed(spec, secret))


def prepare_seeded_calls(spec: AssignmentSpec, seed: int, checks_seed: int) -> dict[str, list[PreparedCall]]:
    """:func:`prepare_calls` from seeds computed already, without the secret.

    Stock ``nbgrader autograde`` hands the student's kernel these seeds, never
    the secret (:mod:`coursekit.course.kernel_seed`).

    Args:
        spec: the assignment's spec.
        seed: the student's :func:`hidden_seed`.
        checks_seed: the assignment's :func:`check_seed`.

    Returns:
        ``{grade_id: [PreparedCall, ...]}`` in question order.

    Example:
        >>> spec = AssignmentSpec("a1", "a1", 7, ())
        >>> prepare_seeded_calls(spec, hidden_seed(spec, "seqloss", "ada", b"k" * 32), check_seed(spec, b"k" * 32))
        {}
    """
    with _one_torch_thread():
        return _prepare_calls(spec, seed, checks_seed)


def _call(question: FunctionQuestion | CheckedQuestion, index: int, case: Case) -> dict[str, Any]:
    return {
        "id": call_id(question.grade_id, index),
        "kind": "function",
        "name": question.function,
        "tensors": True,
        "args": [encode_value(a) for a in case.args],
        "kwargs": {k: encode_value(v) for k, v in case.kwargs.items()},
        "banned": [op.aten for op in question.banned],
    }


def _description(question: FunctionQuestion, case: Case, names: list[str]) -> CaseDescription:
    return describe_case(question.student_function or question.function, names, case.args, case.kwargs,
                         label=case.label, hidden_options=question.adapter_options, options=question.options)


def _expected_raise(question: FunctionQuestion, case: Case) -> ExpectedRaise:
    """Check that the reference raises what ``case`` says the student's function must raise."""
    try:
        question.reference(*[_to_torch(a) for a in case.args], **{k: _to_torch(v) for k, v in case.kwargs.items()})
    except Exception as error:  # noqa: BLE001 - the reference's own exception is the point
        if type(error).__name__ != case.raises or case.naming not in str(error):
            raise ValueError(f"{question.grade_id}: the reference raised {type(error).__name__}({error}), "
                             f"but the case expects {case.raises} naming {case.naming!r}") from error
        return ExpectedRaise(case.raises, case.naming)
    raise ValueError(f"{question.grade_id}: the case expects {case.raises}, but the reference returned")


def _function_call(question: FunctionQuestion, seed: int, index: int, case: Case, names: list[str]) -> PreparedCall:
    call = _call(question, index, case)
    description = _description(question, case, names)
    if case.raises:
        return PreparedCall(call, _expected_raise(question, case), [], description)
    grad_wrt = question.grad_wrt if case.grad_wrt is None else case.grad_wrt
    torch_args = [_to_torch(a) for a in case.args]
    for position in grad_wrt:
        torch_args[position] = torch_args[position].requires_grad_(True)
    torch_kwargs = {k: _to_torch(v) for k, v in case.kwargs.items()}
    output = question.reference(*torch_args, **torch_kwargs)
    grads: list[np.ndarray] = []
    if grad_wrt:
        cotangent = _rng(seed, question.grade_id, index + 1).standard_normal(tuple(output.shape))
        cotangent = cotangent.astype(_to_numpy(output).dtype)
        inputs = [torch_args[p] for p in grad_wrt]
        # An input the loss treats as a constant has gradient zero (the runner does the same).
        grads = [_to_numpy(g) for g in vector_jacobian_product(output, inputs, torch.from_numpy(cotangent))]
        call.update(grad_wrt=list(grad_wrt), cotangent=encode_value(cotangent))
    return PreparedCall(call, _to_numpy(output), grads, description, atol=case.atol)


def _prepare_calls(spec: AssignmentSpec, seed: int, checks_seed: int) -> dict[str, list[PreparedCall]]:
    prepared: dict[str, list[PreparedCall]] = {}
    for question in spec.questions:
        if isinstance(question, ValueQuestion):
            prepared[question.grade_id] = [
                PreparedCall(
                    {"id": call_id(question.grade_id, index), "kind": "variable", "name": name,
                     "tensors": False, "args": [], "kwargs": {}, "banned": []},
                    accepted,
                    [],
                )
                for index, (name, accepted) in enumerate(question.answers.items())
            ]
            continue
        cases = question.cases(_rng(seed, question.grade_id))
        if isinstance(question, CheckedQuestion):
            prepared[question.grade_id] = [
                PreparedCall(_call(question, index, case), CheckedCase(case, checks_seed), [])
                for index, case in enumerate(cases)
            ]
            continue
        names = parameter_names(question.reference)
        prepared[question.grade_id] = [_function_call(question, seed, index, case, names)
                                       for index, case in enumerate(cases)]
    return prepared
