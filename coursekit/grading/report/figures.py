"""The report's figures, drawn by matplotlib and embedded as PNG data URIs (the page needs no other file).

Each function returns ``(data_uri, alt_text)``; the alt text states what the
figure shows in words, for a reader who cannot see it.
"""

from __future__ import annotations

import base64
import io
from statistics import median

from matplotlib.figure import Figure

from coursekit.grading.report.summary import QuestionStats

#: figure size in inches and resolution: 640 x 320 pixels, sharp enough to read and small enough to mail.
_SIZE, _DPI = (6.4, 3.2), 100


def _data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def score_histogram(bins: list[tuple[float, float, int]], max_score: float) -> tuple[str, str]:
    """The distribution of total scores (bins from :func:`~.summary.histogram_counts`).

    Example:
        >>> uri, alt = score_histogram([(0.0, 5.0, 1), (5.0, 10.0, 3)], 10.0)
        >>> uri.startswith("data:image/png;base64,"), alt
        (True, 'Histogram of total scores out of 10: 1 in [0, 5), 3 in [5, 10].')
    """
    figure = Figure(figsize=_SIZE)
    axes = figure.subplots()
    lows = [low for low, _, _ in bins]
    widths = [high - low for low, high, _ in bins]
    axes.bar(lows, [count for _, _, count in bins], width=widths, align="edge", color="#3b6ea8", edgecolor="white")
    axes.set_xlim(0, max_score or 1.0)
    axes.set_xlabel(f"total score (out of {max_score:g})")
    axes.set_ylabel("students")
    axes.yaxis.get_major_locator().set_params(integer=True)
    parts = [f"{count} in [{low:g}, {high:g}{']' if i == len(bins) - 1 else ')'}"
             for i, (low, high, count) in enumerate(bins) if count]
    return _data_uri(figure), f"Histogram of total scores out of {max_score:g}: {', '.join(parts)}."


def pass_rates(stats: list[QuestionStats]) -> tuple[str, str]:
    """Per question, the share of students who passed every hidden check and who passed some.

    Example:
        >>> s = QuestionStats("test_f", 2.0, 1.0, passed=1, partial=1, failed=2, uses_reference=0)
        >>> pass_rates([s])[1]
        'Bar chart of pass rates per question: test_f 25% passed every check, 25% some.'
    """
    figure = Figure(figsize=_SIZE)
    axes = figure.subplots()
    names = [s.grade_id for s in stats]
    totals = [max(s.passed + s.partial + s.failed, 1) for s in stats]
    full = [100 * s.passed / t for s, t in zip(stats, totals)]
    some = [100 * s.partial / t for s, t in zip(stats, totals)]
    axes.barh(names, full, color="#3b6ea8", label="every check passed")
    axes.barh(names, some, left=full, color="#9dbbe0", label="some checks passed")
    axes.invert_yaxis()
    axes.set_xlim(0, 100)
    axes.set_xlabel("students (%)")
    axes.legend(loc="lower right", fontsize="small")
    words = [f"{n} {f:.0f}% passed every check, {p:.0f}% some" for n, f, p in zip(names, full, some)]
    return _data_uri(figure), f"Bar chart of pass rates per question: {'; '.join(words)}."


def time_histogram(seconds: list[float]) -> tuple[str, str]:
    """The wall-clock time of each submission in the sandbox, every attempt together.

    Example:
        >>> time_histogram([1.0, 3.0])[1]
        'Histogram of grading time per submission: 2 submissions, from 1.0 s to 3.0 s, median 2.0 s.'
    """
    figure = Figure(figsize=_SIZE)
    axes = figure.subplots()
    axes.hist(seconds, bins=20, color="#3b6ea8", edgecolor="white")
    axes.set_xlabel("seconds in the sandbox (all attempts)")
    axes.set_ylabel("submissions")
    axes.yaxis.get_major_locator().set_params(integer=True)
    span = f"from {min(seconds):.1f} s to {max(seconds):.1f} s, median {median(seconds):.1f} s" if seconds else "none"
    return _data_uri(figure), f"Histogram of grading time per submission: {len(seconds)} submissions, {span}."
