"""Argument checks shared by the public loss functions.

Every public function validates its arguments once, at the boundary, through
these helpers, so that a bad input always produces a message of the same form:
the argument's name, what was received, and what was expected.

Checks of types, dtypes, shapes and devices read no tensor values and always
run: every tensor argument must live on the device of the loss's first one
(:func:`require_same_device`), where PyTorch's own message would name no
argument; a 0-d CPU token count is allowed anywhere, as PyTorch allows it.
``ctc_loss`` is the exception: it takes its targets and lengths on any
device, as ``F.ctc_loss`` does, and moves them.
Checks that must read values (a target out of range, a negative length, a mask
holding a 2) run where reading costs nothing, on the CPU. On an accelerator
reading a value waits for every queued kernel (a host synchronisation on every
training step), so there they are skipped, as PyTorch's own functional API
skips them, unless the environment variable ``COURSEKIT_CHECK_VALUES=1`` asks
for them (to debug a run). An out-of-range target then trips the device-side
assert of the indexing kernel, as in PyTorch (``vocab_parallel_cross_entropy``
gives ``nan`` instead), and other bad values are computed with, unrefused.
"""

from __future__ import annotations

import math
import operator
import os
import sys
from collections.abc import Sequence

import numpy
import torch

#: Set to ``"1"`` to run the value checks on every device, not only on the CPU.
CHECK_VALUES_ENV = "COURSEKIT_CHECK_VALUES"


def reads_values(tensor: torch.Tensor) -> bool:
    """Whether checks that read ``tensor``'s values run: on the CPU always, elsewhere on request.

    The meta device has no values to read and is never checked.
    """
    if tensor.device.type == "cpu":
        return True
    return tensor.device.type != "meta" and os.environ.get(CHECK_VALUES_ENV) == "1"


