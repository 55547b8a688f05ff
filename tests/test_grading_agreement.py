"""Stock ``nbgrader autograde`` and ``coursekit grade`` give every test cell the same score on honest answers.

Each question is defined once, by its spec; the source notebooks' hidden blocks
are derived from it (:mod:`coursekit.course.derived_tests`). For each
assignment one course is generated and graded by both tools (real nbgrader,
real kernels, the real sandbox), on copies of the same submissions: the
solution, the untouched student version and, for every graded function, a
version wrong in value (its output scaled by 1.01) and, where gradients are
graded, one wrong only in gradient (same value, gradient doubled), each made by
appending a redefinition to the solution's answer cell; for each value
question, a first and a last variable answered wrong (in a1 the first fails a
visible check). Every test cell's score, partial credit included, must agree.

Both graders score a question on the names as they stood at its test cell
(grader review r5, finding 3), leave out of the graded copy a handed-in file
that would be imported in place of a module (:mod:`coursekit.grading.files`,
naming it to the instructor; it stays in ``submitted/``), and grade a notebook
whose answer cells run under a cell magic (grader review r7, finding 1). Three
more submissions each combine such cases, so that every combination is graded
by both tools without a submission per case:

* ``moved_helped_redef``: the solution, whose first answer cell changes the
  working directory (grader review r5, finding 6), handed in with an innocent
  ``random.py`` of the student's helpers, and with a cell appended after the
  last one that redefines every graded function wrong in value and answers
  every variable wrong: full marks;
* ``fixed_later_planted``: every graded function wrong in value through a
  helper it looks up by name when called, the helper made harmless in a cell
  appended after the last test cell, handed in with a ``coursekit/`` package
  whose ``question_points`` gives every question its points: the wrong
  answers' scores;
* ``magics``: the solution with ``%%time`` (which prints the cell's times) or
  ``%%capture`` (which hides its output), by turns, on the first line of every
  answer cell: full marks.

Since grader review r7, finding 6, ``coursekit grade`` does not run an
appended cell at all (it is below the last graded cell), so for it the first
two pin that cells below the last question change nothing; the snapshots
themselves are pinned by ``tests/test_grading_snapshot.py`` and by the
corpus's calls-phase attacks, whose flag cell sits above the last test cell.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from coursekit.course import ASSIGNMENTS
from coursekit.course.config import EXECUTION_TIMEOUT_S
from coursekit.course.derived_tests import derived_block, graded_test_cells
from coursekit.grading.driver import reports_directory
from coursekit.grading.files import shadowing_note, top_level_entries
from coursekit.grading.limits import Limits
from coursekit.grading.spec import AssignmentSpec, FunctionQuestion, ValueQuestion, load_spec
from adversarial.course import NBGRADER, VENV_BIN, make_course, solved_notebook, submit, tool_env
from conftest import require_sandbox

pytestmark = pytest.mark.slow

#: appended to an answer cell: the solution's function, wrapped so that its output is wrong in value or gradient.
WRAPPER = '''
import torch as _agreement_torch


def _agreement_wrong(out, part):
    if isinstance(out, _agreement_torch.Tensor) and out.is_floating_point():
        return out.detach() + 2 * (out - out.detach()) if part == "gradient" else out * 1.01
    if part == "gradient" or isinstance(out, bool):
        return out
    if isinstance(out, _agreement_torch.Tensor):
        # A mask or ids: the first element flipped (or off by one).
        wrong = out.clone()
        first = wrong.reshape(-1)[:1]
        first.copy_(~first if wrong.dtype == _agreement_torch.bool else first + 1)
        return wrong
    if isinstance(out, int):
        return out + 1
    if isinstance(out, float):
        return out * 1.01
    if isinstance(out, (list, tuple)) and out:
        return type(out)([_agreement_wrong(out[0], part), *out[1:]])
    if isinstance(out, _agreement_torch.nn.Module):
        with _agreement_torch.no_grad():
            for _parameter in out.parameters():
                _parameter.mul_(1.01)
    return out


_agreement_original_{name} = {name}


def {name}(*args, **kwargs):
    return _agreement_wrong(_agreement_original_{name}(*args, **kwargs), {part!r})
'''


#: a student's own helpers, innocently named like the standard library's module.
RANDOM_HELPERS = '''"""My helpers for drawing examples."""


def pick(items, index=0):
    return items[index % len(items)]
'''


def handed_in_files(spec: AssignmentSpec) -> dict[str, dict[str, str]]:
    """Per student, the files handed in beside the notebook (see the module docstring), by relative path."""
    points = {q.grade_id: float(q.points) for q in spec.questions}
    scorer = f"def question_points(grade_id, namespace, workdir=None):\n    return {points!r}[grade_id]\n"
    return {
        "moved_helped_redef": {"random.py": RANDOM_HELPERS},
        "fixed_later_planted": {"coursekit/__init__.py": "", "coursekit/course/__init__.py": "",
                                "coursekit/course/hidden_score.py": scorer},
    }


def _source(cell: dict[str, Any]) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _answer_cell(notebook: dict[str, Any], pattern: str) -> dict[str, Any]:
    for cell in notebook["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code" and re.search(pattern, _source(cell), re.MULTILINE):
            return cell
    raise KeyError(pattern)


def _appended(notebook: dict[str, Any], pattern: str, code: str) -> dict[str, Any]:
    notebook = json.loads(json.dumps(notebook))
    cell = _answer_cell(notebook, pattern)
    cell["source"] = _source(cell).rstrip("\n") + "\n" + code
    return notebook


def _graded_function(question: FunctionQuestion) -> str:
    return question.student_function or question.function


def _grades_gradients(question: object) -> bool:
    return isinstance(question, FunctionQuestion) and bool(question.grad_wrt)


def _with_last_cell(notebook: dict[str, Any], code: str) -> dict[str, Any]:
    """``notebook`` with a plain code cell ``code`` after its last cell (after every test cell)."""
    notebook = json.loads(json.dumps(notebook))
    notebook["cells"].append({"cell_type": "code", "id": "after-the-tests", "metadata": {}, "outputs": [],
                              "execution_count": None, "source": code})
    return notebook


def _wrong_answer(accepted: tuple[Any, ...]) -> str:
    first = accepted[0]
    if isinstance(first, str):
        return repr("A" if first.strip().upper() != "A" else "B")
    return repr(float(first) + 1.0)


def variants(course: Path, spec: AssignmentSpec) -> dict[str, dict[str, Any]]:
    """Every submission of the agreement course, by student id."""
    assignment = spec.assignment
    solution = solved_notebook(course, assignment)
    release = json.loads((course / "release" / assignment / f"{assignment}.ipynb").read_text())
    students = {"solution": solution, "untouched": release}
    functions = sorted({_graded_function(q) for q in spec.questions if not isinstance(q, ValueQuestion)})
    for name in functions:
        pattern = rf"^def {re.escape(name)}\("
        students[f"value_{name}"] = _appended(solution, pattern, WRAPPER.format(name=name, part="value"))
        if any(_grades_gradients(q) and _graded_function(q) == name for q in spec.questions):
            students[f"gradient_{name}"] = _appended(solution, pattern, WRAPPER.format(name=name, part="gradient"))
    for question in spec.questions:
        if isinstance(question, ValueQuestion):
            names = list(question.answers)
            for which, name in (("first", names[0]), ("last", names[-1])):
                code = f"{name} = {_wrong_answer(question.answers[name])}\n"
                students[f"{question.grade_id}_{which}"] = _appended(solution, rf"^{re.escape(name)}\s*=", code)
    students.update(after_the_test_cells(solution, spec, functions))
    students["magics"] = _under_cell_magics(solution, ("time", "capture"))
    return students


def _under_cell_magics(notebook: dict[str, Any], magics: tuple[str, ...]) -> dict[str, Any]:
    """``notebook`` with ``%%magic`` as the first line of every answer code cell, the magics taken by turns."""
    notebook = json.loads(json.dumps(notebook))
    answers = [c for c in notebook["cells"] if c["cell_type"] == "code" and c["metadata"].get("nbgrader", {}).get("solution")]
    for index, cell in enumerate(answers):
        cell["source"] = f"%%{magics[index % len(magics)]}\n" + _source(cell)
    return notebook


def after_the_test_cells(solution: dict[str, Any], spec: AssignmentSpec, functions: list[str]) -> dict[str, Any]:
    """The submissions that change names, or the working directory, after a test cell (see the module docstring)."""
    answers = {name: accepted for q in spec.questions if isinstance(q, ValueQuestion)
               for name, accepted in q.answers.items()}
    redefined = "".join(WRAPPER.format(name=name, part="value") for name in functions)
    rebound = "".join(f"{name} = {_wrong_answer(accepted)}\n" for name, accepted in answers.items())
    wrong_at_the_tests = solution
    for name in functions:
        wrong_at_the_tests = _appended(wrong_at_the_tests, rf"^def {re.escape(name)}\(",
                                       WRAPPER.format(name=name, part="value"))
    first_answer = next(_source(cell) for cell in solution["cells"]
                        if cell["cell_type"] == "code" and cell["metadata"].get("nbgrader", {}).get("solution"))
    moved = json.loads(json.dumps(solution))
    cell = next(c for c in moved["cells"] if _source(c) == first_answer)
    cell["source"] = first_answer.rstrip("\n") + "\nimport os, tempfile\nos.chdir(tempfile.mkdtemp())\n"
    return {
        "moved_helped_redef": _with_last_cell(moved, redefined + rebound),
        "fixed_later_planted": _with_last_cell(wrong_at_the_tests, "def _agreement_wrong(out, part):\n    return out\n"),
    }


def _scores(course: Path, spec: AssignmentSpec, students: list[str]) -> dict[tuple[str, str], float | None]:
    from nbgrader.api import Gradebook

    found = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for student in students:
            notebook = gradebook.find_submission_notebook(spec.notebook, spec.assignment, student)
            grades = {grade.name: grade.auto_score for grade in notebook.grades}
            for question in spec.questions:
                found[(student, question.grade_id)] = grades[question.grade_id]
    return found


def test_source_notebooks_hidden_regions_are_exactly_the_derived_blocks(repo_root: Path) -> None:
    for assignment in ASSIGNMENTS:
        spec = load_spec(repo_root / "assignments" / "autograde" / f"{assignment}.py")
        notebook = json.loads((repo_root / "assignments" / "source" / assignment / f"{spec.notebook}.ipynb").read_text())
        cells = graded_test_cells(notebook)
        assert sorted(c["metadata"]["nbgrader"]["grade_id"] for c in cells) == sorted(q.grade_id for q in spec.questions)
        for cell in cells:
            grade_id = cell["metadata"]["nbgrader"]["grade_id"]
            source = _source(cell)
            start = source.index("### BEGIN HIDDEN TESTS")
            assert source[start:] == derived_block(grade_id), (
                f"{assignment}/{grade_id}: the hidden region is not the derived one; run "
                "`python -m coursekit.course derive-hidden-tests`")


def test_the_instructors_page_names_the_time_limits_in_which_the_two_graders_differ(repo_root: Path) -> None:
    """Grader review r5, finding 3: a slow but correct answer can pass one grader's limit and not the other's."""
    page = " ".join((repo_root / "book" / "for_instructors.md").read_text().split())
    assert f"for {EXECUTION_TIMEOUT_S} s of wall-clock time (`EXECUTION_TIMEOUT_S`" in page
    assert f"`--timeout` seconds of CPU ({Limits().timeout_s:g} by default" in page


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_nbgrader_and_coursekit_grade_score_every_test_cell_alike(tmp_path: Path, assignment: str) -> None:
    require_sandbox()
    ours = make_course(tmp_path / "ours", assignment=assignment)
    spec = load_spec(ours / "autograde" / f"{assignment}.py")
    students = variants(ours, spec)
    files = handed_in_files(spec)
    for student, notebook in students.items():
        folder = submit(ours, student, notebook, assignment=assignment).parent
        for relative, text in files.get(student, {}).items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(text)
    stock = tmp_path / "stock"
    shutil.copytree(ours, stock)
    started = time.monotonic()
    # The two graders run side by side: each on its own copy of the course and gradebook.
    graders = [
        subprocess.Popen([str(VENV_BIN / "coursekit"), "grade", assignment, "--jobs", "2", "--no-progress"],
                         cwd=ours, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        subprocess.Popen([*NBGRADER, "autograde", assignment], cwd=stock, env=tool_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
    ]
    outputs = [grader.communicate(timeout=3000)[0] for grader in graders]
    for grader, output in zip(graders, outputs):
        assert grader.returncode == 0, output[-4000:]
    print(f"{assignment}: {len(students)} submissions graded by both in {time.monotonic() - started:.0f} s")
    ours_scores, stock_scores = _scores(ours, spec, list(students)), _scores(stock, spec, list(students))
    differ = {key: (ours_scores[key], stock_scores[key]) for key in ours_scores
              if ours_scores[key] is None or stock_scores[key] is None
              or abs(ours_scores[key] - stock_scores[key]) > 1e-9}
    assert not differ, f"(student, question): (coursekit grade, nbgrader autograde) differ: {differ}"
    for (student, grade_id), score in sorted(ours_scores.items()):
        print(f"  {student:40} {grade_id:28} {score:g}")
    full = sum(float(q.points) for q in spec.questions)
    assert sum(ours_scores[("solution", q.grade_id)] for q in spec.questions) == full
    assert sum(ours_scores[("untouched", q.grade_id)] for q in spec.questions) == 0.0
    # Files that would shadow a module: left out by both graders, named to the instructor, kept in submitted/.
    assert sum(ours_scores[("moved_helped_redef", q.grade_id)] for q in spec.questions) == full
    assert sum(ours_scores[("fixed_later_planted", q.grade_id)] for q in spec.questions) < full
    for student, handed_in in files.items():
        entries = top_level_entries(list(handed_in))
        notes = json.loads((reports_directory(ours, assignment) / f"{student}.json").read_text())["notes"]
        for entry in entries:
            assert shadowing_note(entry) in notes, notes
            assert f"autograded/{student}/{assignment}: {shadowing_note(entry)}" in outputs[1], outputs[1][-4000:]
        for course in (ours, stock):
            assert not any((course / "autograded" / student / assignment / e.rstrip("/")).exists() for e in entries)
            submitted = course / "submitted" / student / assignment
            assert {r: (submitted / r).read_text() for r in handed_in} == handed_in
    for question in spec.questions:
        # Each question scored as its test cell left it: what a later cell does changes nothing.
        grade_id = question.grade_id
        assert ours_scores[("moved_helped_redef", grade_id)] == float(question.points), grade_id
        assert ours_scores[("magics", grade_id)] == float(question.points), grade_id
        if not isinstance(question, ValueQuestion):
            if ours_scores[(f"value_{_graded_function(question)}", grade_id)] < float(question.points):
                assert ours_scores[("fixed_later_planted", grade_id)] < float(question.points), grade_id
