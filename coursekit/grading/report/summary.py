"""The class's numbers: per question, per failure message, per outcome, per graded function.

Pure functions of the stored submission reports (and, for code similarity, of
the parsed answers); the page module only lays them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import mean, median

import numpy as np

from coursekit.grading.driver import SubmissionReport
from coursekit.grading.report.results import ClassResults, GradedFunction
from coursekit.grading.report.similarity import Group, fingerprint, near_identical_groups, similarity
from coursekit.grading.verdicts import failure_kind

#: similarity to the reference from which an answer is flagged for review (see :mod:`.similarity`).
REFERENCE_FLAG = 0.9
#: similarity from which two students' answers are linked as near-identical.
NEAR_IDENTICAL = 0.95


@dataclass(frozen=True)
class ScoreSummary:
    """The distribution of total scores.

    Attributes:
        count: submissions.
        max_score: the assignment's points.
        mean, median, lowest, highest: of the total scores.
    """

    count: int
    max_score: float
    mean: float
    median: float
    lowest: float
    highest: float


@dataclass(frozen=True)
class QuestionStats:
    """How the class did on one question.

    Attributes:
        grade_id: the question.
        points: its points.
        mean_score: mean points earned.
        passed, partial, failed: students with every, some, or no hidden check passed (a forfeit is failed).
        uses_reference: students whose answer reached the reference.
        not_counted: of the failed, the students whose hidden checks were not counted (a visible check failed,
            the reference reached, a banned operation used; the feedback says which).
    """

    grade_id: str
    points: float
    mean_score: float
    passed: int
    partial: int
    failed: int
    uses_reference: int
    not_counted: int = 0

    @property
    def pass_rate(self) -> float:
        """The fraction of students who passed every hidden check."""
        total = self.passed + self.partial + self.failed
        return self.passed / total if total else 0.0


@dataclass(frozen=True)
class Failure:
    """One failure message of one question and the students who got it."""

    grade_id: str
    message: str
    students: tuple[str, ...]


@dataclass(frozen=True)
class Closeness:
    """One student's answer to one graded function, compared with the reference."""

    student: str
    similarity: float

    @property
    def flagged(self) -> bool:
        """Close enough to the reference to be worth a look (never a score change)."""
        return self.similarity >= REFERENCE_FLAG


def score_summary(reports: list[SubmissionReport]) -> ScoreSummary:
    """Count, mean, median, lowest and highest total score.

    Example:
        >>> r = [SubmissionReport("a", "x", 2.0, 10.0, "graded"), SubmissionReport("b", "x", 6.0, 10.0, "graded")]
        >>> score_summary(r)
        ScoreSummary(count=2, max_score=10.0, mean=4.0, median=4.0, lowest=2.0, highest=6.0)
    """
    scores = [r.score for r in reports]
    top = max((r.max_score for r in reports), default=0.0)
    if not scores:
        return ScoreSummary(0, top, 0.0, 0.0, 0.0, 0.0)
    return ScoreSummary(len(scores), top, mean(scores), median(scores), min(scores), max(scores))


def question_stats(reports: list[SubmissionReport]) -> list[QuestionStats]:
    """Per question (in the order the reports list them): mean score and pass / partial / fail counts.

    Example:
        >>> q = {"grade_id": "t", "score": 1.0, "max_score": 2.0, "outcome": "partial", "uses_reference": False}
        >>> [s.pass_rate for s in question_stats([SubmissionReport("a", "x", 1.0, 2.0, "graded", questions=[q])])]
        [0.0]
    """
    order: list[str] = []
    rows: dict[str, list[dict]] = {}
    for report in reports:
        for question in report.questions:
            grade_id = question["grade_id"]
            if grade_id not in rows:
                order.append(grade_id)
                rows[grade_id] = []
            rows[grade_id].append(question)
    stats = []
    for grade_id in order:
        answers = rows[grade_id]
        outcomes = [a.get("outcome") for a in answers]
        stats.append(QuestionStats(
            grade_id=grade_id,
            points=max(float(a["max_score"]) for a in answers),
            mean_score=mean(float(a["score"]) for a in answers),
            passed=outcomes.count("passed"),
            partial=outcomes.count("partial"),
            failed=outcomes.count("failed"),
            uses_reference=sum(bool(a.get("uses_reference")) for a in answers),
            not_counted=sum(bool(a.get("not_counted")) for a in answers),
        ))
    return stats


