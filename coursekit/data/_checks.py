"""Argument checks shared by :mod:`coursekit.data`, :mod:`coursekit.models` and the training loop.

Each helper validates one argument at a public boundary and raises with a
message naming the argument, the value received and what was expected.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from coursekit.losses._checks import int_text


def shown(value: object) -> str:
    """``value`` as a message shows it: an int by ``int_text`` (its sign and bit length beyond int64), else ``repr``.

    ``int_text`` is the losses' helper, so that every message of the package describes a huge int alike.
    Every message of :mod:`coursekit.data` that shows a received number goes through here: ``str()``
    of an int of more than 4300 digits raises a ``ValueError`` that names no argument.

    Example:
        >>> shown(-3), shown(10**5000), shown(0.5)
        ('-3', 'an int of 16610 bits', '0.5')
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return int_text(value)
    return repr(value)


def require_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """Return ``value`` if it is an ``int`` (not ``bool``) no smaller than ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {shown(value)}")
    return value


def require_seed(name: str, value: object) -> int:
    """Return ``value`` if it is a valid seed: an ``int`` in ``[0, 2**63)``."""
    seed = require_int(name, value, minimum=0)
    if seed >= 2**63:
        raise ValueError(f"{name} must be an int in [0, 2**63), got {shown(seed)}")
    return seed


def require_number(name: str, value: object, *, low: float | None = None, low_inclusive: bool = True) -> float:
    """Return ``value`` as a float if it is a real number above ``low``.

    An int beyond the float range (``10**400``) is rejected with a ``ValueError``, not the
    ``OverflowError`` that ``float`` would raise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if isinstance(value, int) and abs(value) > sys.float_info.max:
        raise ValueError(f"{name} must be a number in the float range, got {shown(value)}")
    number = float(value)
    if number != number:
        raise ValueError(f"{name} must be a number, got nan")
    if low is not None and (number < low or (not low_inclusive and number == low)):
        relation = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {relation} {low}, got {shown(value)}")
    return number


def require_one_of(name: str, value: object, choices: Sequence[object]) -> object:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}, got {shown(value)}")
    return value
