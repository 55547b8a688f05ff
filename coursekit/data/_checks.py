"""Argument checks shared by :mod:`coursekit.data`, :mod:`coursekit.models` and the training loop.

Each helper validates one argument at a public boundary and raises with a
message naming the argument, the value received and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping, MappingView, Sequence, Set
from typing import TypeVar

import numpy
import torch

from coursekit.losses._checks import (
    INT64_MAX,
    INT64_MIN,
    as_index,
    as_real,
    finite_float,
    int_text,
    is_integer_dtype,
    is_numpy_bool,
    number_text,
    received_text,
    type_text,
)

#: The type of the options :func:`require_one_of` chooses among (``str`` at every call).
Choice = TypeVar("Choice")

#: The most characters of a received str, or of another value's repr, that a message shows (:func:`shown`).
SHOWN_CHARACTERS = 40


def shown(value: object) -> str:
    """``value`` as a message shows it: an int by ``int_text``, a long str by its start and length, else its repr.

    ``int_text`` is the losses' helper (an int's sign and bit length beyond int64), so that every message
    of the package describes a huge int alike. Every message of :mod:`coursekit.data` that shows a
    received int or str goes through here: ``str()`` of an int of more than 4300 digits raises a
    ``ValueError`` that names no argument, and a str may be a whole corpus (``Vocab(texts)`` for
    ``Vocab.build(texts)``), so only its first ``SHOWN_CHARACTERS`` characters are shown (a shorter str is
    shown whole, by its repr). Anything else is shown by ``repr``, whose first ``SHOWN_CHARACTERS`` characters
    are shown when it is longer, with the repr's length, or by its type (``type_text``) when ``repr`` fails
    (a container holding an int too long to print).

    Example:
        >>> shown(-3), shown(10**5000), shown(0.5), shown("cat")
        ('-3', 'an int of 16610 bits', '0.5', "'cat'")
        >>> shown("the cat " * 10000)
        "'the cat the cat the cat the cat the cat '... (80000 characters)"
        >>> shown(("s", 10**5000)), shown("a" * 40)
        ('tuple', "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'")
        >>> shown(("the cat " * 1000,))
        "('the cat the cat the cat the cat the ca... (the repr of this tuple has 8005 characters)"
        >>> import numpy
        >>> shown(numpy.str_("dog"))
        "'dog'"
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return int_text(value)
    if isinstance(value, str):
        value = str(value)  # a NumPy str_ (or another subclass) is shown as the str it is
    if isinstance(value, str) and len(value) > SHOWN_CHARACTERS:
        return f"{str(value[:SHOWN_CHARACTERS])!r}... ({len(value)} characters)"
    try:
        text = repr(value)
    except Exception:  # a container holding an int too long for str(), or a __repr__ that raises
        return type_text(value)
    if isinstance(value, str) or len(text) <= SHOWN_CHARACTERS:
        return text
    return f"{text[:SHOWN_CHARACTERS]}... (the repr of this {type(value).__name__} has {len(text)} characters)"


def as_int(value: object) -> int | None:
    """``value`` as a Python int if it is a Python or NumPy integer scalar; ``None`` for anything else.

    The losses' ``as_index`` decides (``operator.index``, bools excluded: Python's and NumPy's), so that
    ``np.int64(3)``, a count read from an array, is taken in both packages. A tensor or a NumPy array is
    not taken here, not even a 0-d one (``operator.index`` would take ``np.array(3)``): a size or count
    of :mod:`coursekit.data` and :mod:`coursekit.models` is a host number, not an array.

    Example:
        >>> import numpy as np
        >>> as_int(np.int64(3)), as_int(3), as_int(np.True_), as_int(torch.tensor(3)), as_int(np.array(3))
        (3, 3, None, None, None)
    """
    if isinstance(value, (torch.Tensor, numpy.ndarray)):
        return None
    return as_index(value)


