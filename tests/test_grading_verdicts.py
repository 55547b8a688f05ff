"""What the feedback says of a forfeit question: a failed visible check, the reference reached, a banned operation.

A failed visible check is quoted (``coursekit.grading.verdicts.visible_check_failure``);
the messages are a3's own: every ``assert`` of its released test cells, its
f-strings formatted with a number that has digits on both sides of the point.
Every forfeit says why its hidden checks were not counted, in the feedback
notebook and in the class report.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from coursekit.grading.autograded import render as render_autograded
from coursekit.grading.driver import SubmissionReport
from coursekit.grading.notebook import PreparedNotebook
from coursekit.grading.protocol import CallEnd, CallStatus, CellEnd, CellStatus
from coursekit.grading.report.page import render as render_report
from coursekit.grading.report.results import ClassResults
from coursekit.grading.spec import AssignmentSpec, BannedOp, Case, FunctionQuestion, ValueQuestion, prepare_calls
from coursekit.grading.verdicts import (QUOTED_CHARS, VISIBLE_CHECK_FAILED, QuestionResult, quoted_message,
                                        score_question, visible_check_failure)
from coursekit.grading.wire import encode_value
from conftest import GRADING_SECRET
from html_tables import tables

A3 = Path(__file__).resolve().parents[1] / "assignments" / "source" / "a3_rnn_loss" / "a3_rnn_loss.ipynb"
#: the value every name in an f-string message is given (a student's NLL, say).
SAMPLE = 2.347
QUESTION = ValueQuestion("test_any", 1, {"answer": (1.0,)})


def _visible_source(cell: dict) -> str:
    """A test cell's source without its hidden block (what the student's notebook runs)."""
    return "".join(cell["source"]).split("### BEGIN HIDDEN TESTS")[0]


def a3_visible_messages() -> list[str]:
    """The message of every assert in a3's autograder test cells, f-strings formatted with :data:`SAMPLE`."""
    messages = []
    for cell in json.loads(A3.read_text())["cells"]:
        if not cell.get("metadata", {}).get("nbgrader", {}).get("grade") or cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse(_visible_source(cell))):
            if isinstance(node, ast.Assert) and isinstance(node.msg, (ast.Constant, ast.JoinedStr)):
                names = {n.id: SAMPLE for n in ast.walk(node.msg) if isinstance(n, ast.Name)}
                messages.append(eval(compile(ast.Expression(node.msg), str(A3), "eval"), {}, names))
    return messages


def test_a3_has_visible_messages_with_digits() -> None:
    messages = a3_visible_messages()
    assert f"validation NLL {SAMPLE:.3f} is not below 2.0" in messages, messages
    assert "10 predicted steps in chunks of 4: 3 chunks" in messages, messages


@pytest.mark.parametrize("message", a3_visible_messages())
def test_a_failed_visible_check_is_quoted_with_its_digits(message: str) -> None:
    failed = CellEnd(7, CellStatus.ERROR, ename="AssertionError", evalue=message)
    assert visible_check_failure(QUESTION, 4, failed).messages == [f"{VISIBLE_CHECK_FAILED}: AssertionError: {message}"]


def test_a_hidden_call_message_still_has_its_digits_masked() -> None:
    assert quoted_message("AssertionError", "validation NLL 2.347") == "AssertionError: validation NLL #.#"


def test_a_visible_check_message_is_one_line_and_capped() -> None:
    message = "first line 1.5\n   second  line " + "x" * 500
    failed = CellEnd(7, CellStatus.ERROR, ename="AssertionError", evalue=message)
    quoted = visible_check_failure(QUESTION, 1, failed).messages[0]
    assert "\n" not in quoted and "first line 1.5 second line x" in quoted
    assert quoted.endswith("...") and len(quoted) == len(f"{VISIBLE_CHECK_FAILED}: AssertionError: ") + QUOTED_CHARS


def test_a_visible_check_names_only_a_class_python_defines() -> None:
    failed = CellEnd(7, CellStatus.ERROR, ename="Secret_1234", evalue="check 3 failed")
    assert visible_check_failure(QUESTION, 1, failed).messages == [f"{VISIBLE_CHECK_FAILED}: check 3 failed"]


def test_a_forfeit_says_its_hidden_checks_were_not_counted_rather_than_all_failed() -> None:
    # Grader review r6, finding 4(b): "0 of 4 hidden checks passed" read as if every hidden case had failed.
    failed = visible_check_failure(QUESTION, 4, CellEnd(3, CellStatus.ERROR, ename="ValueError", evalue="no"))
    unfinished = visible_check_failure(QUESTION, 4, None)
    assert (failed.passed, failed.score, failed.outcome) == (None, 0.0, "failed")
    assert failed.counted() == "hidden checks not counted: a visible check failed"
    assert unfinished.counted() == "hidden checks not counted: the visible checks did not finish"
    assert json.loads(json.dumps(failed.to_dict()))["passed"] is None