def common_failures(reports: list[SubmissionReport], limit: int = 25) -> list[Failure]:
    """The failure messages that most students got, grouped by question and message.

    Messages are grouped by their kind (:func:`~coursekit.grading.verdicts.failure_kind`),
    as the student's feedback groups failures: the count of checks in front
    ("36 of 70 hidden checks of the function: ") and the example behind ("; e.g.
    ...", one student's case and values) differ from student to student.

    Args:
        reports: the submission reports.
        limit: the most messages returned.

    Returns:
        The messages with the students who got them, most students first.

    Example:
        >>> line = "{} of 9 hidden checks of the function: wrong values; e.g. f(x float32 ({},)): expected 1, got 2"
        >>> q = lambda n: {"grade_id": "t", "messages": [line.format(n, n)]}
        >>> r = [SubmissionReport(s, "x", 0.0, 1.0, "graded", questions=[q(n)]) for s, n in (("a", 3), ("b", 5))]
        >>> common_failures(r)
        [Failure(grade_id='t', message='wrong values', students=('a', 'b'))]
    """
    found: dict[tuple[str, str], set[str]] = {}
    order: list[tuple[str, str]] = []
    for report in reports:
        for question in report.questions:
            for message in question.get("messages", []):
                key = (question["grade_id"], failure_kind(str(message)))
                if key not in found:
                    order.append(key)
                    found[key] = set()
                found[key].add(report.student)
    ranked = sorted(order, key=lambda key: -len(found[key]))
    return [Failure(grade_id, message, tuple(sorted(found[(grade_id, message)]))) for grade_id, message in ranked[:limit]]


def outcome_groups(reports: list[SubmissionReport]) -> dict[str, tuple[str, ...]]:
    """Outcome -> the students with it; ``graded`` first, then the others by how many students have them.

    Example:
        >>> outcome_groups([SubmissionReport("b", "x", 0, 1, "timeout"), SubmissionReport("a", "x", 1, 1, "graded")])
        {'graded': ('a',), 'timeout': ('b',)}
    """
    groups: dict[str, list[str]] = {}
    for report in reports:
        groups.setdefault(report.outcome, []).append(report.student)
    ranked = sorted(groups, key=lambda outcome: (outcome != "graded", -len(groups[outcome]), outcome))
    return {outcome: tuple(sorted(groups[outcome])) for outcome in ranked}


def _written(results: ClassResults, function: GradedFunction) -> dict[str, tuple[str, ...]]:
    """Student -> normalised answer, for the students who wrote one that was compared (a stub is not an answer)."""
    stub = fingerprint(function.stub) if function.stub is not None else None
    written = {}
    for student, answers in results.answers.items():
        answer = answers.get(function.name)
        if answer is not None and answer.compared and answer != stub:
            written[student] = answer.tokens
    return written


def not_compared(results: ClassResults, function: GradedFunction) -> dict[str, str]:
    """Student -> why their answer to ``function`` was left out of the comparisons (too large, not normalisable)."""
    answers = {student: found.get(function.name) for student, found in results.answers.items()}
    return {student: answer.skipped for student, answer in answers.items()
            if answer is not None and not answer.compared}


def closeness_to_reference(results: ClassResults, function: GradedFunction) -> list[Closeness]:
    """Each written answer's similarity to the reference, closest first (empty when there is no reference)."""
    reference_answer = fingerprint(function.reference) if function.reference is not None else None
    if reference_answer is None or not reference_answer.compared:
        return []
    reference = reference_answer.tokens
    rows = [Closeness(s, similarity(tokens, reference)) for s, tokens in _written(results, function).items()]
    return sorted(rows, key=lambda row: (-row.similarity, row.student))


def near_copies(results: ClassResults, function: GradedFunction) -> list[Group]:
    """Groups of students whose written answers are near-identical (see :func:`.near_identical_groups`)."""
    return near_identical_groups(_written(results, function), NEAR_IDENTICAL)


def histogram_counts(scores: list[float], max_score: float, bins: int = 10) -> list[tuple[float, float, int]]:
    """``bins`` equal-width bins over ``[0, max_score]``, as ``numpy.histogram`` counts them: (low, high, count).

    Example:
        >>> histogram_counts([0.0, 5.0, 10.0, 10.0], 10.0, bins=2)
        [(0.0, 5.0, 1), (5.0, 10.0, 3)]
    """
    counts, edges = np.histogram(scores, bins=bins, range=(0.0, max_score if max_score > 0 else 1.0))
    return [(float(edges[i]), float(edges[i + 1]), int(counts[i])) for i in range(bins)]
