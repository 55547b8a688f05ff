"""A wall-clock limit on the grader's own work on one submission.

The grader checks and restores each notebook in its own process, one
submission after another, before any sandbox starts. Every step of that is
meant to take time linear in the upload, but a step that is not (grader review
r4, finding 3: a bracket count that was quadratic on a truncated upload) would
stall the whole batch with no error. :func:`time_guard` turns such a stall into
an exception, which the driver records as that submission's ``grader_error``
while the batch goes on.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Iterator

#: seconds the grader may spend preparing one submission (reading, checking and restoring it). A 20 MB
#: notebook, the largest accepted, takes well under a second; a minute says something is wrong.
PREPARATION_TIMEOUT_S = 60.0


class PreparationTimeout(Exception):
    """The grader's own preparation of a submission took longer than its limit."""


@contextmanager
def time_guard(seconds: float, what: str) -> Iterator[None]:
    """Raise :class:`PreparationTimeout` in the block when it runs longer than ``seconds``.

    The limit is a ``SIGALRM`` timer, so it applies in the main thread only (the
    grader prepares submissions there); elsewhere the block runs unguarded.
    Python checks for signals between bytecodes, so a block stuck inside one
    long C call is interrupted when that call returns.

    Args:
        seconds: the wall-clock limit, positive.
        what: what the block does, for the exception's message.

    Raises:
        PreparationTimeout: the block ran past ``seconds``.
        ValueError: ``seconds`` is not positive.

    Example:
        >>> with time_guard(5.0, "adding"):
        ...     1 + 1
        2
    """
    if not seconds > 0:
        raise ValueError(f"time_guard's seconds must be positive, got {seconds!r}")
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise PreparationTimeout(f"{what} took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