def _double_question(banned: tuple = ()) -> tuple:
    """A two-point question on ``double`` with four hidden cases, its prepared calls and right answers to them."""
    question = FunctionQuestion("test_double", "double", 2, lambda rng: [Case((rng.standard_normal(3),))
                                                                         for _ in range(4)],
                                lambda x: x * 2, grad_wrt=(0,), banned=banned)
    spec = AssignmentSpec("demo", "demo", 5, (question,))
    calls = prepare_calls(spec, course="seqloss", student="ada", secret=GRADING_SECRET)["test_double"]
    ends = {c.call["id"]: CallEnd(c.call["id"], CallStatus.OK, encode_value(np.asarray(c.expected)),
                                  [encode_value(g) for g in c.expected_grads]) for c in calls}
    return question, calls, ends


def _forfeits() -> dict[str, QuestionResult]:
    """One forfeit of each kind, every hidden case but the forfeiting one answered right."""
    question, calls, ends = _double_question()
    first = calls[0].call["id"]
    reached = score_question(question, calls, {**ends, first: CallEnd(first, CallStatus.WITHHELD,
                                                                      hits=["coursekit.losses.nll.x"])},
                             tripwires={"coursekit.losses.nll.x"})
    banned_question, calls, ends = _double_question(banned=(BannedOp("_log_softmax", "F.log_softmax"),))
    first = calls[0].call["id"]
    banned = score_question(banned_question, calls, {**ends, first: CallEnd(first, CallStatus.BANNED,
                                                                           hits=["_log_softmax"])})
    return {
        "reference": reached,
        "banned": banned,
        "visible": visible_check_failure(QUESTION, 4, CellEnd(3, CellStatus.ERROR, ename="ValueError", evalue="no")),
        "unfinished": visible_check_failure(QUESTION, 4, None),
    }


#: per forfeit: its feedback line, and the first line's words on the hidden checks (both graders print them).
FORFEIT_MESSAGES = {
    "reference": (["double reaches the reference (coursekit.losses.nll.x), which earns nothing"],
                  "hidden checks not counted: the function reached the reference solution"),
    "banned": (["double must not use F.log_softmax"], "hidden checks not counted: the function used a banned operation"),
    "visible": ([f"{VISIBLE_CHECK_FAILED}: ValueError: no"], "hidden checks not counted: a visible check failed"),
    "unfinished": (["the visible checks did not finish"], "hidden checks not counted: the visible checks did not finish"),
}


@pytest.mark.parametrize("kind", sorted(FORFEIT_MESSAGES))
def test_every_forfeit_says_why_its_hidden_checks_were_not_counted(kind: str) -> None:
    # A banned operation or the reference reached read "0 of 4 hidden checks passed", as if the checks had run
    # and failed; three of the four cases here were answered right.
    result = _forfeits()[kind]
    messages, counted = FORFEIT_MESSAGES[kind]
    assert (result.score, result.passed, result.outcome) == (0.0, None, "failed")
    assert (result.messages, result.counted()) == (messages, counted)
    assert result.uses_reference == (kind == "reference")
    stored = json.loads(json.dumps(result.to_dict()))
    assert stored["passed"] is None and f"hidden checks not counted: {stored['not_counted']}" == counted


def test_the_feedback_notebook_says_why_a_forfeit_s_hidden_checks_were_not_counted() -> None:
    # The autograded notebook is what nbgrader generate_feedback turns into the student's feedback page.
    result = _forfeits()["banned"]
    cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": "check()"}
    prepared = PreparedNotebook(None, notebook={"cells": [cell]}, test_cells={"test_double": 0})
    outputs = render_autograded(prepared, None, {"test_double": result}, "graded")["cells"][0]["outputs"]
    assert [o["text"] for o in outputs] == [
        "coursekit grade: 0 / 2 points (hidden checks not counted: the function used a banned operation; "
        "outcome: graded)\ndouble must not use F.log_softmax\n"]


def test_the_class_report_counts_forfeits_apart_and_shows_their_messages(tmp_path: Path) -> None:
    forfeits = _forfeits()
    question, calls, ends = _double_question()
    right = score_question(question, calls, ends)
    reports = [SubmissionReport(student, "demo", result.score, 2.0, "graded", questions=[result.to_dict()])
               for student, result in (("ada", forfeits["reference"]), ("bob", forfeits["banned"]), ("cy", right))]
    page = render_report(ClassResults("demo", tmp_path, reports, []))

    found = tables(page).tables
    # question, points, mean score, pass rate, passed, partial, failed, uses reference, hidden checks not counted
    assert found["questions"] == [["test_double", "2", "0.667", "33.3%", "1", "0", "2", "1", "2"]]
    failures = {row[2] for row in found["failures"]}
    assert failures == {"1 student: double reaches the reference (coursekit.losses.nll.x), which earns nothing",
                        "1 student: double must not use F.log_softmax"}
