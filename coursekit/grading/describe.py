"""Hidden cases in words a student can act on: the options, the edge case, the dtypes and shapes.

A description has two parts. Its *factors* (``reduction='mean'``, ``float32
inputs``, ``a row of mask with no True``, the spec's label for the edge case)
are what a case may share with others; the feedback groups failures by the
factors they have in common (see :mod:`~coursekit.grading.verdicts`). Its
*call* names one case: the function with each argument's dtype and shape.

Arrays are shown by dtype and shape and by what the grader reads off them
(``nan`` present, an all-False row, the negative ids), never by their values;
scalar arguments are the spec's options (``reduction``, ``max_len``, ``alpha``)
and are shown as they are.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

#: magnitude from which a float argument is said to hold large values (a test of overflow).
LARGE = 100.0


@dataclass(frozen=True)
class CaseDescription:
    """What the feedback says about one hidden case.

    Attributes:
        factors: short phrases a failing case may share with others, label first.
        call: the call with every argument's dtype and shape, e.g.
            ``"batch_loss(token_losses float32 (4, 7), mask bool (4, 7), reduction='sum')"``.
        label: the spec's words for the edge case (also the first factor), or empty.
    """

    factors: tuple[str, ...]
    call: str
    label: str = ""


def parameter_names(function: Callable[..., Any]) -> list[str]:
    """The names of ``function``'s positional parameters, in order (empty when they cannot be read).

    Example:
        >>> parameter_names(lambda logits, targets, *, reduction="mean": None)
        ['logits', 'targets']
    """
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _scalar(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else repr(value)
    return repr(value)


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _shown(name: str, value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{name} {value.dtype} {tuple(value.shape)}"
    if isinstance(value, (list, tuple)):
        return f"{name} a list of {len(value)}"
    if _is_scalar(value):
        return f"{name}={_scalar(value)}"
    return f"{name} {type(value).__name__}"


def _notes(name: str, value: object) -> list[str]:
    """What the grader reads off one array argument: nan, inf, large values, empty rows, negative ids."""
    if not isinstance(value, np.ndarray) or value.size == 0:
        return []
    notes = []
    if value.dtype.kind == "f":
        if np.isnan(value).any():
            notes.append(f"nan in {name}")
        if np.isinf(value).any():
            notes.append(f"inf in {name}")
        finite = value[np.isfinite(value)]
        if finite.size and float(np.abs(finite).max()) >= LARGE:
            notes.append(f"{name} with values of magnitude {LARGE:g} or more")
    elif value.dtype.kind == "b":
        if not value.any():
            notes.append(f"{name} all False")
        elif value.ndim >= 2 and value.shape[-1] and not value.any(axis=-1).all():
            notes.append(f"a row of {name} with no True")
    elif value.dtype.kind in "iu":
        negative = sorted({int(v) for v in np.unique(value) if v < 0})
        if negative:
            notes.append(f"{name} holding {', '.join(str(v) for v in negative[:2])}")
    return notes


def describe_case(function: str, names: Sequence[str], args: Sequence[Any], kwargs: dict[str, Any], *,
                  label: str = "", hidden_options: Sequence[str] = ()) -> CaseDescription:
    """Describe one hidden case for the feedback.

    Args:
        function: the student's function name.
        names: the names of the positional parameters (``arg0``, ``arg1``... where missing).
        args: the case's positional arguments (NumPy arrays, lists, scalars).
        kwargs: its keyword arguments.
        label: the spec's words for the edge case it is (first factor when given).
        hidden_options: keyword arguments that only an adapter reads, left out.

    Returns:
        The description.

    Example:
        >>> mask = np.array([[True, False], [False, False]])
        >>> d = describe_case("batch_loss", ["token_losses", "mask"], [np.zeros((2, 2), np.float32), mask],
        ...                   {"reduction": "sum"}, label="an all-padding row")
        >>> d.factors
        ('an all-padding row', "reduction='sum'", 'float32 inputs', 'a row of mask with no True')
        >>> d.call
        "batch_loss(token_losses float32 (2, 2), mask bool (2, 2), reduction='sum')"
    """
    named = [(names[i] if i < len(names) else f"arg{i}", value) for i, value in enumerate(args)]
    named += [(key, value) for key, value in kwargs.items() if key not in hidden_options]
    factors = [label] if label else []
    factors += [f"{name}={_scalar(value)}" for name, value in named if _is_scalar(value)]
    float_dtypes = sorted({str(v.dtype) for _, v in named if isinstance(v, np.ndarray) and v.dtype.kind == "f"})
    if len(float_dtypes) == 1:
        factors.append(f"{float_dtypes[0]} inputs")
    for name, value in named:
        factors += _notes(name, value)
    call = f"{function}({', '.join(_shown(name, value) for name, value in named)})"
    return CaseDescription(tuple(factors), call, label)
