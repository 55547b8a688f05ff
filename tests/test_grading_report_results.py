"""What the grading report reads: every spec's graded functions and their references, and clear errors."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from coursekit.grading.report import MissingResults, write_report
from coursekit.grading.report.results import graded_functions
from coursekit.grading.spec import FunctionQuestion, load_spec

pytestmark = [pytest.mark.grading]

SPECS = sorted((REPO_ROOT / "assignments" / "autograde").glob("*.py"))


@pytest.mark.parametrize("assignment", [p.stem for p in SPECS])
def test_every_graded_function_of_every_spec_is_found_with_its_reference_and_stub(assignment: str) -> None:
    spec = load_spec(REPO_ROOT / "assignments" / "autograde" / f"{assignment}.py")
    source = json.loads((REPO_ROOT / "assignments" / "source" / assignment / f"{spec.notebook}.ipynb").read_text())
    cells = ["".join(c["source"]) for c in source["cells"] if c["cell_type"] == "code"]
    functions = graded_functions(spec, cells)
    asked = [q for q in spec.questions if hasattr(q, "function")]
    assert [f.grade_id for f in functions] == [q.grade_id for q in asked]
    for function, question in zip(functions, asked):
        assert function.name == (question.student_function or question.function)
        assert function.stub is not None and function.stub.name == function.name, function.name
        if isinstance(question, FunctionQuestion) and question.reference.__module__.startswith("coursekit."):
            assert isinstance(function.reference, ast.FunctionDef)
            assert function.reference.name == question.reference.__name__


def test_a_course_without_results_of_the_assignment_is_named_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.CourseDirectory.course_id = 'demo'\n")
    with pytest.raises(MissingResults, match=r"'a1_sequence_loss'.*coursekit grade a1_sequence_loss"):
        write_report(tmp_path, "a1_sequence_loss")


def test_a_stored_result_that_is_not_a_report_is_named_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.CourseDirectory.course_id = 'demo'\n")
    (tmp_path / "autograde").mkdir()
    (tmp_path / "autograde" / "a1_sequence_loss.py").write_text(
        (REPO_ROOT / "assignments" / "autograde" / "a1_sequence_loss.py").read_text())
    stored = tmp_path / "grade-reports" / "a1_sequence_loss"
    stored.mkdir(parents=True)
    (stored / "ada.json").write_text('{"student": "ada"}')
    with pytest.raises(ValueError, match=r"ada\.json is not a submission report"):
        write_report(tmp_path, "a1_sequence_loss")
