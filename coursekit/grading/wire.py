"""The wire format between the grader and the sandboxed runner: JSON, never pickle.

Numbers and arrays travel as ``{"t": "array", "dtype": ..., "shape": [...],
"data": <base64 of the raw little-endian bytes>}``; strings, booleans, ``None``
and flat lists have their own tags. Decoding is strict: an unknown tag, a dtype
outside a short whitelist, a byte count that disagrees with the shape, or
nesting deeper than allowed raises :class:`WireError`. Nothing is ever turned
back into an arbitrary Python object, so what a student's process writes can at
worst be a wrong number. No error message quotes the text it was sent (a tag,
a dtype, a shape, a payload): the kernel writes that text, and an error may
reach a student's feedback.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

#: dtypes accepted on the wire (little-endian, no objects, no strings).
ALLOWED_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
#: how deep lists may nest (a list of lists of arrays is depth 2).
MAX_DEPTH = 3
#: items in one list (a model's parameters, a tuple of outputs).
MAX_LIST_ITEMS = 64
#: dimensions of one array, and elements in it.
MAX_DIMS = 8
MAX_ELEMENTS = 10_000_000
#: characters of a string value, and of a float's text (``repr`` of a double is at most 24).
MAX_TEXT = 10_000
MAX_FLOAT_TEXT = 64


class WireError(ValueError):
    """A message on the wire is malformed or breaks a limit."""


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """Encode a numeric NumPy array as a JSON-ready dict.

    Args:
        array: a NumPy array whose dtype is in :data:`ALLOWED_DTYPES`.

    Returns:
        ``{"t": "array", "dtype", "shape", "data"}`` with base64 data.

    Shapes:
        array: any; the shape travels with it.

    Raises:
        WireError: the dtype is not allowed.

    Example:
        >>> message = encode_array(np.arange(3, dtype=np.int64))
        >>> message["dtype"], message["shape"]
        ('int64', [3])
        >>> decode_array(message).tolist()
        [0, 1, 2]
    """
    if not isinstance(array, np.ndarray):
        raise WireError(f"array must be a numpy.ndarray, got {type(array).__name__}")
    name = array.dtype.name
    if name not in ALLOWED_DTYPES:
        raise WireError(f"array dtype must be one of {ALLOWED_DTYPES}, got {name!r}")
    contiguous = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return {
        "t": "array",
        "dtype": name,
        "shape": [int(n) for n in array.shape],
        "data": base64.b64encode(contiguous.tobytes()).decode("ascii"),
    }


def decode_array(message: object) -> np.ndarray:
    """Decode an array message with strict checks.

    Args:
        message: a dict produced by :func:`encode_array` (or forged to look like one).

    Returns:
        A fresh, writeable NumPy array.

    Raises:
        WireError: a missing or extra key, a dtype outside the whitelist, a bad
            shape, or a byte count that does not match the shape.

    Example:
        >>> decode_array({"t": "array", "dtype": "object", "shape": [], "data": ""})
        Traceback (most recent call last):
        ...
        coursekit.grading.wire.WireError: array dtype must be one of ...
    """
    if not isinstance(message, dict) or set(message) != {"t", "dtype", "shape", "data"} or message["t"] != "array":
        raise WireError("an array message must be a dict with exactly the keys t, dtype, shape, data")
    dtype = message["dtype"]
    if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
        raise WireError(f"array dtype must be one of {ALLOWED_DTYPES}")
    shape = message["shape"]
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(type(n) is int and 0 <= n <= MAX_ELEMENTS for n in shape)
    ):
        raise WireError(f"array shape must be a list of at most {MAX_DIMS} non-negative ints")
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise WireError(f"array has more than {MAX_ELEMENTS} elements")
    data = message["data"]
    if not isinstance(data, str):
        raise WireError("array data must be a base64 string")
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise WireError("array data is not valid base64") from None
    wire_dtype = np.dtype(dtype).newbyteorder("<")
    if len(raw) != count * wire_dtype.itemsize:
        raise WireError("array data does not hold as many bytes as its shape needs")
    return np.frombuffer(raw, dtype=wire_dtype).astype(np.dtype(dtype), copy=True).reshape(shape)


def encode_value(value: object, depth: int = 0) -> dict[str, Any]:
    """Encode a grader-side value (array, number, string, bool, None, list).

    Args:
        value: the value to send.
        depth: current nesting (callers leave it at 0).

    Returns:
        A JSON-ready dict tagged with ``"t"``.

    Raises:
        WireError: an unsupported type or nesting deeper than :data:`MAX_DEPTH`.

    Example:
        >>> encode_value([1.5, "sum", None])["items"][1]
        {'t': 'str', 'v': 'sum'}
    """
    if depth > MAX_DEPTH:
        raise WireError(f"values may nest at most {MAX_DEPTH} levels deep")
    if value is None:
        return {"t": "none"}
    if isinstance(value, bool):
        return {"t": "bool", "v": value}
    if isinstance(value, int):
        return {"t": "int", "v": value}
    if isinstance(value, float):
        return {"t": "float", "v": repr(value)}
    if isinstance(value, str):
        return {"t": "str", "v": value}
    if isinstance(value, np.ndarray):
        return encode_array(value)
    if isinstance(value, (list, tuple)):
        return {"t": "list", "items": [encode_value(item, depth + 1) for item in value]}
    raise WireError(f"cannot encode a value of type {type(value).__name__}")


def decode_value(message: object, depth: int = 0) -> object:
    """Decode a value message strictly (the inverse of :func:`encode_value`).

    Floats travel as their ``repr`` so ``nan`` and ``inf`` survive JSON.

    Args:
        message: the decoded JSON object.
        depth: current nesting (callers leave it at 0).

    Returns:
        ``None``, ``bool``, ``int``, ``float``, ``str``, ``numpy.ndarray`` or a list of those.

    Raises:
        WireError: anything else.

    Example:
        >>> decode_value({"t": "float", "v": "nan"})
        nan
        >>> decode_value({"t": "eval", "v": "__import__('os')"})
        Traceback (most recent call last):
        ...
        coursekit.grading.wire.WireError: unknown value tag
    """
    if depth > MAX_DEPTH:
        raise WireError(f"values may nest at most {MAX_DEPTH} levels deep")
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise WireError("a value message must be a dict with a string tag 't'")
    tag = message["t"]
    if tag == "array":
        return decode_array(message)
    if tag == "list":
        items = message.get("items")
        if set(message) != {"t", "items"} or not isinstance(items, list) or len(items) > MAX_LIST_ITEMS:
            raise WireError(f"a list message must hold at most {MAX_LIST_ITEMS} items")
        return [decode_value(item, depth + 1) for item in items]
    if tag == "none" and set(message) == {"t"}:
        return None
    if set(message) != {"t", "v"}:
        if tag in ("bool", "int", "float", "str", "none"):
            raise WireError(f"a {tag} message must have exactly the keys t and v")
        raise WireError("unknown value tag")
    payload = message["v"]
    if tag == "bool" and type(payload) is bool:
        return payload
    if tag == "int" and type(payload) is int and abs(payload) < 2**63:
        return payload
    if tag == "float" and isinstance(payload, str) and len(payload) < MAX_FLOAT_TEXT:
        try:
            return float(payload)
        except ValueError:
            raise WireError("a float payload is not a number") from None
    if tag == "str" and isinstance(payload, str) and len(payload) <= MAX_TEXT:
        return payload
    if tag in ("bool", "int", "float", "str"):
        raise WireError(f"bad payload for a {tag} message")
    raise WireError("unknown value tag")