def require_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """Return ``value`` as a Python int if it is an integer (:func:`as_int`) no smaller than ``minimum``.

    Raises:
        TypeError: ``value`` is not a Python or NumPy integer scalar, or is a bool; the message names its
            type.
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

    A NumPy integer is refused here, unlike in :func:`require_int`: every seed reaches
    ``random.Random`` or ``torch.Generator.manual_seed``, and both raise for one (Python 3.11's
    ``random.Random`` takes only None, int, float, str, bytes and bytearray; ``manual_seed`` says
    "an integer is required").
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a Python int, got {type_text(value)}")
    seed = require_int(name, value, minimum=0)
    if seed >= 2**63:
        raise ValueError(f"{name} must be an int in [0, 2**63), got {shown(seed)}")
    return seed


def derived_seed(value: int) -> int:
    """``value``, a seed computed from a checked seed (``3 * seed + 1``), brought into ``[0, 2**63)``.

    It is reduced modulo 2**63. Every seed small enough for the computation to stay in range
    (below 2**61 for ``3 * seed + 2``, below 2**53 for ``seed * 1000 + epoch``) so derives exactly
    the seed it always did, and the samples and batch orders it gave stay the same; a larger seed
    that :func:`require_seed` accepted derives a valid seed, where the computed value would be
    refused under the user's argument name for a value the user did not pass.

    Example:
        >>> derived_seed(3 * 5 + 2)
        17
        >>> derived_seed(3 * (2**63 - 1) + 2)
        9223372036854775807
    """
    return value % 2**63


def require_number(name: str, value: object, *, low: float | None = None, low_inclusive: bool = True) -> float:
    """Return ``value`` as a float if it is a finite real number above ``low``.

    A real number is what the losses take (``coursekit.losses._checks.as_real``): a Python int or
    float, or a NumPy integer or floating scalar (``np.float32(0.1)``, a value read from an array);
    not a bool. The losses' ``finite_float`` checks it, as it checks theirs: ``inf`` and ``nan`` are
    rejected with a ``ValueError``, and so are an int beyond the float range (``10**400``, which
    ``float`` would turn into an ``OverflowError``) and a NumPy ``longdouble`` beyond it (which
    ``float`` would turn into ``inf``). Every caller lists "not finite" among its ``ValueError``
    conditions; none gives an infinite value a meaning (``coursekit.train.train`` leaves the gradient norm
    unclipped for ``clip_norm=None``, not ``inf``). A message shows the number as it was given
    (``np.float32(-0.1)`` as ``-0.1``, not its widened float), and also the float compared with
    ``low`` where that reads otherwise (``losses._checks.received_text``).

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
    number = finite_float(name, value, range_expected="a number in the float range")
    if low is not None and (number < low or (not low_inclusive and number == low)):
        relation = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {relation} {low}, got {received_text(value, number)}")
    return number


