"""Hidden cases in words a student can act on: the options, the edge case, the dtypes and shapes.

A description has two parts. Its *factors* (``reduction='mean'``, ``float32
inputs``, ``a row of mask with no True``, the spec's label for the edge case)
are what a case may share with others; the feedback groups failures by the
factors they have in common (see :mod:`~coursekit.grading.verdicts`). Its
*call* names one case: the function with each argument's dtype and shape.

Arrays are shown by dtype and shape and by what the grader reads off them
(``nan`` present, an all-False row, the negative ids), never by their values.
A scalar argument is shown as it is, and is a factor, only when the spec calls
it an *option*: every keyword argument (``reduction``, ``alpha``) and the
positional parameters a question lists in its ``options`` (``max_len``). Any
other scalar is a hidden input drawn like the arrays (a1's ``mean_nll``) and is
shown by its type alone (``mean_nll float``), never as a factor, since a
factor that differs per student would split the class report's groups.
``None`` is shown as it is: it carries no value.
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Collection, Sequence

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
        restated: the option factors that the label already names with their value
            (``ignore_index=-1`` under ``an ignore_index of -1``): kept for grouping,
            left out of a line that names the label.
        dtype: the factor saying the dtype of all the float arrays (``float32 inputs``), or empty.
    """

    factors: tuple[str, ...]
    call: str
    label: str = ""
    restated: tuple[str, ...] = ()
    dtype: str = ""


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


def _shown(name: str, value: object, option: bool) -> str:
    if _is_scalar(value) and not option and value is not None:
        return f"{name} {type(value).__name__}"
    if isinstance(value, np.ndarray):
        return f"{name} {value.dtype} {tuple(value.shape)}"
    if isinstance(value, (list, tuple)):
        return f"{name} a list of {len(value)}"
    if _is_scalar(value):
        return f"{name}={_scalar(value)}"
    return f"{name} {type(value).__name__}"


def _names(label: str, name: str, value: object) -> bool:
    """Whether ``label`` names the option ``name`` with its value, as ``an ignore_index of -1`` does."""
    def said(word: str) -> bool:
        return re.search(rf"(?<![\w.-]){re.escape(word)}(?![\w.])", label) is not None
    return said(name) and (said(str(value)) or said(_scalar(value)))


#: Negative ids a case may hold that say nothing of a student's inputs: PyTorch's default ``ignore_index``.
PUBLIC_NEGATIVE_IDS = frozenset({-100})


def _notes(name: str, value: object, public_ids: frozenset[int] = PUBLIC_NEGATIVE_IDS) -> list[str]:
    """What the grader reads off one array argument: nan, inf, large values, empty rows, negative ids.

    A negative id is shown by its value only when it is public (``public_ids``: the default
    ``ignore_index`` and the case's own negative options); another may have been drawn for the
    student, so it is only said to be there.
    """
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
        shown = [str(v) for v in negative if v in public_ids][:2]
        others = any(v not in public_ids for v in negative)
        if shown:
            notes.append(f"{name} holding {', '.join(shown)}" + (" and other negative values" if others else ""))
        elif others:
            notes.append(f"negative values in {name}")
    return notes


def describe_case(function: str, names: Sequence[str], args: Sequence[Any], kwargs: dict[str, Any], *,
                  label: str = "", hidden_options: Sequence[str] = (),
                  options: Collection[str] = ()) -> CaseDescription:
    """Describe one hidden case for the feedback.

    Args:
        function: the student's function name.
        names: the names of the positional parameters (``arg0``, ``arg1``... where missing).
        args: the case's positional arguments (NumPy arrays, lists, scalars).
        kwargs: its keyword arguments.
        label: the spec's words for the edge case it is (first factor when given).
        hidden_options: keyword arguments that only an adapter reads, left out.
        options: the positional parameters whose scalar values are options (keyword
            arguments always are); any other positional scalar is a hidden input.

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
        >>> d = describe_case("perplexity", ["mean_nll"], [1.708], {})
        >>> d.factors, d.call
        ((), 'perplexity(mean_nll float)')
    """
    positional = [(names[i] if i < len(names) else f"arg{i}", value) for i, value in enumerate(args)]
    named = [(name, value, name in options or value is None) for name, value in positional]
    named += [(key, value, True) for key, value in kwargs.items() if key not in hidden_options]
    factors = [label] if label else []
    options = [(name, value) for name, value, option in named if option and _is_scalar(value)]
    factors += [f"{name}={_scalar(value)}" for name, value in options]
    restated = tuple(f"{name}={_scalar(value)}" for name, value in options if label and _names(label, name, value))
    float_dtypes = sorted({str(v.dtype) for _, v, _ in named if isinstance(v, np.ndarray) and v.dtype.kind == "f"})
    dtype = f"{float_dtypes[0]} inputs" if len(float_dtypes) == 1 else ""
    if dtype:
        factors.append(dtype)
    public_ids = PUBLIC_NEGATIVE_IDS | {int(value) for _, value in options
                                        if isinstance(value, (int, np.integer)) and not isinstance(value, bool)
                                        and value < 0}
    for name, value, _ in named:
        factors += _notes(name, value, public_ids)
    call = f"{function}({', '.join(_shown(name, value, option) for name, value, option in named)})"
    return CaseDescription(tuple(factors), call, label, restated, dtype)
