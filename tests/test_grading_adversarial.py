"""The adversarial corpus against `coursekit grade`: exact score and outcome for every attack."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from adversarial.corpus import ATTACKS
from adversarial.course import ASSIGNMENT, make_course, submit
from coursekit.grading.driver import GradeOptions, grade_assignment
from coursekit.grading.sandbox import Limits, sandbox_available
from conftest import in_ci

pytestmark = [pytest.mark.slow, pytest.mark.grading, pytest.mark.a1]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    ok, reason = sandbox_available()
    if not ok:
        if in_ci():
            pytest.fail(f"the sandbox is required in CI: {reason}")
        pytest.skip(f"the sandbox is not available here: {reason}")
    import coursekit.losses.nll as nll

    course = make_course(tmp_path_factory.mktemp("course"))
    protected = [Path(nll.__file__), course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", course / "gradebook.db"]
    before = {p: _digest(p) for p in protected[:2]}
    submitted = {}
    for attack in ATTACKS:
        path = submit(course, attack.student, attack.build(course))
        if attack.timestamp is not None:
            (path.parent / "timestamp.txt").write_bytes(attack.timestamp)
        submitted[attack.student] = (path, _digest(path))
    options = GradeOptions(jobs=2, limits=Limits(timeout_s=3.0, memory_mb=1024, submission_timeout_s=60), progress=False)
    reports = {r.student: r for r in grade_assignment(course, ASSIGNMENT, options)}
    return {"course": course, "reports": reports, "before": before, "submitted": submitted}


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.student for a in ATTACKS])
def test_attack_gets_exact_score_and_outcome(graded: dict, attack) -> None:
    report = graded["reports"][attack.student]
    assert (report.score, report.outcome) == (attack.score, attack.outcome), (attack.what, report)
    assert report.max_score == 10.0
    assert report.sandboxed
    if attack.timestamp is not None:
        assert any("timestamp.txt is not a date" in note for note in report.notes), report.notes


def test_shared_files_and_submissions_are_never_modified(graded: dict) -> None:
    for path, digest in graded["before"].items():
        assert _digest(path) == digest, path
    for path, digest in graded["submitted"].values():
        assert _digest(path) == digest, path


def test_gradebook_holds_the_reported_scores(graded: dict) -> None:
    from nbgrader.api import Gradebook

    from coursekit.grading.gradebook import load_course

    course = load_course(graded["course"])
    with Gradebook(course.db_url, course.course_id) as gradebook:
        for attack in ATTACKS:
            submission = gradebook.find_submission(ASSIGNMENT, attack.student)
            assert submission.score == pytest.approx(attack.score), attack.student
            assert submission.max_score == 12.0  # 10 autograded + 2 for the written answer


def test_autograded_notebooks_never_show_hidden_tests(graded: dict) -> None:
    autograded = graded["course"] / "autograded"
    for attack in ATTACKS:
        text = (autograded / attack.student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
        notebook = json.loads(text)
        assert "HIDDEN TESTS" not in text and "_compare(" not in text and "not the per-sample metric" not in text
        verdicts = [
            "".join(o.get("text", "")) for cell in notebook["cells"] for o in cell.get("outputs", [])
            if "coursekit grade:" in "".join(o.get("text", ""))
        ]
        assert len(verdicts) == 5, attack.student


def test_reports_are_written_for_every_student(graded: dict) -> None:
    reports = graded["course"] / "grade-reports" / ASSIGNMENT
    for attack in ATTACKS:
        data = json.loads((reports / f"{attack.student}.json").read_text())
        assert data["score"] == attack.score and data["outcome"] == attack.outcome
        assert {q["grade_id"] for q in data["questions"]} == {
            "test_token_nll", "test_sequence_loss", "test_perplexity", "test_fox", "test_mc_classification"}