def require_tensor(name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is a tensor, else raise ``TypeError`` naming ``name``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def require_float(name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is a floating-point tensor."""
    tensor = require_tensor(name, value)
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")
    return tensor


def is_integer_dtype(tensor: torch.Tensor) -> bool:
    """True for integer dtypes (``torch.bool`` excluded)."""
    return not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool)


#: The integer dtypes every loss accepts: F.cross_entropy takes int64 and uint8;
#: the losses widen any of these to int64 where they index (gather), so int8,
#: int16 and int32 work too. uint16/32/64 are left out: PyTorch 2.13 lacks
#: even their comparison kernels on the CPU.
INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def require_integer(name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is a tensor of one of :data:`INTEGER_DTYPES`."""
    tensor = require_tensor(name, value)
    if tensor.dtype not in INTEGER_DTYPES:
        raise TypeError(
            f"{name} must be an integer tensor of dtype int8, int16, int32, int64 or uint8 (e.g. torch.long), "
            f"got dtype {tensor.dtype}"
        )
    return tensor


def require_class_indices(name: str, value: object) -> torch.Tensor:
    """Return ``value`` widened to int64 if it is a tensor of one of :data:`INTEGER_DTYPES`.

    Class indices are widened once, here, before anything compares them with
    ``ignore_index`` or a range: PyTorch converts a Python int to the tensor's
    dtype in a comparison, so ``uint8(156) == -100`` and ``int8(-56) == 200``
    would be True on the narrow tensor.
    """
    return require_integer(name, value).long()


def require_shape(name: str, tensor: torch.Tensor, expected: Sequence[int], expected_text: str) -> None:
    """Raise ``ValueError`` unless ``tensor.shape == expected``.

    ``expected_text`` says where the expected shape comes from, e.g.
    ``"logits.shape[:-1]"``.
    """
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(
            f"{name} must have shape {tuple(expected)} ({expected_text}), got {tuple(tensor.shape)}"
        )


def require_classes(name: str, tensor: torch.Tensor, shape_text: str = "(..., V)", axis: int = -1) -> None:
    """Raise ``ValueError`` unless ``tensor`` has at least one class along ``axis`` (V >= 1).

    With no class there is nothing to normalise over, and an indexing kernel
    would fail with a message naming no argument ("index 0 is out of bounds
    for dimension 1 with size 0"). A shape check: it reads no value.
    ``shape_text`` is the shape the argument must have, e.g. ``"(V, d)"``.

    Example:
        >>> require_classes("logits", torch.zeros(2, 0))
        Traceback (most recent call last):
        ...
        ValueError: logits must have shape (..., V) with V >= 1, got shape (2, 0)
    """
    if tensor.dim() < 1 or tensor.shape[axis] == 0:
        raise ValueError(f"{name} must have shape {shape_text} with V >= 1, got shape {tuple(tensor.shape)}")


def require_same_device(
    name: str, tensor: torch.Tensor, reference: torch.Tensor, reference_name: str, *, cpu_scalar: bool = False
) -> None:
    """Raise ``ValueError`` unless ``tensor`` lives on the device of ``reference``.

    PyTorch's own message for tensors on two devices ("Tensor on device cpu
    is not on the expected device meta!") names neither argument. A device
    comparison reads no value. With ``cpu_scalar``, a 0-d CPU tensor is
    allowed with a ``reference`` anywhere, as PyTorch's elementwise operations
    allow it (a token count such as ``num_items_in_batch``).
    """
    if tensor.device == reference.device or (cpu_scalar and tensor.dim() == 0 and tensor.device.type == "cpu"):
        return
    raise ValueError(f"{name} must be on the device of {reference_name} ({reference.device}), got {tensor.device}")


def require_same_devices(reference_name: str, reference: torch.Tensor, **tensors: object) -> None:
    """:func:`require_same_device` for every tensor among ``tensors`` (by argument name), against ``reference``.

    ``None`` and anything that is not a tensor are passed over: their own
    checks name them.

    Example:
        >>> require_same_devices("log_probs", torch.zeros(2), old_log_probs=torch.zeros(2, device="meta"))
        Traceback (most recent call last):
        ...
        ValueError: old_log_probs must be on the device of log_probs (cpu), got meta
    """
    for name, tensor in tensors.items():
        if isinstance(tensor, torch.Tensor):
            require_same_device(name, tensor, reference, reference_name)


def require_mask(name: str, mask: object, expected: Sequence[int], expected_text: str) -> torch.Tensor:
    """Return ``mask`` as a boolean tensor, if it is boolean or integer 0/1 of the expected shape.

    Integer masks are what Hugging Face and TRL pass (``attention_mask``,
    ``completion_mask``); 1 counts, 0 does not. A value other than 0 and 1 is
    an error where values are read (see :func:`reads_values`), and counts as 1
    elsewhere.
    """
    tensor = require_tensor(name, mask)
    if tensor.dtype != torch.bool and not is_integer_dtype(tensor):
        raise TypeError(
            f"{name} must be a boolean tensor or an integer tensor of 0s and 1s (True or 1 = counted), "
            f"got dtype {tensor.dtype}"
        )
    require_shape(name, tensor, expected, expected_text)
    if tensor.dtype == torch.bool:
        return tensor
    if tensor.numel() and reads_values(tensor):
        outside = (tensor != 0) & (tensor != 1)
        if bool(outside.any()):
            raise ValueError(f"{name} must hold only 0 and 1, got {int(tensor[outside][0])}")
    return tensor != 0


def require_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices`` (all strings).

    Anything that is not a string is refused by its type before the ``in``
    test, which a NumPy array would answer with NumPy's own "truth value ...
    is ambiguous", and its message shows the type only (see
    :func:`type_text`): a container holding an int of more than 4300 digits
    cannot be shown by ``repr``. A ``numpy.str_`` is a string.

    Raises:
        TypeError: ``value`` is not a string.
        ValueError: ``value`` is a string but not one of ``choices``.

    Example:
        >>> require_choice("reduction", "sum", ("mean", "sum"))
        'sum'
        >>> require_choice("reduction", ["mean"], ("mean", "sum"))
        Traceback (most recent call last):
        ...
        TypeError: reduction must be one of 'mean', 'sum' (a str), got list
    """
    options = ", ".join(repr(c) for c in choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {options} (a str), got {type_text(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {options}, got {str(value)!r}")
    return str(value)


#: The kinds of real number the number checks accept (see :func:`as_real`), for their ``TypeError``:
#: a ``fractions.Fraction`` or ``decimal.Decimal`` is a real number too, but not one of these.
REAL_NUMBER_KINDS = "int, float or a NumPy real scalar"
#: What a number argument must be, in the ``TypeError`` of every number check.
REAL_NUMBER = f"a real number ({REAL_NUMBER_KINDS})"


def require_number(name: str, value: object, *, type_expected: str = REAL_NUMBER) -> float:
    """Return ``value`` as a float if it is a finite real number (see :func:`as_real`: no bool, no tensor).

    Every int is finite, but one beyond the float range (``10**400``) is not a
    float either: it is rejected with the same ``ValueError`` as ``inf``.
    ``type_expected`` is what the ``TypeError`` says the argument must be.
    """
    return finite_float(name, value, "a finite number", type_expected)


def require_positive(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number greater than zero."""
    expected = "a finite number > 0"
    number = finite_float(name, value, expected)
    if not number > 0:
        raise ValueError(f"{name} must be {expected}, got {received_text(value, number)}")
    return number


def require_nonnegative(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number greater than or equal to zero."""
    expected = "a finite number >= 0"
    number = finite_float(name, value, expected)
    if not number >= 0:
        raise ValueError(f"{name} must be {expected}, got {received_text(value, number)}")
    return number


def finite_float(
    name: str,
    value: object,
    expected: str = "a finite number",
    type_expected: str = REAL_NUMBER,
    *,
    range_expected: str | None = None,
) -> float:
    """``value`` as a float, if it is a real number (:func:`as_real`) whose float is finite.

    The one finite-real check of the package: the losses' number checks and
    ``coursekit.data._checks.require_number`` both go through it.
    ``expected`` is what the ``ValueError`` says the argument must be, and
    ``type_expected`` what the ``TypeError`` says. An int beyond the float
    range (``10**400``: ``float`` would raise ``OverflowError``) is a
    ``ValueError`` saying that it must be ``range_expected`` or, where that is
    ``None``, ``expected`` with ", beyond the float range" after the value.
    A non-finite value is shown as it was given (a NumPy ``longdouble`` of
    ``1e400`` as ``1e+400``, not as the ``inf`` its float is).

    Example:
        >>> import numpy as np
        >>> finite_float("beta", np.float32(0.5))
        0.5
        >>> finite_float("beta", 10**400, range_expected="a number in the float range")
        Traceback (most recent call last):
        ...
        ValueError: beta must be a number in the float range, got an int of 1329 bits
    """
    real = as_real(value)
    if real is None:
        raise TypeError(f"{name} must be {type_expected}, got {type_text(value)}")
    if isinstance(real, int) and abs(real) > sys.float_info.max:
        if range_expected is None:
            raise ValueError(f"{name} must be {expected}, got {int_text(real)}, beyond the float range")
        raise ValueError(f"{name} must be {range_expected}, got {int_text(real)}")
    number = float(real)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be {expected}, got {number_text(value)}")
    return number


def received_text(value: object, number: float) -> str:
    """``value`` as given (:func:`number_text`), and ``number``, the float compared, where it reads otherwise.

    A bound is checked on the float, so a message that showed only the given
    value could contradict itself: a NumPy ``longdouble`` of ``1e-400`` is
    ``0.0`` as a float and fails ``> 0``. Where the float is the value (a
    NumPy ``float32`` is widened exactly) or prints alike, only the value is
    shown: ``np.float32(-0.1)`` reads ``-0.1``.

    Example:
        >>> import numpy as np
        >>> received_text(np.float32(-0.1), float(np.float32(-0.1)))
        '-0.1'
        >>> received_text(np.longdouble("1e-400"), 0.0)
        '1e-400, which is 0.0 as a float'
    """
    given = number_text(value)
    if value == number or given == str(number):
        return given
    return f"{given}, which is {number} as a float"


def as_real(value: object) -> int | float | None:
    """``value`` as an int or float if it is a real number PyTorch's parser takes as a float, bools excluded; else ``None``.

    That is a Python int or float, or a NumPy integer or floating scalar
    (``np.float32(0.1)``, ``np.int64(7)``: a value read from an array), as
    ``F.cross_entropy(label_smoothing=...)`` and transformers'
    ``num_items_in_batch`` take them. PyTorch's parser takes more, which this
    refuses: bools, Python's or NumPy's (PyTorch reads them as 0 or 1),
    complex numbers (PyTorch drops a NumPy complex's imaginary part, with a
    warning), and tensors (the callers that take a 0-d tensor read it
    themselves).
    An integer stays an int, so that one beyond the float range can be named
    rather than overflow.

    Example:
        >>> import numpy as np
        >>> as_real(np.float32(0.5)), as_real(np.int64(7)), as_real(np.True_), as_real(True)
        (0.5, 7, None, None)
        >>> as_real(np.complex64(0.5)) is None
        True
    """
    if isinstance(value, bool) or is_numpy_bool(value):
        return None
    if isinstance(value, (int, numpy.integer)):
        return int(value)
    if isinstance(value, (float, numpy.floating)):
        return float(value)
    return None


def is_numpy_bool(value: object) -> bool:
    """Whether ``value`` is NumPy's bool scalar, by its type: ``numpy.bool_`` in NumPy 1.x and 2.x alike.

    The type's name is no guide (``bool_`` in NumPy 1.x, ``bool`` in 2.x), and
    NumPy 1.x's ``operator.index`` takes it as 0 or 1, so it is tested here,
    before anything converts it.
    """
    return isinstance(value, numpy.bool_)


def require_flag(name: str, value: object) -> bool:
    """Return ``value`` as a Python bool if it is one, or NumPy's bool (a flag read from an array).

    Nothing else is read by its truthiness: the string ``"False"`` would turn
    an option on and ``None`` off without a word. PyTorch's parser takes a
    Python bool only (``F.ctc_loss(zero_infinity=np.True_)`` is a
    ``TypeError``); NumPy's bool is taken here as the losses take NumPy
    numbers.

    Raises:
        TypeError: ``value`` is neither a Python nor a NumPy bool.

    Example:
        >>> import numpy as np
        >>> require_flag("tail", np.False_), require_flag("tail", True)
        (False, True)
        >>> require_flag("tail", "False")
        Traceback (most recent call last):
        ...
        TypeError: tail must be a bool, got str
    """
    if isinstance(value, bool) or is_numpy_bool(value):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {type_text(value)}")


def number_text(value: object) -> str:
    """A received number for a message: an int as :func:`int_text` shows it, anything else by ``str``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int_text(value)
    return str(value)


#: The range of ``torch.int64``, the dtype of class indices and lengths. An int outside it cannot be
#: compared with or stored in an index tensor (PyTorch raises ``OverflowError`` there).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def require_int(
    name: str,
    value: object,
    low: int = INT64_MIN,
    high: int | None = INT64_MAX,
    *,
    expected: str = "",
    type_expected: str = "an int",
) -> int:
    """Return ``value`` as a Python int if it is an integer (not a bool) in ``[low, high]`` (``high=None``: no upper bound).

    An integer is whatever ``operator.index`` accepts, as PyTorch's own
    argument parser does: a Python int, a NumPy integer, a one-element
    integer tensor. Bools (Python's, NumPy's, boolean tensors) are not
    integers here, as they are not to PyTorch's int arguments. A tensor on an
    accelerator is read (one host synchronisation), as PyTorch's parser reads it.

    Args:
        name: the argument's name, for the messages.
        value: what the caller passed.
        low: the smallest value allowed (by default int64's).
        high: the largest value allowed (by default int64's), or ``None``.
        expected: the requirement after "must" in the ``ValueError`` (default
            ``"lie in [low, high]"``); above int64 the message names int64's bound.
        type_expected: what the ``TypeError`` says the argument must be.

    Returns:
        ``value`` as a Python int (callers use it, so that comparisons and
        indexing see an int, never a tensor).

    Raises:
        TypeError: ``value`` is not an integer, or is a bool.
        ValueError: ``value`` lies outside ``[low, high]``; an int beyond int64
            is named by its sign and bit length, not its digits (see :func:`int_text`).

    Example:
        >>> import numpy as np
        >>> require_int("k", np.int64(3), 1, 5), require_int("k", torch.tensor(3), 1, 5)
        (3, 3)
        >>> require_int("max_len", -(10**400), 0, expected="be >= 0")
        Traceback (most recent call last):
        ...
        ValueError: max_len must be >= 0, got a negative int of 1329 bits
    """
    number = as_index(value)
    if number is None:
        raise TypeError(f"{name} must be {type_expected}, got {type_text(value)}")
    if high == INT64_MAX and number > high:
        # only int64 bounds it: name that bound, not the caller's (such as ">= 0")
        raise ValueError(f"{name} must be <= {INT64_MAX} (int64's largest), got {int_text(number)}")
    if number < low or (high is not None and number > high):
        raise ValueError(f"{name} must {expected or f'lie in [{low}, {high}]'}, got {int_text(number)}")
    return number


def as_index(value: object) -> int | None:
    """``operator.index(value)``, or ``None`` for a bool or anything that is not an integer."""
    if isinstance(value, bool) or is_numpy_bool(value):
        return None
    if isinstance(value, torch.Tensor) and value.dtype == torch.bool:
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except (TypeError, RuntimeError):
        # RuntimeError: a tensor of more than one element
        return None


def type_text(value: object) -> str:
    """What ``value`` is, for a ``TypeError``: a tensor's shape and dtype, else its type's name.

    Example:
        >>> type_text(torch.zeros(1)), type_text(2.5)
        ('a tensor of shape (1,) and dtype torch.float32', 'float')
    """
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return type(value).__name__


def int_text(value: int) -> str:
    """``value`` for a message: its digits within int64, else its sign and bit length.

    ``str()`` of an int of more than 4300 digits raises a ``ValueError`` of its
    own, and a few hundred digits help no reader. The sign stays: "must be
    >= 0, got an int of 1329 bits" would read as a large positive value.
    Every message of :mod:`coursekit.losses` that shows a received int goes
    through here, and every one of :mod:`coursekit.data` through its
    ``shown``, which calls this.

    Example:
        >>> int_text(-100), int_text(2**64), int_text(-(2**64))
        ('-100', 'an int of 65 bits', 'a negative int of 65 bits')
    """
    if INT64_MIN <= value <= INT64_MAX:
        return str(value)
    return f"{'a negative' if value < 0 else 'an'} int of {value.bit_length()} bits"


def require_in_interval(
    name: str,
    value: object,
    low: float,
    high: float,
    meaning: str = "",
    *,
    closed: bool = False,
    type_expected: str = REAL_NUMBER,
) -> float:
    """Return ``value`` as a float if it is a number in ``[low, high)`` (``[low, high]`` when ``closed``).

    ``meaning`` is added to the ``ValueError``; ``type_expected`` is what the
    ``TypeError`` says the argument must be.

    Example:
        >>> require_in_interval("beta", 1, 0, 1, closed=True)
        1.0
        >>> require_in_interval("beta", 10**400, 0, 1, closed=True)
        Traceback (most recent call last):
        ...
        ValueError: beta must be a finite number, got an int of 1329 bits, beyond the float range
    """
    number = finite_float(name, value, "a finite number", type_expected)
    inside = low <= number <= high if closed else low <= number < high
    if not inside:
        suffix = f" ({meaning})" if meaning else ""
        raise ValueError(f"{name} must lie in [{low}, {high}{']' if closed else ')'}{suffix}, got {received_text(value, number)}")
    return number


def require_targets_in_range(
    name: str, targets: torch.Tensor, num_classes: int, ignore_index: int | None
) -> None:
    """Raise ``ValueError`` if a target lies outside ``[0, num_classes)`` and is not ignored.

    A value check: it runs where :func:`reads_values` allows.
    """
    if targets.numel() == 0 or not reads_values(targets):
        return
    targets = targets.long()  # a narrow dtype would wrap ignore_index (uint8: -100 == 156)
    outside = (targets < 0) | (targets >= num_classes)
    if ignore_index is not None:
        outside &= targets != ignore_index
    if bool(outside.any()):
        bad = int(targets[outside][0])
        ignored = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        raise ValueError(f"{name} must lie in [0, {num_classes}){ignored}, got {bad}")


def require_num_items(name: str, value: object, *, allow_zero: bool = False) -> torch.Tensor | float:
    """Return a token count given as a number (see :func:`as_real`) or a one-element real tensor.

    Only a number's value is checked: finite and > 0 (>= 0 with
    ``allow_zero``). A tensor's value is not read, so that it may stay on the
    accelerator (Hugging Face passes one there) without a host
    synchronisation: a negative or ``nan`` tensor is taken as it is.
    """
    expected = f"a real number {'>= 0' if allow_zero else '> 0'} ({REAL_NUMBER_KINDS})"
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(
                f"{name} must be {expected} or a one-element real tensor, "
                f"got a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
            )
        return value.reshape(())
    if as_real(value) is None:
        raise TypeError(f"{name} must be {expected} or a one-element real tensor, got {type_text(value)}")
    return require_nonnegative(name, value) if allow_zero else require_positive(name, value)
