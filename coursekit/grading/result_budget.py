"""How many bytes of call results the grader keeps for one submission.

The runner bounds each call's report (64 MiB, see
:func:`coursekit.grading.runner.report_bounds`), but the grader keeps every
call's result until the submission is scored, in its own process, which no
cgroup bounds. A function that honestly returns ``torch.zeros(10_000_000)``
from each of a1's 48 hidden calls would leave gigabytes there. So the grader
counts the text of the results it keeps, and a call whose result would pass
the submission's budget is kept as :attr:`~coursekit.grading.protocol.CallStatus.TOO_LARGE`,
without its value: the call fails, the batch goes on.

Example:
    >>> wire_size({"t": "array", "dtype": "float64", "shape": [2], "data": "A" * 24})
    75
"""

from __future__ import annotations

from typing import Any

#: bytes of result text kept per submission: far above any course answer (a1's largest is a few KiB).
MAX_RESULT_BYTES = 64 * 1024 * 1024


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
