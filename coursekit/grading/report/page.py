"""The report as one self-contained HTML page: inline CSS, figures as data URIs, no script, no link out.

Every string that comes from a submission or the stored results (student ids,
notes, messages) passes through ``html.escape`` here, and nowhere else is
HTML written, so a ``<script>`` in a student's notebook or timestamp stays text.
Tables carry ids (``questions``, ``failures``, ``outcomes``, ``students`` ...)
so that a reader's tools, and the tests, can find them.
"""

from __future__ import annotations

from html import escape
from typing import Iterable, Sequence

from coursekit.grading.report import figures
from coursekit.grading.report.results import ClassResults
from coursekit.grading.report.similarity import MAX_CELL_CHARS, MAX_NODES
from coursekit.grading.report.summary import (
    NEAR_IDENTICAL,
    REFERENCE_FLAG,
    closeness_to_reference,
    common_failures,
    histogram_counts,
    near_copies,
    not_compared,
    outcome_groups,
    question_stats,
    score_summary,
)

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #1d2430; margin: 2rem auto; max-width: 70rem; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #d5dbe3; }
table { border-collapse: collapse; margin: .6rem 0 1rem; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e4e8ee; text-align: left; vertical-align: top; }
th { background: #f2f5f9; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; } .flag { color: #a23b1c; font-weight: 600; }
.note { color: #4d5866; font-size: .92rem; } .students { max-width: 40rem; }
"""


def _table(table_id: str, header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table whose cells are already escaped HTML; columns in ``numeric`` are right-aligned."""
    head = "".join(f"<th scope=\"col\">{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(f"<td class=\"num\">{c}</td>" if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    if not body:
        return "<p class=\"note\">None.</p>"
    return f"<table id=\"{escape(table_id)}\"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(uri: str, alt: str, caption: str) -> str:
    return (f"<figure><img src=\"{uri}\" alt=\"{escape(alt)}\">"
            f"<figcaption class=\"note\">{escape(caption)}</figcaption></figure>")


def _count(students: int) -> str:
    return f"{students} student" + ("" if students == 1 else "s")


def _names(students: Iterable[str]) -> str:
    return f"<span class=\"students\">{escape(', '.join(students))}</span>"


def _scores(results: ClassResults) -> str:
    summary = score_summary(results.reports)
    bins = histogram_counts([r.score for r in results.reports], summary.max_score)
    uri, alt = figures.score_histogram(bins, summary.max_score)
    facts = (f"{summary.count} submissions; mean {summary.mean:.2f}, median {summary.median:.2f}, "
             f"lowest {summary.lowest:g}, highest {summary.highest:g} of {summary.max_score:g} points.")
    rows = [(f"[{low:g}, {high:g}{']' if i == len(bins) - 1 else ')'}", str(count))
            for i, (low, high, count) in enumerate(bins)]
    return ("<h2 id=\"scores\">Score distribution</h2>"
            f"<p>{escape(facts)}</p>"
            + _figure(uri, alt, "Total auto score per submission.")
            + _table("histogram", ("score", "students"), rows, numeric=(1,)))


def _questions(results: ClassResults) -> str:
    stats = question_stats(results.reports)
    uri, alt = figures.pass_rates(stats)
    rows = [(escape(s.grade_id), f"{s.points:g}", f"{s.mean_score:.3f}", f"{100 * s.pass_rate:.1f}%", str(s.passed),
             str(s.partial), str(s.failed), str(s.uses_reference), str(s.not_counted)) for s in stats]
    return ("<h2 id=\"per-question\">Questions</h2>"
            + _figure(uri, alt, "Share of students who passed every hidden check of a question, and some of them.")
            + "<p class=\"note\">failed: no hidden check passed, or none was counted; hidden checks not counted: "
              "the question was forfeit because a visible check failed or did not finish, the answer reached the "
              "reference, or it used a banned operation (the message under Most common failures says which).</p>"
            + _table("questions", ("question", "points", "mean score", "pass rate", "passed", "partial", "failed",
                                   "uses reference", "hidden checks not counted"), rows,
                     numeric=(1, 2, 3, 4, 5, 6, 7, 8)))


def _failures(results: ClassResults) -> str:
    rows = [(escape(f.grade_id), str(len(f.students)), escape(f"{_count(len(f.students))}: {f.message}"),
             _names(f.students)) for f in common_failures(results.reports)]
    return ("<h2 id=\"common-failures\">Most common failures</h2>"
            "<p class=\"note\">Feedback messages of the hidden checks, grouped by question and message, most students "
            "first (the count of checks in front of each message is left out).</p>"
            + _table("failures", ("question", "students", "message", "who"), rows, numeric=(1,)))


def _outcomes(results: ClassResults) -> str:
    rows = [(escape(outcome), str(len(students)), _names(students))
            for outcome, students in outcome_groups(results.reports).items()]
    reference = sorted({r.student for r in results.reports for q in r.questions if q.get("uses_reference")})
    extra = (f"<p>Answers reaching a withheld reference (that question earns nothing): {_names(reference)}.</p>"
             if reference else "")
    return ("<h2 id=\"submission-outcomes\">Outcomes</h2>"
            "<p class=\"note\">graded: ran to the end; timeout, memory_limit, kernel_died: stopped by a limit or a "
            "crash; tampered_cells, missing_cells: read-only or test cells were changed or deleted and were "
            "restored; missing_notebook: no notebook of the expected name (the note names the ones handed in "
            "instead); uses_reference: an answer reached the withheld reference; grader_error: the grader itself "
            "failed on the submission (its traceback is in the grader's log), recorded no grade and tries it again "
            "on the next run.</p>"
            + _table("outcomes", ("outcome", "students", "who"), rows, numeric=(1,)) + extra)


def _similarity(results: ClassResults) -> str:
    parts = ["<h2 id=\"code-similarity\">Code similarity</h2>",
             "<p class=\"note\">Each answer is compared with the reference and with the other students' answers "
             "after normalisation: docstrings, comments and formatting dropped, local names renamed in order of "
             "first appearance, library calls kept. Similarity is difflib's ratio 2M/(a+b) of the token sequences "
             f"(1 = identical). Answers at {REFERENCE_FLAG:g} or more from the reference are flagged for review: "
             "the book shows the reference on purpose, so a flag is a reason to read the answer, never a score. "
             f"Students are grouped as near-identical when their answers are {NEAR_IDENTICAL:g} or more alike "
             "(linked pairwise); untouched answers are left out, and so are answers the report does not compare "
             f"(listed under each function): a code cell over {MAX_CELL_CHARS:,} characters is not parsed, a function "
             f"over {MAX_NODES:,} syntax nodes is not normalised, and one that cannot be normalised (an expression "
             "nested too deep) is named.</p>"]
    for function in results.functions:
        slug = escape(function.name)
        parts.append(f"<h3 id=\"function-{slug}\"><code>{slug}</code> ({escape(function.grade_id)})</h3>")
        closeness = closeness_to_reference(results, function)
        if function.reference is None:
            parts.append("<p class=\"note\">No reference in coursekit to compare with.</p>")
        else:
            flagged = [c for c in closeness if c.flagged]
            parts.append(f"<p>{len(flagged)} of {len(closeness)} written answers flagged as close to the reference."
                         "</p>")
            levels: dict[tuple[float, bool], list[str]] = {}
            for row in closeness:
                levels.setdefault((row.similarity, row.flagged), []).append(row.student)
            rows = [(f"{level:.3f}", str(len(students)), _names(students),
                     "<span class=\"flag\">review</span>" if flag else "")
                    for (level, flag), students in levels.items()]
            parts.append(_table(f"reference-{slug}", ("similarity to the reference", "students", "who", "flag"), rows,
                                numeric=(0, 1)))
        groups = near_copies(results, function)
        rows = [(str(len(g.students)), f"{g.lowest:.3f}", _names(g.students)) for g in groups]
        parts.append("<h4>Near-identical answers</h4>"
                     + _table(f"copies-{slug}", ("students", "weakest link", "who"), rows, numeric=(0, 1)))
        skipped = [(escape(student), escape(reason))
                   for student, reason in sorted(not_compared(results, function).items())]
        parts.append("<h4>Answers not compared</h4>"
                     + _table(f"not-compared-{slug}", ("student", "why"), skipped))
    return "".join(parts)


def _students(results: ClassResults) -> str:
    seconds = [r.seconds for r in results.reports]
    uri, alt = figures.time_histogram(seconds)
    rows = [(escape(r.student), f"{r.score:g}", f"{r.max_score:g}", escape(r.outcome), f"{r.seconds:.1f}",
             escape("; ".join(r.notes))) for r in results.reports]
    return ("<h2 id=\"per-submission\">Submissions and grading time</h2>"
            + _figure(uri, alt, "Wall-clock time of each submission in the sandbox, every attempt together.")
            + _table("students", ("student", "score", "max score", "outcome", "seconds", "notes"), rows,
                     numeric=(1, 2, 4)))


def render(results: ClassResults) -> str:
    """The whole report page for ``results``.

    Args:
        results: the class's stored results.

    Returns:
        A complete HTML document that loads nothing from anywhere.
    """
    title = f"Grading report: {results.assignment}"
    sections = [_scores(results), _questions(results), _failures(results), _outcomes(results),
                _similarity(results), _students(results)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">"
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{escape(title)}</h1>"
            "<p class=\"note\">Made by <code>coursekit report</code> from the stored results in grade-reports/; "
            "regenerate it with <code>coursekit report " + escape(results.assignment) + "</code>.</p>"
            + "".join(sections) + "</body></html>\n")
