"""The introduction's grading paragraphs, written once (coursekit.course.grading_notes) into all six notebooks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from coursekit.course import ASSIGNMENTS
from coursekit.course.derived_tests import derive_course
from coursekit.course.grading_notes import FEEDBACK, PARAGRAPHS, WHAT_IS_GRADED, notes_of, write_grading_notes


def _notebook_path(root: Path, assignment: str) -> Path:
    return root / "source" / assignment / f"{assignment}.ipynb"


def _introduction(path: Path) -> str:
    return "".join(json.loads(path.read_text())["cells"][0]["source"])


def _one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_notebook_has_exactly_the_courses_grading_paragraphs(repo_root: Path, assignment: str) -> None:
    introduction = _introduction(_notebook_path(repo_root / "assignments", assignment))
    assert notes_of(introduction) == PARAGRAPHS, (
        f"{assignment}'s grading paragraphs differ from coursekit.course.grading_notes: run "
        "`python -m coursekit.course derive-hidden-tests --course assignments`")


def test_a_hand_edited_paragraph_is_rewritten_by_the_derive_command(tmp_path: Path, repo_root: Path) -> None:
    for folder in ("source", "autograde"):
        shutil.copytree(repo_root / "assignments" / folder, tmp_path / folder)
    path = _notebook_path(tmp_path, ASSIGNMENTS[1])
    notebook = json.loads(path.read_text())
    edited = _introduction(path).replace(FEEDBACK, "**Feedback.** It shows your exception's message.")
    notebook["cells"][0]["source"] = edited.splitlines(keepends=True)
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    assert notes_of(_introduction(path)) != PARAGRAPHS
    assert derive_course(tmp_path) == [path]
    assert notes_of(_introduction(path)) == PARAGRAPHS
    assert path.read_text() == _notebook_path(repo_root / "assignments", ASSIGNMENTS[1]).read_text()


def test_the_paragraphs_say_what_the_students_page_says(repo_root: Path) -> None:
    page = _one_line((repo_root / "book" / "for_students.md").read_text())
    # The students' page and the notebooks agree on the rules that the review found stated wrongly.
    for phrase in ("times the share of its", "A test cell whose visible checks fail earns 0",
                   "not your numbers, not your exception's message", "whether yours is larger, smaller, `nan` or `inf`",
                   "A visible check that fails is shown as it failed, its exception and message",
                   # Grader review r9, finding 6: the specs' rtol of 1e-4 is four significant digits, not five.
                   "about four significant digits",
                   # Grader review r10: a Python number answers a floating reference of any dtype (verdicts.compare).
                   "A single number returned as a Python `float` has no dtype: its value is compared, whatever the reference's dtype"):
        assert phrase in page, f"book/for_students.md no longer says {phrase!r}"
        assert phrase in _one_line(" ".join(PARAGRAPHS)), f"the grading paragraphs do not say {phrase!r}"


def test_no_notebook_says_stock_nbgrader_is_all_or_nothing_or_quotes_the_students_values(repo_root: Path) -> None:
    for assignment in ASSIGNMENTS:
        text = _one_line(_introduction(_notebook_path(repo_root / "assignments", assignment)))
        assert "earns its points only when all of them pass" not in text, assignment
        assert "(expected and yours)" not in text and "the start of your exception's message" not in text, assignment


def test_write_grading_notes_refuses_a_notebook_without_a_markdown_introduction() -> None:
    notebook = {"cells": [{"cell_type": "code", "source": [WHAT_IS_GRADED]}]}
    with pytest.raises(ValueError, match="first cell must be its markdown introduction, got a code cell"):
        write_grading_notes(notebook)
