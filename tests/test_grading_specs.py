"""Every assignment with a grading spec: its own solution earns full marks, the untouched student version 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from adversarial.course import REPO, make_course, release_notebook, set_answer, solved_notebook, submit
from coursekit.grading.driver import GradeOptions, grade_assignment
from coursekit.grading.limits import Limits
from coursekit.grading.spec import load_spec
from conftest import require_sandbox

pytestmark = [pytest.mark.slow, pytest.mark.grading]

SPECS = sorted(p.stem for p in (REPO / "assignments" / "autograde").glob("*.py"))
# a1 is graded end to end by the adversarial corpus; the others are checked here.
OTHERS = [name for name in SPECS if name != "a1_sequence_loss"]
# The answer broken in "one_wrong": the first question's function, unless later
# answers call it (a3's gaps use stream_nll); then one that nothing else uses.
BROKEN = {"a3_rnn_loss": "train_tbptt"}


def test_every_spec_matches_a_source_notebook() -> None:
    for name in SPECS:
        spec = load_spec(REPO / "assignments" / "autograde" / f"{name}.py")
        assert spec.assignment == name
        assert (REPO / "assignments" / "source" / name / f"{spec.notebook}.ipynb").is_file()


@pytest.mark.parametrize("assignment", OTHERS)
def test_solution_gets_full_marks_and_blank_gets_zero(tmp_path: Path, assignment: str) -> None:
    require_sandbox()
    course = make_course(tmp_path / "course", assignment=assignment)
    spec = load_spec(course / "autograde" / f"{assignment}.py")
    first = spec.questions[0]
    target = BROKEN.get(assignment, first.student_function or first.function)
    broken = next(q for q in spec.questions if q.grade_id == f"test_{target}")
    submit(course, "solution", solved_notebook(course, assignment), assignment=assignment)
    submit(course, "blank", release_notebook(course, assignment), assignment=assignment)
    wrong = set_answer(solved_notebook(course, assignment), f"answer_{target}",
                       f"def {target}(*args, **kwargs):\n    return 0\n")
    submit(course, "one_wrong", wrong, assignment=assignment)
    reports = {r.student: r for r in grade_assignment(
        course, assignment, GradeOptions(jobs=2, limits=Limits(timeout_s=20), progress=False))}
    total = sum(float(q.points) for q in spec.questions)
    assert (reports["solution"].score, reports["solution"].outcome) == (total, "graded"), reports["solution"]
    assert (reports["blank"].score, reports["blank"].outcome) == (0.0, "graded")
    assert reports["one_wrong"].score == total - float(broken.points)
