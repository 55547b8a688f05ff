"""What the runner wrote on its stderr, as the instructor is shown it when a submission could not run.

The sandbox keeps the last :attr:`~coursekit.grading.limits.Limits.diagnostics_bytes`
of the runner's stderr (a traceback when it failed to set up the working copy,
say). When the outcome is ``kernel_died``, the grader writes the end of it to
its log, under the student's name, and into the submission's JSON report
(``diagnostics``, which only the instructor reads). Student code may write to
that stream too, so what is shown is bounded and has no control characters a
terminal would act on.
"""

from __future__ import annotations

import re

#: the most lines, and characters, of the runner's stderr shown in the log and kept in the report.
SHOWN_LINES = 40
SHOWN_CHARS = 4_000

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def stderr_tail(text: str) -> str:
    """The last :data:`SHOWN_LINES` lines of ``text``, control characters (but tabs and line ends) shown as escapes,
    and of those at most the last :data:`SHOWN_CHARS` characters.

    Args:
        text: the runner's stderr, as the sandbox kept it.

    Returns:
        Its end, ``"[...]"`` first when something was cut; ``""`` when ``text`` holds nothing but space.

    Example:
        >>> stderr_tail("Traceback (most recent call last):\\n  ...\\nOSError: [Errno 28] No space left\\n")
        'Traceback (most recent call last):\\n  ...\\nOSError: [Errno 28] No space left'
        >>> stderr_tail("\\x1b[2Jcleared\\x07 bell")
        '\\\\x1b[2Jcleared\\\\x07 bell'
        >>> stderr_tail("".join(f"line {i}\\n" for i in range(100))).splitlines()[:2]
        ['[...]', 'line 60']
        >>> len(stderr_tail("\\x1b" * 5000)) == len("[...]\\n") + SHOWN_CHARS
        True
    """
    lines = text.rstrip().splitlines()
    # Escaped before the cut, so that the bound holds for what is shown (an escape is four characters).
    kept = _CONTROL.sub(lambda match: ascii(match.group())[1:-1], "\n".join(lines[-SHOWN_LINES:]))
    cut = len(lines) > SHOWN_LINES or len(kept) > SHOWN_CHARS
    kept = kept[-SHOWN_CHARS:]
    return f"[...]\n{kept}" if cut else kept
