"""How many bytes of call results the grader keeps for one submission.

The grader keeps every call's result until the submission is scored, in its
own process, which no cgroup bounds. A function that honestly returns
``torch.zeros(10_000_000)`` from each of a1's 48 hidden calls would leave
gigabytes there. So a call's result may be at most a few times its
reference's (:func:`call_cap`): the grader sends each call's cap to the
runner, which refuses a longer report before it decodes it (reading it to its
end without keeping it, see :func:`coursekit.grading.protocol.call_report_bytes`)
and checks the decoded value's size; the grader counts the text of the
results it keeps again, and a call over its cap, or over the submission's
budget, is kept as :attr:`~coursekit.grading.protocol.CallStatus.TOO_LARGE`,
without its value: the call fails, the batch goes on.

Example:
    >>> wire_size({"t": "array", "dtype": "float64", "shape": [2], "data": "A" * 24})
    75
"""

from __future__ import annotations

from typing import Any, Iterable

from coursekit.grading.wire import WireError, encode_value

#: bytes of result text kept per submission: far above any course answer (a1's largest is a few KiB).
MAX_RESULT_BYTES = 64 * 1024 * 1024
#: a call's result may be this many times its reference's size (float64 for float32, say), plus :data:`CALL_SLACK`.
CALL_FACTOR = 4
CALL_SLACK = 64 * 1024


def call_cap(expected: Any, expected_grads: list[Any]) -> int | None:
    """The most result text a call may send, from its reference answer; ``None`` when that is not plain data.

    A right answer is about as large as the reference, and a wrong one fails
    whatever its size ("wrong shape" needs none of its data).

    Args:
        expected: the reference output (or the accepted answers).
        expected_grads: the reference gradients.

    Returns:
        :data:`CALL_FACTOR` times the reference's :func:`wire_size` plus :data:`CALL_SLACK`.

    Example:
        >>> import numpy as np
        >>> call_cap(np.zeros(4), []) < 100_000
        True
    """
    try:
        size = wire_size(encode_value(expected)) + sum(wire_size(encode_value(g)) for g in expected_grads)
    except (WireError, TypeError, ValueError):
        return None
    return CALL_FACTOR * size + CALL_SLACK


def wire_size(value: Any) -> int:
    """About how many bytes ``value``, a decoded JSON value, holds: its strings' lengths, 8 per other item.

    Iterative, since a report may nest as deep as the runner's bracket bound allows.

    Args:
        value: a call report's ``value`` or ``grads``, as parsed from JSON.

    Returns:
        The sum of the lengths of every string (keys included) plus 8 per number, list, dict or ``None``.
    """
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, dict):
            total += 8
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            total += 8
            stack.extend(item)
        else:
            total += 8
    return total


def result_caps(questions_calls: Iterable[Iterable[Any]]) -> dict[str, int]:
    """:func:`call_cap` of every prepared call whose reference is plain data, by call id.

    Args:
        questions_calls: each question's :class:`~coursekit.grading.spec.PreparedCall` list.

    Returns:
        Call id -> the most result text the call may send.
    """
    caps = {}
    for calls in questions_calls:
        for prepared in calls:
            cap = call_cap(prepared.expected, prepared.expected_grads)
            if cap is not None:
                caps[str(prepared.call["id"])] = cap
    return caps
