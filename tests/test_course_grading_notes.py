"""The introduction's grading paragraphs, written once (coursekit.course.grading_notes) into all six notebooks."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from coursekit.course import ASSIGNMENTS
from coursekit.course.derived_tests import derive_course
from coursekit.course.grading_notes import FEEDBACK, PARAGRAPHS, WHAT_IS_GRADED, notes_of, write_grading_notes
from coursekit.grading.hidden_tests import is_autograder_test
# _to_torch: the conversion the grader applies to a case before it calls the reference.
from coursekit.grading.spec import FunctionQuestion, ValueQuestion, _to_torch, load_spec


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
                   "A single number returned as a Python `float` has no dtype: its value is compared, whatever the reference's dtype",
                   # Grader review r11, F9: a value question compares an integer answer by its value (verdicts.compare).
                   "A number that a question asks you to store in a variable is compared by its value alone: a float, "
                   "a whole number such as `2`, or a one-element tensor of any floating or integer dtype all count "
                   "(a bool does not)",
                   # Grader review r11, F5: the feedback shows a few facts of the returned value, never its numbers.
                   "only a few facts (a position, larger or smaller, a number of dimensions, a dtype, a class)"):
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


def _compares_floats(value: object) -> bool:
    """Whether a reference's output holds a floating-point number (what the tolerances apply to)."""
    if isinstance(value, (list, tuple)):
        return any(_compares_floats(item) for item in value)
    if isinstance(value, torch.Tensor):
        return value.is_floating_point()
    if isinstance(value, (np.ndarray, np.generic)):
        return value.dtype.kind == "f"
    return isinstance(value, float)


def _reference_output(question: FunctionQuestion) -> object:
    """The reference's output on the question's first case that returns (drawn from a fixed seed), as the grader calls it."""
    case = next(c for c in question.cases(np.random.default_rng(0)) if not c.raises)
    return question.reference(*_to_torch(case.args), **{k: _to_torch(v) for k, v in case.kwargs.items()})


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_question_compares_numbers_at_least_as_loosely_as_the_paragraphs_promise(
        repo_root: Path, assignment: str) -> None:
    """Grader review r11, F4: a4's losses were compared at rtol=1e-5 while every notebook promised 1e-4."""
    promised = float(re.search(r"a relative tolerance of ([0-9.e-]+)\)", WHAT_IS_GRADED).group(1))
    spec = load_spec(repo_root / "assignments" / "autograde" / f"{assignment}.py")
    for question in spec.questions:
        if isinstance(question, ValueQuestion):
            numbers = any(isinstance(a, float) for accepted in question.answers.values() for a in accepted)
        elif isinstance(question, FunctionQuestion):
            numbers = question.rtol < promised and _compares_floats(_reference_output(question))
        else:
            continue
        assert not numbers or question.rtol >= promised, (
            f"{assignment}'s {question.grade_id} compares numbers at rtol={question.rtol}, but the notebooks and "
            f"book/for_students.md promise a relative tolerance of {promised}")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_introduction_states_the_points_its_cells_carry(repo_root: Path, assignment: str) -> None:
    """Students' page review r68: A4's introduction promised 16 points (14 automatic) while its cells carry 14."""
    path = _notebook_path(repo_root / "assignments", assignment)
    automatic = by_hand = 0
    for cell in json.loads(path.read_text())["cells"]:
        grading = cell["metadata"].get("nbgrader", {})
        if is_autograder_test(cell):
            automatic += grading["points"]
        elif grading.get("grade"):
            by_hand += grading["points"]
    introduction = _introduction(path)
    stated = re.search(r"\*\*Points:\*\* (\d+)", introduction)
    assert stated is not None, f"{assignment}'s introduction states no points"
    assert int(stated.group(1)) == automatic + by_hand, (assignment, stated.group(0), automatic, by_hand)
    if by_hand:
        assert f"({automatic} graded automatically, {by_hand} by hand)" in introduction, (assignment, automatic, by_hand)
    else:
        assert "all graded automatically" in introduction, assignment


def test_a3_states_every_hidden_training_run_and_its_threshold(repo_root: Path) -> None:
    """Students' page review (stop 41): A3's hidden cases also train an LSTM, to a threshold of its own, that the
    notebook never mentioned while its introduction promised 'the threshold the question states'."""
    from coursekit.grading.spec import CheckedQuestion

    spec_path = repo_root / "assignments" / "autograde" / "a3_rnn_loss.py"
    spec = load_spec(spec_path)
    question = next(q for q in spec.questions if q.grade_id == "test_train_tbptt")
    assert isinstance(question, CheckedQuestion)
    cells = json.loads(_notebook_path(repo_root / "assignments", "a3_rnn_loss").read_text())["cells"]
    part = _one_line(next("".join(c["source"]) for c in cells if "".join(c["source"]).startswith("## 5. Train it")))
    runs = [case.args for case in question.cases(np.random.default_rng(0))]
    assert len(runs) == 2 and "each worth half the points" in part, part
    namespace: dict = {}
    exec(compile(spec_path.read_text(), str(spec_path), "exec"), namespace)
    for cell, _seed, chunk_len, steps, lr, threshold in namespace["TRAINING_RUNS"]:
        stated = f"{cell.upper()} (`chunk_len={chunk_len}`, {steps} steps"
        assert stated in part and f"below **{threshold}**" in part, (stated, threshold, part)
        assert lr == 0.01, "the notebook's part 5 states lr only through train_tbptt's default of 0.01"