def require_probability(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a real number in ``[0, 1]`` (:func:`require_number`'s kinds).

    Raises:
        TypeError: ``value`` is not a real number; the message names its type.
        ValueError: ``value`` is not finite, is negative or is above 1.

    Example:
        >>> require_probability("dropout", 0.25)
        0.25
        >>> require_probability("dropout", 1.5)
        Traceback (most recent call last):
        ...
        ValueError: dropout must lie in [0, 1], got 1.5
        >>> require_probability("dropout", -0.1)
        Traceback (most recent call last):
        ...
        ValueError: dropout must lie in [0, 1], got -0.1
    """
    number = require_number(name, value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {received_text(value, number)}")
    return number


def require_one_of(name: str, value: object, choices: Sequence[Choice]) -> Choice:
    """Return ``value`` if it is one of ``choices``; a ``str`` (a NumPy ``str_`` too) as a plain Python ``str``.

    A NumPy ``str_`` (a choice read from an array) is a ``str`` and is taken as one, as the losses'
    ``require_choice`` takes it, and returned as the plain ``str`` of its value: a stored option then
    pickles without NumPy (``torch.load(weights_only=True)`` refuses a NumPy scalar). A message shows a
    ``str`` by its value's ``repr`` (``'x'``, not ``np.str_('x')``), a Python ``int``, ``float`` or
    ``None`` as :func:`shown` does, a NumPy number by its value (``number_text``: ``np.int64(1)`` as
    ``1``), and anything else by its type.

    Raises:
        TypeError: ``value`` is a NumPy array or a tensor, whose ``==`` compares elementwise, so that
            ``in`` cannot decide (NumPy would raise a message naming no argument).
        ValueError: ``value`` is not among ``choices``.

    Example:
        >>> import numpy as np
        >>> type(require_one_of("cell", np.str_("gru"), ("lstm", "gru"))).__name__
        'str'
        >>> require_one_of("cell", np.int64(1), ("lstm", "gru"))
        Traceback (most recent call last):
        ...
        ValueError: cell must be one of 'lstm', 'gru', got 1
    """
    options = ", ".join(repr(c) for c in choices)
    if isinstance(value, (numpy.ndarray, torch.Tensor)):
        raise TypeError(f"{name} must be one of {options}, got {type_text(value)}")
    if isinstance(value, str):
        value = str(value)
    if value not in choices:
        # NumPy numbers first: np.float64 subclasses float, and shown() would give its repr.
        if isinstance(value, numpy.generic) and as_real(value) is not None:
            received = number_text(value)
        elif isinstance(value, (str, int, float, type(None))):
            received = shown(value)
        else:
            received = type_text(value)
        raise ValueError(f"{name} must be one of {options}, got {received}")
    return value  # type: ignore[return-value]  # equal to a choice, and a str converted to a plain one above


#: One past the largest ``torch.long``: the bound of an id that must fit a tensor.
INT64_END = 2**63


def require_id(name: str, value: object) -> int:
    """Return ``value`` as a Python int if it is an id that fits ``torch.long``: an integer in ``[0, 2**63)``.

    A special id (``pad_id``, ``bos_id``, ``eos_id``) is written into the same tensors as the ids of
    :func:`id_list`, so it is held to the same range with the same message; beyond it PyTorch would
    raise its own overflow error, which names no argument.

    Raises:
        TypeError: ``value`` is not a Python or NumPy integer scalar, or is a bool (:func:`require_int`).
        ValueError: ``value`` is negative or ``>= 2**63``.

    Example:
        >>> import numpy as np
        >>> require_id("pad_id", np.int64(0))
        0
        >>> require_id("pad_id", 2**63)
        Traceback (most recent call last):
        ...
        ValueError: pad_id must lie in [0, 2**63), got an int of 64 bits
    """
    number = require_int(name, value)
    if not 0 <= number < INT64_END:
        raise _out_of_range(name, number, INT64_END)
    return number


def id_list(name: str, ids: object, *, size: int | None = INT64_END) -> list[int]:
    """Return ``ids`` as a list of Python ints, each in ``[0, size)``, checked element by element.

    The elements are checked as :func:`require_int` checks a scalar: a Python or NumPy integer, never a
    bool, a float (which ``int()`` and ``torch.as_tensor(..., dtype=torch.long)`` would truncate) or a
    str. ``ids`` is a sequence (or other iterable) of them, or a 1-D tensor or NumPy array of an integer
    dtype. The default ``size`` bounds the ids by ``torch.long``'s range, ``[0, 2**63)``, so that every
    id fits the tensor it goes into; ``None`` sets no upper bound (lengths that are only compared). A
    list of Python ints, the common case, is checked by its elements' types and its ``min`` and ``max``
    alone; an element is visited one by one only to convert a NumPy integer or to say which position
    is wrong.

    Args:
        name: the argument's name in messages, which give a bad element as ``name[i]``.
        ids: the ids.
        size: the number of valid ids (a vocabulary's size), or ``None`` for no upper bound.

    Returns:
        The ids as a new list of Python ints.

    Raises:
        TypeError: ``ids`` is not iterable, is a str, or is a tensor or array that is not 1-D of an
            integer dtype; or an element is not an integer (the message names its position and type,
            and its value where it is a number).
        ValueError: an element is negative, or not below ``size``.

    Example:
        >>> import numpy as np
        >>> id_list("ids", [4, np.int64(6)]), id_list("ids", torch.tensor([4, 6]))
        ([4, 6], [4, 6])
        >>> id_list("ids", [4, 4.9])
        Traceback (most recent call last):
        ...
        TypeError: ids[1] must be an int, got float 4.9
    """
    values = _as_list(name, ids)
    if are_plain_ids(values, size):
        return values
    checked = []
    for i, value in enumerate(values):
        number = as_int(value)
        if number is None:
            raise TypeError(f"{name}[{i}] must be an int, got {element_text(value)}")
        if number < 0 or (size is not None and number >= size):
            raise _out_of_range(f"{name}[{i}]", number, size)
        checked.append(number)
    return checked


def are_plain_ids(values: list[object], size: int | None = INT64_END) -> bool:
    """Whether every element of ``values`` is a Python int (not a bool) in ``[0, size)``: :func:`id_list`'s fast path.

    One pass of C loops (``type``, ``min``, ``max``), no Python loop: it runs on every batch.
    """
    return set(map(type, values)) <= {int} and (
        not values or (min(values) >= 0 and (size is None or max(values) < size)))  # type: ignore[type-var]


def _out_of_range(name: str, number: int, size: int | None) -> ValueError:
    """The error for an id or length ``number`` outside ``[0, size)`` (``size=None``: below 0): one wording for both."""
    expected = "be >= 0" if size is None else f"lie in [0, {'2**63' if size == INT64_END else shown(size)})"
    return ValueError(f"{name} must {expected}, got {shown(number)}")


def _as_list(name: str, ids: object) -> list[object]:
    if isinstance(ids, (torch.Tensor, numpy.ndarray)):
        integer = (is_integer_dtype(ids) if isinstance(ids, torch.Tensor)
                   else numpy.issubdtype(ids.dtype, numpy.integer))
        if ids.ndim != 1 or not integer:
            raise TypeError(f"{name} must be a 1-D tensor or array of an integer dtype, got {_array_text(ids)}")
        return ids.tolist()
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of ints, got {type_text(ids)}")
    try:
        return list(ids)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints, got {type_text(ids)}") from None


def _array_text(array: torch.Tensor | numpy.ndarray) -> str:
    if isinstance(array, torch.Tensor):
        return type_text(array)
    return f"an array of shape {array.shape} and dtype {array.dtype}"


def element_text(value: object) -> str:
    """A refused element for a message: its type, and its value where it is a number or a bool.

    A Python int beyond int64 is described by its size alone (``int_text``), never printed: ``str()``
    of one of more than 4300 digits raises.

    Example:
        >>> element_text(4.9), element_text(5), element_text(10**5000), element_text(["x"])
        ('float 4.9', 'int 5', 'an int of 16610 bits', 'list')
    """
    if isinstance(value, bool) or is_numpy_bool(value):
        return f"{type_text(value)} {value}"
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return int_text(value)
    if as_real(value) is not None:
        return f"{type_text(value)} {number_text(value)}"
    return type_text(value)


def items_text(value: object) -> str:
    """What ``value`` is, for a ``TypeError`` about a container of the wrong size: its type and its length.

    A tensor or an array is described by its shape and dtype; a str, and anything without a length
    (a generator, a number), by its type alone. The items themselves are never shown (one may be an
    int too long to print).

    Example:
        >>> items_text((1, 2, 3)), items_text([4]), items_text(7), items_text("ab")
        ('a tuple of 3 items', 'a list of 1 item', 'int', 'str')
    """
    if isinstance(value, (torch.Tensor, numpy.ndarray)):
        return _array_text(value)
    if isinstance(value, (str, bytes)):
        return type_text(value)
    try:
        count = len(value)  # type: ignore[arg-type]
    except (TypeError, OverflowError, ValueError):  # no length, more than sys.maxsize items, a negative __len__
        return type_text(value)
    kind = type_text(value)
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    return f"{article} {kind} of {count} item{'' if count == 1 else 's'}"


def row_list(name: str, value: object, rows_of: str) -> list[object]:
    """``value``, a batch of rows, as a list of its rows; ``rows_of`` says what a row is, for the message.

    Any iterable is taken (a generator too, which has no ``len``); a str, a 0-d tensor or array and
    anything not iterable are refused with a message naming ``name``, where ``len()`` or ``list()``
    would raise their own, which name no argument.

    Raises:
        TypeError: ``value`` is a str, a 0-d tensor or array, or not iterable.

    Example:
        >>> row_list("pairs", (p for p in [(1, 2)]), "pairs")
        [(1, 2)]
        >>> row_list("pairs", 7, "(source, reference) pairs")
        Traceback (most recent call last):
        ...
        TypeError: pairs must be a sequence of (source, reference) pairs, got int
    """
    if isinstance(value, (str, bytes)) or (isinstance(value, (torch.Tensor, numpy.ndarray)) and value.ndim == 0):
        raise TypeError(f"{name} must be a sequence of {rows_of}, got {type_text(value)}")
    try:
        return list(value)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"{name} must be a sequence of {rows_of}, got {type_text(value)}") from None


def pair_items(name: str, value: object, pair: str) -> tuple[object, object]:
    """The two items of ``value`` if it is a pair; ``pair`` says what the pair holds, for the message.

    A str is refused, though a two-character one would unpack: its characters are no pair. So are a set
    and a mapping of two items: a set's order depends on hashing, which differs between processes for str
    items, and a mapping would unpack into its keys. A mapping's view (``d.keys()``, ``d.values()``,
    ``d.items()``) is refused too: it holds a mapping's entries, in the mapping's order, not a pair.

    Raises:
        TypeError: ``value`` is a str or bytes, a set, a mapping or a mapping's view, or does not unpack
            into exactly two items; the message names ``name``, ``pair`` and what came in (:func:`items_text`).

    Example:
        >>> pair_items("pairs[0]", ([4], [5]), "a (source ids, target ids) pair")
        ([4], [5])
        >>> pair_items("pairs[0]", ([4], [5], [6]), "a (source ids, target ids) pair")
        Traceback (most recent call last):
        ...
        TypeError: pairs[0] must be a (source ids, target ids) pair, got a tuple of 3 items
        >>> pair_items("pairs[0]", {"src": [4], "tgt": [5]}.keys(), "a (source ids, target ids) pair")
        Traceback (most recent call last):
        ...
        TypeError: pairs[0] must be a (source ids, target ids) pair, got a dict_keys of 2 items, a view of a mapping's entries
    """
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be {pair}, got {type_text(value)}")
    if isinstance(value, MappingView):
        raise TypeError(f"{name} must be {pair}, got {items_text(value)}, a view of a mapping's entries")
    if isinstance(value, (Set, Mapping)):
        why = "whose order varies between processes" if isinstance(value, Set) else "which unpacks into its keys"
        raise TypeError(f"{name} must be {pair}, got {items_text(value)}, {why}")
    try:
        first, second = value  # type: ignore[misc]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {pair}, got {items_text(value)}") from None
    return first, second
