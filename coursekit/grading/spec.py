"""Grading specs: for each autograder test cell, how the grader checks it out of process.

A spec lives in ``assignments/autograde/<assignment>.py`` (outside ``source/``,
so it is never released and never mounted into the sandbox) and defines a
module-level ``SPEC = AssignmentSpec(...)``. Each question names the
nbgrader ``grade_id`` it scores, the student function (or module-level
variable) to read, how to generate hidden inputs from the spec's private seed,
the ``coursekit`` reference to compare against, the tolerances and the points.

Inputs are generated, and references computed, in the grader's own process.
"""

from __future__ import annotations

import importlib.util
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np
import torch

from coursekit.grading.wire import encode_value


@dataclass(frozen=True)
class Case:
    """One hidden input: positional and keyword arguments (NumPy arrays and plain scalars).

    ``grad_wrt``, when set, overrides the question's for this case.

    Example:
        >>> Case((np.zeros(3),), {"reduction": "sum"}).kwargs
        {'reduction': 'sum'}
    """

    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    grad_wrt: tuple[int, ...] | None = None


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
        banned: names that must not appear in the source of the cell defining the
            function (read by the grader from the notebook, e.g. ``"cross_entropy"``).
        adapter: optional source run in the sandbox after the student's cells that
            defines ``function`` on top of the student's code, for answers whose
            arguments are not plain arrays (a model, a list of batches). It only
            reshapes data: the outputs are still compared with ``reference``
            in the grader's process.
        student_function: with an adapter, the student's function it wraps
            (whose defining cell ``banned`` is checked against).
    """

    grade_id: str
    function: str
    points: float
    cases: Callable[[np.random.Generator], Sequence[Case]]
    reference: Callable[..., Any]
    rtol: float = 1e-5
    atol: float = 1e-6
    grad_wrt: tuple[int, ...] = ()
    banned: tuple[str, ...] = ()
    adapter: str = ""
    student_function: str = ""


@dataclass(frozen=True)
class ValueQuestion:
    """A question graded by reading module-level variables (multiple choice, computed numbers).

    Attributes:
        grade_id: the nbgrader grade_id of the autograder test cell it scores.
        points: the cell's max points, shared equally between the variables.
        answers: variable name -> accepted answers; strings compare after
            strip/casefold, numbers with tolerance (a one-element array counts as its number).
    """

    grade_id: str
    points: float
    answers: dict[str, tuple[Union[str, float], ...]]
    rtol: float = 1e-5
    atol: float = 1e-6


@dataclass(frozen=True)
class CheckedQuestion:
    """A question whose answer has no single right value, checked by the grader on what came back.

    For a training loop, say: the sandbox runs the student's function (through
    an adapter that builds the model from the case's seed and returns the
    trained parameters as plain arrays), and ``check`` then judges those
    numbers in the grader's own process, for instance by loading them into a
    model built there and measuring it on data the student never saw.

    Attributes:
        grade_id: the nbgrader grade_id of the autograder test cell it scores.
        function: the function called in the sandbox (usually the adapter's).
        points: the cell's max points, shared equally between the cases.
        cases: ``rng -> list[Case]``; the inputs sent to the sandbox.
        check: ``(value, case) -> None | str``: ``None`` when the decoded value
            (arrays, numbers, strings, lists) is acceptable for ``case``, else a
            short reason that reveals nothing hidden. An exception it raises
            counts as a failed case, never as a crash of the grader.
        banned, adapter, student_function: as for :class:`FunctionQuestion`.
    """

    grade_id: str
    function: str
    points: float
    cases: Callable[[np.random.Generator], Sequence[Case]]
    check: Callable[[Any, Case], Union[str, None]]
    banned: tuple[str, ...] = ()
    adapter: str = ""
    student_function: str = ""


Question = Union[FunctionQuestion, ValueQuestion, CheckedQuestion]


@dataclass(frozen=True)
class AssignmentSpec:
    """All the out-of-process checks of one assignment notebook.

    Attributes:
        assignment: nbgrader assignment id.
        notebook: the notebook's name without ``.ipynb``.
        seed: private seed of the hidden inputs (never released).
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


@dataclass
class PreparedCall:
    """One call the runner makes, with the reference answer kept on the grader's side.

    ``expected`` is the reference output, the accepted answers of a
    :class:`ValueQuestion`, or the :class:`Case` a :class:`CheckedQuestion`'s
    check receives.
    """

    call: dict[str, Any]
    expected: Any
    expected_grads: list[np.ndarray]


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


def _rng(seed: int, grade_id: str, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(grade_id.encode()), index])


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


def prepare_calls(spec: AssignmentSpec) -> dict[str, list[PreparedCall]]:
    """Generate every hidden call and its reference answer, grouped by grade_id.

    The result depends only on the spec (its seed and functions), so every
    submission, on every executor, gets the same inputs.

    Args:
        spec: the assignment's spec.

    Returns:
        ``{grade_id: [PreparedCall, ...]}`` in question order.
    """
    prepared: dict[str, list[PreparedCall]] = {}
    for question in spec.questions:
        if isinstance(question, ValueQuestion):
            prepared[question.grade_id] = [
                PreparedCall(
                    {"id": f"{question.grade_id}#{index}", "kind": "variable", "name": name,
                     "tensors": False, "args": [], "kwargs": {}},
                    accepted,
                    [],
                )
                for index, (name, accepted) in enumerate(question.answers.items())
            ]
            continue
        if isinstance(question, CheckedQuestion):
            prepared[question.grade_id] = [
                PreparedCall(
                    {"id": f"{question.grade_id}#{index}", "kind": "function", "name": question.function,
                     "tensors": True, "args": [encode_value(a) for a in case.args],
                     "kwargs": {k: encode_value(v) for k, v in case.kwargs.items()}},
                    case,
                    [],
                )
                for index, case in enumerate(question.cases(_rng(spec.seed, question.grade_id)))
            ]
            continue
        calls = []
        for index, case in enumerate(question.cases(_rng(spec.seed, question.grade_id))):
            grad_wrt = question.grad_wrt if case.grad_wrt is None else case.grad_wrt
            torch_args = [_to_torch(a) for a in case.args]
            for position in grad_wrt:
                torch_args[position] = torch_args[position].requires_grad_(True)
            torch_kwargs = {k: _to_torch(v) for k, v in case.kwargs.items()}
            output = question.reference(*torch_args, **torch_kwargs)
            call: dict[str, Any] = {
                "id": f"{question.grade_id}#{index}",
                "kind": "function",
                "name": question.function,
                "tensors": True,
                "args": [encode_value(a) for a in case.args],
                "kwargs": {k: encode_value(v) for k, v in case.kwargs.items()},
            }
            grads: list[np.ndarray] = []
            if grad_wrt:
                cotangent = _rng(spec.seed, question.grade_id, index + 1).standard_normal(tuple(output.shape))
                cotangent = cotangent.astype(_to_numpy(output).dtype)
                inputs = [torch_args[p] for p in grad_wrt]
                raw = torch.autograd.grad(output, inputs, torch.from_numpy(cotangent), allow_unused=True)
                # An input the loss treats as a constant has gradient zero (the runner does the same).
                grads = [_to_numpy(torch.zeros_like(x) if g is None else g) for g, x in zip(raw, inputs)]
                call.update(grad_wrt=list(grad_wrt), cotangent=encode_value(cotangent))
            calls.append(PreparedCall(call, _to_numpy(output), grads))
        prepared[question.grade_id] = calls
    return prepared
