"""Argument checks shared by :mod:`coursekit.data`, :mod:`coursekit.models` and the training loop.

Each helper validates one argument at a public boundary and raises with a
message naming the argument, the value received and what was expected.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import torch

from coursekit.losses._checks import as_index, as_real, int_text, number_text, type_text


def shown(value: object) -> str:
    """``value`` as a message shows it: an int by ``int_text`` (its sign and bit length beyond int64), else ``repr``.

    ``int_text`` is the losses' helper, so that every message of the package describes a huge int alike.
    Every message of :mod:`coursekit.data` that shows a received int goes through here: ``str()`` of an
    int of more than 4300 digits raises a ``ValueError`` that names no argument. A container is never
    shown by ``repr`` (it may hold such an int): a ``TypeError`` names its type (``type_text``).

    Example:
        >>> shown(-3), shown(10**5000), shown(0.5)
        ('-3', 'an int of 16610 bits', '0.5')
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return int_text(value)
    return repr(value)


def as_int(value: object) -> int | None:
    """``value`` as a Python int if it is a Python or NumPy integer; ``None`` for anything else.

    The losses' ``as_index`` decides (``operator.index``, bools excluded: Python's and NumPy's), so that
    ``np.int64(3)``, a count read from an array, is taken in both packages. A tensor is not taken here:
    a size or count of :mod:`coursekit.data` and :mod:`coursekit.models` is a host number.

    Example:
        >>> import numpy as np
        >>> as_int(np.int64(3)), as_int(3), as_int(np.True_), as_int(torch.tensor(3)), as_int(3.0)
        (3, 3, None, None, None)
    """
    if isinstance(value, torch.Tensor):
        return None
    return as_index(value)


def require_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """Return ``value`` as a Python int if it is an integer (:func:`as_int`) no smaller than ``minimum``.

    Raises:
        TypeError: ``value`` is not a Python or NumPy integer, or is a bool; the message names its type.
        ValueError: ``value < minimum``.

    Example:
        >>> import numpy as np
        >>> require_int("num_train", np.int64(3), minimum=1)
        3
        >>> require_int("num_train", (10**5000,))
        Traceback (most recent call last):
        ...
        TypeError: num_train must be an int, got tuple
    """
    number = as_int(value)
    if number is None:
        raise TypeError(f"{name} must be an int, got {type_text(value)}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {shown(number)}")
    return number


def require_seed(name: str, value: object) -> int:
    """Return ``value`` if it is a valid seed: a Python ``int`` in ``[0, 2**63)``.

    A NumPy integer is refused here, unlike in :func:`require_int`: ``torch.Generator.manual_seed``,
    which every seed reaches, raises for one ("an integer is required").
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a Python int, got {type_text(value)}")
    seed = require_int(name, value, minimum=0)
    if seed >= 2**63:
        raise ValueError(f"{name} must be an int in [0, 2**63), got {shown(seed)}")
    return seed


def require_number(name: str, value: object, *, low: float | None = None, low_inclusive: bool = True) -> float:
    """Return ``value`` as a float if it is a finite real number above ``low``.

    A real number is what the losses take (``coursekit.losses._checks.as_real``): a Python int or
    float, or a NumPy integer or floating scalar (``np.float32(0.1)``, a value read from an array);
    not a bool. It must be finite, as in the losses: ``inf`` and ``nan`` are rejected with a
    ``ValueError``, and so are an int beyond the float range (``10**400``, which ``float`` would
    turn into an ``OverflowError``) and a NumPy ``longdouble`` beyond it (which ``float`` would turn
    into ``inf``). No caller takes an infinite value. A message shows the number as it was given
    (``np.float32(-0.1)`` as ``-0.1``, not its widened float).

    Raises:
        TypeError: ``value`` is not a real number; the message names its type.
        ValueError: ``value`` is not finite, or lies below ``low`` (or at it, unless ``low_inclusive``).

    Example:
        >>> import numpy as np
        >>> require_number("noise", np.float32(0.5), low=0.0)
        0.5
        >>> require_number("noise", float("inf"), low=0.0)
        Traceback (most recent call last):
        ...
        ValueError: noise must be a finite number, got inf
    """
    real = as_real(value)
    if real is None:
        raise TypeError(f"{name} must be a number, got {type_text(value)}")
    if isinstance(real, int) and abs(real) > sys.float_info.max:
        raise ValueError(f"{name} must be a number in the float range, got {shown(real)}")
    number = float(real)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {number_text(value)}")
    if low is not None and (number < low or (not low_inclusive and number == low)):
        relation = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {relation} {low}, got {number_text(value)}")
    return number


def require_one_of(name: str, value: object, choices: Sequence[object]) -> object:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        received = shown(value) if isinstance(value, (str, int, float, type(None))) else type_text(value)
        raise ValueError(f"{name} must be one of {options}, got {received}")
    return value
