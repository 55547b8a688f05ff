"""SeededExecute's two guards, under the real ``nbgrader autograde`` (grader review r6, findings 7 and 8).

One a1 course, three students graded by a single ``nbgrader autograde`` run:
``loud`` gets three answers wrong; ``quiet`` hands in the same answers with one
line that stops IPython from showing any cell's result (a test cell without a
result gets full marks from nbgrader); ``shadow`` hands in the solved notebook
with one wrong answer and a ``coursekit/`` package whose ``question_points``
gives every question its maximum.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from adversarial.course import (ASSIGNMENT, VENV_BIN, cell_index, make_course, set_answer, solutions,
                                solved_notebook, submit, tool_env)
from coursekit.course.preprocessors import refusal_message
from coursekit.grading.gradebook import load_course

QUIET_LINE = "get_ipython().ast_node_interactivity = 'none'\n"
FULL_MARKS_SCORER = '''def question_points(grade_id, namespace, workdir=None):
    return {"test_token_nll": 3, "test_sequence_loss": 3, "test_perplexity": 1, "test_fox": 2,
            "test_mc_classification": 1}[grade_id]
'''


def _partly_wrong(course: Path, quiet: bool) -> dict:
    """The solved notebook with a token_nll that ignores ignore_index and two wrong value answers."""
    notebook = solved_notebook(course)
    solution = solutions(course)
    token_nll = solution["answer_token_nll"] + ("\n_right_token_nll = token_nll\n\n\n"
                                                "def token_nll(logits, targets, *, ignore_index=-100):\n"
                                                "    return _right_token_nll(logits, targets)\n")
    set_answer(notebook, "answer_token_nll", (QUIET_LINE if quiet else "") + token_nll)
    fox = solution["answer_fox"].replace('halves_bits = sequence_loss(halves_losses, reduction="mean") / math.log(2)',
                                         "halves_bits = 3.0")
    assert fox != solution["answer_fox"], "the fox answer was not changed"
    set_answer(notebook, "answer_fox", fox)
    return set_answer(notebook, "answer_mc_classification", 'mc_classification = "A"\n')


@pytest.fixture(scope="module")
def autograded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    course = make_course(tmp_path_factory.mktemp("preprocessors") / "course")
    submit(course, "loud", _partly_wrong(course, quiet=False))
    submit(course, "quiet", _partly_wrong(course, quiet=True))
    shadow = submit(course, "shadow", set_answer(solved_notebook(course), "answer_mc_classification",
                                                 'mc_classification = "A"\n')).parent
    (shadow / "coursekit" / "course").mkdir(parents=True)
    (shadow / "coursekit" / "__init__.py").write_text("")
    (shadow / "coursekit" / "course" / "__init__.py").write_text("")
    (shadow / "coursekit" / "course" / "hidden_score.py").write_text(FULL_MARKS_SCORER)
    done = subprocess.run([str(VENV_BIN / "nbgrader"), "autograde", ASSIGNMENT, "--force"], cwd=course,
                          env=tool_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return course


def _scores(course: Path, student: str) -> dict[str, float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course}/gradebook.db", course_id=load_course(course).course_id) as gradebook:
        notebook = gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
        return {grade.name: grade.score for grade in notebook.grades if grade.name.startswith("test_")}


def _test_cell_outputs(course: Path, student: str, grade_id: str) -> list[dict]:
    notebook = json.loads((course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    return notebook["cells"][cell_index(notebook, grade_id)]["outputs"]


def test_a_notebook_that_hides_every_result_scores_as_the_same_answers_do(autograded: Path) -> None:
    loud, quiet = _scores(autograded, "loud"), _scores(autograded, "quiet")
    assert loud["test_mc_classification"] == 0 and loud["test_token_nll"] < 3, loud
    assert quiet == loud
    results = [o for o in _test_cell_outputs(autograded, "quiet", "test_mc_classification")
               if o["output_type"] == "execute_result"]
    assert [float("".join(r["data"]["text/plain"])) for r in results] == [0.0], results


def test_a_notebook_handed_in_with_a_coursekit_package_is_not_run_and_scores_zero_with_its_reason(
        autograded: Path) -> None:
    scores = _scores(autograded, "shadow")
    assert scores and set(scores.values()) == {0.0}, scores
    for grade_id in scores:
        outputs = _test_cell_outputs(autograded, "shadow", grade_id)
        assert [(o["output_type"], o["evalue"]) for o in outputs] == [("error", refusal_message(["coursekit/"]))]
    assert (autograded / "submitted" / "shadow" / ASSIGNMENT / "coursekit" / "__init__.py").is_file(), "kept"
