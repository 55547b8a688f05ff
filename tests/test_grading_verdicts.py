"""How a failed visible check is quoted in the feedback (``coursekit.grading.verdicts.visible_check_failure``).

The messages are a3's own: every ``assert`` of its released test cells, its
f-strings formatted with a number that has digits on both sides of the point.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from coursekit.grading.protocol import CellEnd, CellStatus
from coursekit.grading.spec import ValueQuestion
from coursekit.grading.verdicts import QUOTED_CHARS, VISIBLE_CHECK_FAILED, quoted_message, visible_check_failure

A3 = Path(__file__).resolve().parents[1] / "assignments" / "source" / "a3_rnn_loss" / "a3_rnn_loss.ipynb"
#: the value every name in an f-string message is given (a student's NLL, say).
SAMPLE = 2.347
QUESTION = ValueQuestion("test_any", 1, {"answer": (1,)})


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
