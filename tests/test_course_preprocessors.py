"""SeededExecute's three guards, under the real ``nbgrader autograde`` (grader review r6, findings 7 and 8; r7, 5).

One a1 course, four students graded by a single ``nbgrader autograde`` run:
``loud`` gets three answers wrong; ``quiet`` hands in the same answers with one
line that stops IPython from showing any cell's result (a test cell without a
result gets full marks from nbgrader); ``quiet_hook`` does the same with
another line, which replaces IPython's displayhook; ``shadow`` hands in the solved notebook
with one wrong answer, a ``coursekit/`` package whose ``question_points``
gives every question its maximum and an innocent ``random.py`` of helpers
(which, imported in place of the standard library's, breaks ``tempfile``).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from adversarial.course import (NBGRADER, ASSIGNMENT, cell_index, make_course, set_answer, solutions,
                                solved_notebook, submit, tool_env)
from coursekit.course.preprocessors import NO_SCORE
from coursekit.grading.files import shadowing_note
from coursekit.grading.gradebook import load_course

# Every test reads the course that one real `nbgrader autograde` run grades (about 20 s).
pytestmark = pytest.mark.slow

QUIET_LINE = "get_ipython().ast_node_interactivity = 'none'\n"
#: the round-7 spelling: resetting ``ast_node_interactivity`` does not undo it.
QUIET_HOOK_LINE = "type(get_ipython().displayhook).__call__ = lambda self, result=None: None\n"
FULL_MARKS_SCORER = '''def question_points(grade_id, namespace, workdir=None):
    return {"test_token_nll": 3, "test_sequence_loss": 3, "test_perplexity": 1, "test_fox": 2,
            "test_mc_classification": 1}[grade_id]
'''
#: a student's own helpers, innocently named like the standard library's module.
RANDOM_HELPERS = '''"""My helpers for drawing examples."""


def pick(items, index=0):
    return items[index % len(items)]
'''
#: the solved notebook's scores with its one wrong answer (mc_classification).
SHADOW_SCORES = {"test_token_nll": 3.0, "test_sequence_loss": 3.0, "test_perplexity": 1.0, "test_fox": 2.0,
                 "test_mc_classification": 0.0}


@dataclass(frozen=True)
class Autograded:
    """The graded course and what ``nbgrader autograde`` logged."""

    course: Path
    log: str


def _partly_wrong(course: Path, quiet: str = "") -> dict:
    """The solved notebook with a token_nll that ignores ignore_index and two wrong value answers."""
    notebook = solved_notebook(course)
    solution = solutions(course)
    token_nll = solution["answer_token_nll"] + ("\n_right_token_nll = token_nll\n\n\n"
                                                "def token_nll(logits, targets, *, ignore_index=-100):\n"
                                                "    return _right_token_nll(logits, targets)\n")
    set_answer(notebook, "answer_token_nll", quiet + token_nll)
    fox = solution["answer_fox"].replace('halves_bits = sequence_loss(halves_losses, reduction="mean") / math.log(2)',
                                         "halves_bits = 3.0")
    assert fox != solution["answer_fox"], "the fox answer was not changed"
    set_answer(notebook, "answer_fox", fox)
    return set_answer(notebook, "answer_mc_classification", 'mc_classification = "A"\n')


@pytest.fixture(scope="module")
def autograded(tmp_path_factory: pytest.TempPathFactory) -> Autograded:
    course = make_course(tmp_path_factory.mktemp("preprocessors") / "course")
    submit(course, "loud", _partly_wrong(course))
    submit(course, "quiet", _partly_wrong(course, quiet=QUIET_LINE))
    submit(course, "quiet_hook", _partly_wrong(course, quiet=QUIET_HOOK_LINE))
    shadow = submit(course, "shadow", set_answer(solved_notebook(course), "answer_mc_classification",
                                                 'mc_classification = "A"\n')).parent
    (shadow / "coursekit" / "course").mkdir(parents=True)
    (shadow / "coursekit" / "__init__.py").write_text("")
    (shadow / "coursekit" / "course" / "__init__.py").write_text("")
    (shadow / "coursekit" / "course" / "hidden_score.py").write_text(FULL_MARKS_SCORER)
    (shadow / "random.py").write_text(RANDOM_HELPERS)
    done = subprocess.run([*NBGRADER, "autograde", ASSIGNMENT, "--force"], cwd=course,
                          env=tool_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return Autograded(course, done.stdout + done.stderr)


def _scores(course: Path, student: str) -> dict[str, float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course}/gradebook.db", course_id=load_course(course).course_id) as gradebook:
        notebook = gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
        return {grade.name: grade.score for grade in notebook.grades if grade.name.startswith("test_")}


def _test_cell_outputs(course: Path, student: str, grade_id: str) -> list[dict]:
    notebook = json.loads((course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    return notebook["cells"][cell_index(notebook, grade_id)]["outputs"]


def test_a_notebook_that_hides_every_result_scores_as_the_same_answers_do(autograded: Autograded) -> None:
    loud, quiet = _scores(autograded.course, "loud"), _scores(autograded.course, "quiet")
    assert loud["test_mc_classification"] == 0 and loud["test_token_nll"] < 3, loud
    assert quiet == loud
    results = [o for o in _test_cell_outputs(autograded.course, "quiet", "test_mc_classification")
               if o["output_type"] == "execute_result"]
    assert [float("".join(r["data"]["text/plain"])) for r in results] == [0.0], results


def test_a_notebook_that_replaces_the_displayhook_scores_no_more_than_the_same_answers_do(
        autograded: Autograded) -> None:
    """Grader review r7, finding 5: with no result shown, nbgrader gave every test cell full marks (10 of 10)."""
    loud, quiet = _scores(autograded.course, "loud"), _scores(autograded.course, "quiet_hook")
    assert sum(quiet.values()) < sum(loud.values()) < 10, (quiet, loud)
    for grade_id, score in quiet.items():
        outputs = _test_cell_outputs(autograded.course, "quiet_hook", grade_id)
        assert score == 0 and [o["evalue"] for o in outputs if o["output_type"] == "error"] == [NO_SCORE], outputs


def test_files_that_would_shadow_a_module_are_removed_from_the_autograded_copy_and_the_notebook_graded(
        autograded: Autograded) -> None:
    # As coursekit grade grades it (tests/test_grading_agreement.py compares the two): the planted scorer never
    # runs, the innocent helpers cost nothing, and the one wrong answer is the only loss.
    assert _scores(autograded.course, "shadow") == SHADOW_SCORES
    graded = autograded.course / "autograded" / "shadow" / ASSIGNMENT
    assert not (graded / "coursekit").exists() and not (graded / "random.py").exists()
    assert (graded / f"{ASSIGNMENT}.ipynb").is_file()
    submitted = autograded.course / "submitted" / "shadow" / ASSIGNMENT
    assert (submitted / "coursekit" / "course" / "hidden_score.py").read_text() == FULL_MARKS_SCORER
    assert (submitted / "random.py").read_text() == RANDOM_HELPERS
    # The instructor reads, in nbgrader's log, what was removed, from which copy, and why.
    removals = [line for line in autograded.log.splitlines() if "was not copied into the graded folder" in line]
    assert len(removals) == 2, removals
    for line, entry in zip(removals, ("coursekit/", "random.py")):
        assert f"autograded/shadow/{ASSIGNMENT}: {shadowing_note(entry)}" in line, line
