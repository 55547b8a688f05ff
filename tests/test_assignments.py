"""The nbgrader course in assignments/, exercised with the real nbgrader commands.

One temporary copy of the course is built per test session (``graded_course``):
the student versions of all six assignments are generated; for every assignment
the instructor's own notebook, the untouched student version, a version with one
wrong function and a version written differently (loops instead of vectorised
code) are submitted, some of them through an LMS download that ``zip_collect``
gathers, two students go through the exchange (fetch, submit, collect); then a
single ``nbgrader autograde`` call grades everything, feedback is generated and
released, and grades are exported. The tests read what each step produced.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from adversarial.course import NBGRADER

from coursekit.course import ASSIGNMENTS, COURSE_ID, strip_hidden_tests
from coursekit.course.config import (COURSE_ID_ENV, DB_URL_ENV, EXCHANGE_ENV, LMS_FILENAME_REGEXP, NEUTRALISE_LINKS,
                                     SANITIZE_HTML, configure, default_db_url)
from coursekit.course.preprocessors import RedactHiddenTests, StderrIsNotFailure
from tests.assignment_fixtures import (
    ALTERNATIVES,
    NOISY_TOKEN_NLL,
    SOLUTION_REGION,
    WRONG,
    cell_text,
    filled_in,
    grade_id,
    read_notebook,
    solution_lines,
    solutions_of,
    write_notebook,
)

REPO = Path(__file__).resolve().parents[1]
COURSE_SOURCE = REPO / "assignments"
VENV_BIN = Path(sys.executable).parent

# Students of the shared course and what each one submits.
SOLUTION, BLANK, WRONG_ONE, DIFFERENT = "solution", "untouched", "onewrong", "different"
# The first assignment also goes through the exchange: ada fills in every answer (her token_nll writes
# warnings to stderr), alan hands in the untouched notebook.
ADA, ALAN = "ada", "alan"
EXCHANGE_STUDENTS = (ADA, ALAN)
# The differently written answers of these assignments arrive as an LMS download (zip_collect).
LMS_ASSIGNMENTS = ("a2_masking_reductions", "a6_large_vocab")
LMS_FILE_NAMES = {"a2_masking_reductions": "{student}_48213_904811_{notebook}", "a6_large_vocab": "{student}_{notebook}"}


def untouched_student(assignment: str) -> str:
    return ALAN if assignment == ASSIGNMENTS[0] else BLANK


@dataclass
class GradedCourse:
    root: Path
    exchange: Path
    homes: dict[str, Path]
    env: dict[str, str]
    log: list[str] = field(default_factory=list)
    released_feedback: subprocess.CompletedProcess[str] | None = None

    def student_env(self, student: str) -> dict[str, str]:
        """A student's own environment: their home, nothing of the instructor's settings."""
        env = {k: v for k, v in self.env.items() if not k.startswith("COURSEKIT_")}
        return {**env, "HOME": str(self.homes[student])}

    @property
    def db_url(self) -> str:
        return self.env[DB_URL_ENV]

    def nbgrader(self, *args: str, cwd: Path | None = None, check: bool = True,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*NBGRADER, *args], cwd=cwd or self.root, env=env or self.env,
            capture_output=True, text=True, timeout=900, check=False,
        )
        self.log.append(f"$ nbgrader {' '.join(args)} -> {result.returncode}")
        if check and result.returncode != 0:
            raise AssertionError(f"nbgrader {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
        return result

    def grades(self, assignment: str, student: str) -> dict[str, tuple[float | None, float]]:
        from nbgrader.api import Gradebook

        with Gradebook(self.db_url) as gb:
            notebook = gb.find_submission_notebook(assignment, assignment, student)
            return {g.name: (g.auto_score, g.max_score) for g in notebook.grades}

    def source(self, assignment: str) -> dict:
        return read_notebook(self.root / "source" / assignment / f"{assignment}.ipynb")

    def release(self, assignment: str) -> dict:
        return read_notebook(self.root / "release" / assignment / f"{assignment}.ipynb")


def _submit_directly(course: GradedCourse, student: str, assignment: str, notebook: dict) -> None:
    """Put a submission where `nbgrader collect` would, with its timestamp."""
    folder = course.root / "submitted" / student / assignment
    write_notebook(notebook, folder / f"{assignment}.ipynb")
    (folder / "timestamp.txt").write_text("2026-01-15 12:00:00.000000 UTC", encoding="utf-8")


@pytest.fixture(scope="session")
def graded_course() -> Iterator[GradedCourse]:
    # A private temporary directory rather than pytest's tmp_path_factory: pytest prunes old
    # base directories, and other pytest sessions on the machine could remove ours mid-run.
    with tempfile.TemporaryDirectory(prefix="coursekit-assignments-") as tmp:
        yield _build_graded_course(Path(tmp))


def _build_graded_course(base: Path) -> GradedCourse:
    root = base / "seqloss"
    root.mkdir()
    shutil.copy2(COURSE_SOURCE / "nbgrader_config.py", root / "nbgrader_config.py")
    shutil.copy2(COURSE_SOURCE / "roster.csv", root / "roster.csv")
    # The specs too: the source notebooks' hidden blocks score each question from its spec in autograde/.
    for folder in ("source", "autograde"):
        shutil.copytree(COURSE_SOURCE / folder, root / folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    exchange = base / "exchange"
    exchange.mkdir()
    env = dict(os.environ)
    env["PATH"] = str(VENV_BIN) + os.pathsep + env.get("PATH", "")
    env[DB_URL_ENV] = f"sqlite:///{root / 'gradebook.db'}"
    env[EXCHANGE_ENV] = str(exchange)
    homes = {name: base / "students" / name for name in EXCHANGE_STUDENTS}
    course = GradedCourse(root=root, exchange=exchange, homes=homes, env=env)

    # Instructor: roster, then the student versions of every assignment in one command.
    course.nbgrader("db", "student", "import", "roster.csv")
    course.nbgrader("generate_assignment", "*")

    # Submissions placed in submitted/ as nbgrader's collect would leave them.
    for assignment in ASSIGNMENTS:
        source, release = course.source(assignment), course.release(assignment)
        answers = solutions_of(source)
        _submit_directly(course, SOLUTION, assignment, source)
        if untouched_student(assignment) == BLANK:
            _submit_directly(course, BLANK, assignment, release)
        wrong_cell, wrong_code, _ = WRONG[assignment]
        _submit_directly(course, WRONG_ONE, assignment, filled_in(release, {**answers, wrong_cell: wrong_code}))
        different = filled_in(release, {**answers, **ALTERNATIVES[assignment]})
        if assignment not in LMS_ASSIGNMENTS:
            _submit_directly(course, DIFFERENT, assignment, different)
            continue
        # An LMS download: one zip of files named after the student, gathered by zip_collect.
        archive_dir = root / "downloaded" / assignment / "archive"
        archive_dir.mkdir(parents=True)
        name = LMS_FILE_NAMES[assignment].format(student=DIFFERENT, notebook=f"{assignment}.ipynb")
        with zipfile.ZipFile(archive_dir / "submissions.zip", "w") as archive:
            archive.writestr(name, json.dumps(different, indent=1))
        course.nbgrader("zip_collect", assignment)

    # Two students through the exchange, for the first assignment. Each has their own home (so their
    # own nbgrader cache) and the students' configuration the instructor wrote for them.
    first = ASSIGNMENTS[0]
    course.nbgrader("release_assignment", first)
    for student, home in homes.items():
        (home / ".jupyter").mkdir(parents=True)
        written = subprocess.run(
            [sys.executable, "-m", "coursekit.course", "student-config", "--out", str(home / ".jupyter" / "nbgrader_config.py")],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )
        assert written.returncode == 0, written.stderr
        course.nbgrader("fetch_assignment", first, cwd=home, env=course.student_env(student))
        fetched = home / first / f"{first}.ipynb"
        if student == ADA:
            answers = {**solutions_of(course.source(first)), "answer_token_nll": NOISY_TOKEN_NLL}
            write_notebook(filled_in(read_notebook(fetched), answers), fetched)
        course.nbgrader("submit", first, f"--student={student}", cwd=home, env=course.student_env(student))
    course.nbgrader("collect", first)

    # One autograde run for every submission of every assignment.
    course.nbgrader("autograde", "*")
    # Feedback: every student of the first assignment (released through the exchange), and the
    # submission with a wrong function, whose failing hidden tests are the risky case, for the others.
    course.nbgrader("generate_feedback", first)
    course.nbgrader("generate_feedback", "*", f"--student={WRONG_ONE}")
    # The first assignment has students of both routes: the exchange's get their feedback through it,
    # the others are listed.
    course.released_feedback = course.nbgrader("release_feedback", first)
    for student, home in homes.items():
        course.nbgrader("fetch_feedback", first, f"--student={student}", cwd=home, env=course.student_env(student))
    return course


def _points(grades: dict[str, tuple[float | None, float]]) -> tuple[float, float]:
    auto = {name: g for name, g in grades.items() if not name.startswith("written_")}
    return sum(score or 0.0 for score, _ in auto.values()), sum(maximum for _, maximum in auto.values())


# --- fast checks of the course's own nbgrader machinery ------------------------------------


def test_redact_hidden_tests_cleans_source_and_tracebacks_of_test_cells() -> None:
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    cell = new_code_cell("assert f(1) == 1\n### BEGIN HIDDEN TESTS\nassert f(2) == secret_value\n### END HIDDEN TESTS")
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "points": 2, "grade_id": "test_f"}
    cell.outputs = [new_output("error", ename="AssertionError", evalue="f(2) is wrong",
                               traceback=["----> 3 assert f(2) == secret_value", "AssertionError: f(2) is wrong"])]
    answer = new_code_cell("secret = '### not a marker'")
    notebook = new_notebook(cells=[cell, answer])
    processed, _ = RedactHiddenTests().preprocess(notebook, {})
    text = json.dumps(processed)
    assert "secret_value" not in text
    assert "assert f(1) == 1" in processed.cells[0].source
    assert processed.cells[0].outputs[0]["traceback"] == ["AssertionError: f(2) is wrong"]
    assert processed.cells[1].source == "secret = '### not a marker'"


def test_stderr_of_a_test_cell_no_longer_zeroes_its_grade() -> None:
    from nbformat.v4 import new_code_cell, new_notebook, new_output
    from nbgrader.utils import determine_grade

    cell = new_code_cell("check()")
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "points": 3, "grade_id": "test_check", "locked": True}
    cell.outputs = [new_output("stream", name="stderr", text="UserWarning: slow path\n")]
    assert determine_grade(cell) == (0, 3.0), "stock nbgrader zeroes a cell with stderr: the fix is needed"
    processed, _ = StderrIsNotFailure().preprocess(new_notebook(cells=[cell]), {})
    assert determine_grade(processed.cells[0]) == (3.0, 3.0)
    assert "slow path" in processed.cells[0].outputs[0]["text"]

    failing = new_code_cell("check()")
    failing.metadata["nbgrader"] = dict(cell.metadata["nbgrader"])
    failing.outputs = [new_output("stream", name="stderr", text="warning\n"),
                       new_output("error", ename="AssertionError", evalue="", traceback=[])]
    processed, _ = StderrIsNotFailure().preprocess(new_notebook(cells=[failing]), {})
    assert determine_grade(processed.cells[0]) == (0, 3.0)


def test_db_url_defaults_to_sqlite_in_the_course_and_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DB_URL_ENV, raising=False)
    assert default_db_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'gradebook.db'}"
    monkeypatch.setenv(DB_URL_ENV, "postgresql://grader@db.example.org/seqloss")
    assert default_db_url(tmp_path) == "postgresql+psycopg2://grader@db.example.org/seqloss"


def test_configure_sets_course_exchange_and_pipelines(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from traitlets.config import Config

    monkeypatch.setenv(EXCHANGE_ENV, str(tmp_path / "exchange"))
    c = Config()
    configure(c, tmp_path)
    assert c.CourseDirectory.course_id == COURSE_ID
    assert c.CourseDirectory.root == str(tmp_path.resolve())
    assert c.Exchange.root == str(tmp_path / "exchange")
    assert "coursekit.course.preprocessors.RedactHiddenTests" in c.GenerateFeedback.preprocessors
    pipeline = c.Autograde.autograde_preprocessors
    assert pipeline.index("coursekit.course.preprocessors.StderrIsNotFailure") == pipeline.index("coursekit.course.preprocessors.SeededExecute") + 1
    for steps in (pipeline, c.GenerateFeedback.preprocessors):
        # The links are judged on the sanitiser's output: the last word on a markdown cell is theirs.
        assert steps.index(NEUTRALISE_LINKS) == steps.index(SANITIZE_HTML) + 1
    with pytest.raises(ValueError, match="course_root"):
        configure(Config(), tmp_path / "missing")


@pytest.mark.slow
def test_students_config_names_the_instructors_course_and_exchange(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    env = {**os.environ, EXCHANGE_ENV: str(tmp_path / "exchange"), COURSE_ID_ENV: "seqloss-2027"}
    out = tmp_path / "home" / ".jupyter" / "nbgrader_config.py"
    written = subprocess.run([sys.executable, "-m", "coursekit.course", "student-config", "--out", str(out)],
                             env=env, capture_output=True, text=True, timeout=120, check=False)
    assert written.returncode == 0 and written.stdout.strip() == str(out), written.stderr
    students = PyFileConfigLoader(out.name, path=str(out.parent)).load_config()
    instructor = Config()
    monkeypatch.setenv(EXCHANGE_ENV, env[EXCHANGE_ENV])
    monkeypatch.setenv(COURSE_ID_ENV, env[COURSE_ID_ENV])
    configure(instructor, tmp_path)
    assert students.CourseDirectory.course_id == instructor.CourseDirectory.course_id == "seqloss-2027"
    assert students.Exchange.root == instructor.Exchange.root == str(tmp_path / "exchange")


@pytest.mark.parametrize(
    ("path", "student", "file_id"),
    [
        ("/x/extracted/ada_48213_904811_a1_sequence_loss.ipynb", "ada", "a1_sequence_loss.ipynb"),
        ("/x/extracted/alan_a6_large_vocab.ipynb", "alan", "a6_large_vocab.ipynb"),
        ("/x/extracted/grace_late_12_a3_rnn_loss.ipynb", "grace", "a3_rnn_loss.ipynb"),
    ],
)
def test_lms_file_names_give_student_and_notebook(path: str, student: str, file_id: str) -> None:
    import re

    match = re.match(LMS_FILENAME_REGEXP, path)
    assert match is not None and (match["student_id"], match["file_id"]) == (student, file_id)


def test_source_notebooks_have_no_outputs_and_follow_the_grade_id_conventions() -> None:
    for assignment in ASSIGNMENTS:
        notebook = read_notebook(COURSE_SOURCE / "source" / assignment / f"{assignment}.ipynb")
        ids = [grade_id(c) for c in notebook["cells"] if grade_id(c)]
        assert len(ids) == len(set(ids)), f"{assignment}: duplicate grade_id"
        for cell in notebook["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell["cell_type"] == "code":
                assert cell.get("outputs") == [] and cell.get("execution_count") is None, f"{assignment}: outputs kept"
            if meta.get("grade") and not meta.get("solution"):
                assert meta["grade_id"].startswith("test_") and meta["points"] > 0
                assert "### BEGIN HIDDEN TESTS" in cell_text(cell), f"{assignment}/{meta['grade_id']}: no hidden part"
            elif meta.get("grade") and meta.get("solution"):
                assert meta["grade_id"].startswith("written_") and cell["cell_type"] == "markdown"
            elif meta.get("solution"):
                assert meta["grade_id"].startswith("answer_")



def _names_of_other_answers(notebook: dict, own: dict[str, set[str]] | None = None) -> dict[str, list[str]]:
    """For each test cell, the names its visible checks use that another question's answer cell defines.

    A test cell's own names are those its answer cell (``answer_<question>``) defines and ``own[grade_id]``
    (the graded names the spec gives the question, which another answer cell may define).
    """
    import ast

    defined_by: dict[str, str] = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code" and (grade_id(cell) or "").startswith("answer_"):
            for node in ast.parse(SOLUTION_REGION.sub("", cell_text(cell))).body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    defined_by[node.name] = grade_id(cell)
                elif isinstance(node, ast.Assign):
                    defined_by.update({t.id: grade_id(cell) for t in node.targets if isinstance(t, ast.Name)})
    foreign = {}
    for cell in notebook["cells"]:
        test = grade_id(cell) or ""
        if cell["cell_type"] != "code" or not test.startswith("test_"):
            continue
        visible = cell_text(cell).split("### BEGIN HIDDEN TESTS")[0]
        used = {node.id for node in ast.walk(ast.parse(visible)) if isinstance(node, ast.Name)}
        names = sorted(n for n in used - (own or {}).get(test, set())
                       if defined_by.get(n, f"answer_{test[5:]}") != f"answer_{test[5:]}")
        if names:
            foreign[test] = names
    return foreign


def test_no_visible_check_calls_another_questions_answer() -> None:
    # A failing visible check scores its question 0 under both graders, so a check that called another
    # question's function would zero a correct answer whenever that other question was skipped.
    from coursekit.grading.spec import load_spec

    found = {}
    for assignment in ASSIGNMENTS:
        spec = load_spec(COURSE_SOURCE / "autograde" / f"{assignment}.py")
        own = {q.grade_id: ({getattr(q, "student_function", "") or getattr(q, "function", "")} - {""})
               | set(getattr(q, "answers", {})) for q in spec.questions}
        found[assignment] = _names_of_other_answers(
            read_notebook(COURSE_SOURCE / "source" / assignment / f"{assignment}.ipynb"), own)
    assert {a: names for a, names in found.items() if names} == {}


def test_the_cross_question_scan_finds_a_visible_check_that_calls_another_answer() -> None:
    def code(grade: str, source: str) -> dict:
        return {"cell_type": "code", "source": source, "metadata": {"nbgrader": {"grade_id": grade}}}

    notebook = {"cells": [code("answer_a", "def a():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n"),
                          code("answer_b", "B = 2\ndef b():\n    return a() + B\n"),
                          code("test_a", "assert a() == 1\n"),
                          code("test_b", "assert b() - a() == B\n### BEGIN HIDDEN TESTS\nb()\n### END HIDDEN TESTS\n")]}
    assert _names_of_other_answers(notebook) == {"test_b": ["a"]}
    assert _names_of_other_answers(notebook, {"test_b": {"a"}}) == {}, "a name the spec gives the question is its own"

# --- the whole workflow on a temporary copy of the course -----------------------------------

@pytest.mark.parametrize("assignment", ASSIGNMENTS)
@pytest.mark.slow
@pytest.mark.assignments
def test_source_solution_autogrades_to_full_marks(graded_course: GradedCourse, assignment: str) -> None:
    grades = graded_course.grades(assignment, SOLUTION)
    score, maximum = _points(grades)
    assert maximum > 0 and score == maximum, grades


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
@pytest.mark.slow
@pytest.mark.assignments
def test_untouched_student_version_autogrades_to_zero(graded_course: GradedCourse, assignment: str) -> None:
    student = untouched_student(assignment)
    grades = graded_course.grades(assignment, student)
    assert _points(grades)[0] == 0, grades
    assert (graded_course.root / "autograded" / student / assignment / f"{assignment}.ipynb").is_file()


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
@pytest.mark.slow
@pytest.mark.assignments
def test_one_wrong_function_loses_points_on_its_question_only(graded_course: GradedCourse, assignment: str) -> None:
    # A question earns its points times the share of its hidden cases passed (0 when a visible check fails).
    grades = graded_course.grades(assignment, WRONG_ONE)
    _, _, lost = WRONG[assignment]
    for name, (score, maximum) in grades.items():
        if name.startswith("written_"):
            continue
        assert score < maximum if name == lost else score == maximum, (name, grades)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
@pytest.mark.slow
@pytest.mark.assignments
def test_differently_written_answers_earn_full_marks(graded_course: GradedCourse, assignment: str) -> None:
    grades = graded_course.grades(assignment, DIFFERENT)
    score, maximum = _points(grades)
    assert score == maximum, grades


@pytest.mark.parametrize("assignment", LMS_ASSIGNMENTS)
@pytest.mark.slow
@pytest.mark.assignments
def test_zip_collect_puts_lms_downloads_where_autograde_finds_them(graded_course: GradedCourse, assignment: str) -> None:
    extracted = sorted((graded_course.root / "downloaded" / assignment / "extracted").rglob("*.ipynb"))
    assert [p.name for p in extracted] == [LMS_FILE_NAMES[assignment].format(student=DIFFERENT, notebook=f"{assignment}.ipynb")]
    collected = graded_course.root / "submitted" / DIFFERENT / assignment / f"{assignment}.ipynb"
    assert read_notebook(collected) == read_notebook(extracted[0])
    assert (graded_course.root / "autograded" / DIFFERENT / assignment / f"{assignment}.ipynb").is_file()
    assert _points(graded_course.grades(assignment, DIFFERENT))[1] > 0


@pytest.mark.slow
@pytest.mark.assignments
@pytest.mark.a1
def test_correct_answer_writing_to_stderr_keeps_its_points(graded_course: GradedCourse) -> None:
    assignment = ASSIGNMENTS[0]
    grades = graded_course.grades(assignment, ADA)
    assert _points(grades)[0] == _points(grades)[1], grades
    graded = read_notebook(graded_course.root / "autograded" / ADA / assignment / f"{assignment}.ipynb")
    test_cell = next(c for c in graded["cells"] if grade_id(c) == "test_token_nll")
    shown = "".join(cell_text({"source": o.get("text", "")}) for o in test_cell["outputs"] if o["output_type"] == "stream")
    assert "token_nll called with logits" in shown, "the stderr text should still be shown"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
@pytest.mark.slow
@pytest.mark.assignments
def test_student_version_has_no_solution_and_no_hidden_tests(graded_course: GradedCourse, assignment: str) -> None:
    import inspect

    import coursekit.losses as references

    released = json.dumps(graded_course.release(assignment))
    text = "\n".join(cell_text(c) for c in graded_course.release(assignment)["cells"])
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "coursekit.course.checks", "_ref.", "Model answer"):
        assert marker not in released, marker
    leaked = [line for line in solution_lines(graded_course.source(assignment)) if line in text]
    assert leaked == []
    # Nor may the reference implementations' bodies appear (the docstrings aside).
    for name in references.__all__:
        body = inspect.getsource(getattr(references, name)).split('"""')[-1]
        distinctive = [line.strip() for line in body.splitlines() if len(line.strip()) >= 30]
        assert [line for line in distinctive if line in text] == [], name


@pytest.mark.slow
@pytest.mark.assignments
def test_feedback_html_shows_no_hidden_test_source(graded_course: GradedCourse) -> None:
    import html as html_lib
    import re

    pages = sorted((graded_course.root / "feedback").glob("*/*/*.html"))
    assert {p.parent.name for p in pages} == set(ASSIGNMENTS)
    assert {p.parent.parent.name for p in pages if p.parent.name == ASSIGNMENTS[0]} == {SOLUTION, WRONG_ONE, DIFFERENT, ADA, ALAN}
    for page in pages:
        # The code is syntax-highlighted into <span>s: compare with the text a reader sees.
        shown = html_lib.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
        assignment = page.parent.name
        graded = graded_course.root / "autograded" / page.parent.parent.name / assignment / f"{assignment}.ipynb"
        assert "### BEGIN HIDDEN TESTS" in graded.read_text(encoding="utf-8"), "feedback's input holds the hidden tests"
        for forbidden in ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "coursekit.course.checks", "_compare(", "_ref."):
            assert forbidden not in shown, (page, forbidden)
        assert "hidden tests of this cell are not shown" in shown
        visible_lines, hidden_lines = set(), set()
        for cell in graded_course.source(assignment)["cells"]:
            if "### BEGIN HIDDEN TESTS" not in cell_text(cell):
                continue
            visible = strip_hidden_tests(cell_text(cell)).released
            visible_lines |= {line.strip() for line in visible.splitlines() if len(line.strip()) >= 30}
            hidden_lines |= {line.strip() for line in cell_text(cell).splitlines() if len(line.strip()) >= 30}
        hidden_lines -= visible_lines
        assert hidden_lines and any(line in shown for line in visible_lines), "the check would not see code lines"
        assert [line for line in hidden_lines if line in shown] == [], page


@pytest.mark.slow
@pytest.mark.assignments
@pytest.mark.a1
def test_exchange_flow_with_two_students(graded_course: GradedCourse) -> None:
    assignment = ASSIGNMENTS[0]
    ada, alan = graded_course.grades(assignment, ADA), graded_course.grades(assignment, ALAN)
    assert _points(ada)[0] == _points(ada)[1] > 0
    assert _points(alan)[0] == 0
    for student, home in graded_course.homes.items():
        feedback = sorted((home / assignment / "feedback").glob(f"*/{assignment}.html"))
        assert len(feedback) == 1, f"{student} fetched no feedback"
        html = feedback[0].read_text(encoding="utf-8")
        assert "BEGIN HIDDEN TESTS" not in html and "coursekit.course.checks" not in html


def _coursekit(course: GradedCourse, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "coursekit"), *args], cwd=course.root, env=course.env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
@pytest.mark.assignments
@pytest.mark.a1
def test_release_feedback_releases_the_exchange_students_and_lists_the_others(graded_course: GradedCourse) -> None:
    released = graded_course.released_feedback
    assert released is not None and released.returncode == 0
    log = released.stdout + released.stderr
    for student in EXCHANGE_STUDENTS:
        assert f"Releasing feedback for student '{student}'" in log
    listed = log.split("Not released through the exchange", 1)[1].splitlines()[0]
    assert all(student in listed for student in (SOLUTION, WRONG_ONE, DIFFERENT)), listed
    assert not any(student in listed for student in EXCHANGE_STUDENTS), listed


@pytest.mark.slow
@pytest.mark.assignments
@pytest.mark.a1
def test_marks_given_with_coursekit_mark_appear_in_the_export(graded_course: GradedCourse) -> None:
    from nbgrader.api import Gradebook

    assignment = ASSIGNMENTS[0]
    marked = _coursekit(graded_course, "mark", assignment, "ada", "written_sum_vs_mean", "1.5",
                        "--comment", "Right about the length; say what the mean hides.")
    assert marked.returncode == 0, marked.stderr
    assert marked.stdout.strip() == f"ada {assignment} written_sum_vs_mean: 1.5 / 2; total 11.5 / 12"
    wrong_cell = _coursekit(graded_course, "mark", assignment, "ada", "written_nope", "1")
    assert wrong_cell.returncode == 2 and "written_sum_vs_mean" in wrong_cell.stderr and "'written_nope'" in wrong_cell.stderr
    too_many = _coursekit(graded_course, "mark", assignment, "ada", "written_sum_vs_mean", "9")
    assert too_many.returncode == 2 and "between 0 and 2" in too_many.stderr and "9.0" in too_many.stderr
    with Gradebook(graded_course.db_url) as gb:
        grade = gb.find_grade("written_sum_vs_mean", assignment, assignment, "ada")
        assert (grade.manual_score, grade.needs_manual_grade) == (1.5, False)
        comment = gb.find_comment("written_sum_vs_mean", assignment, assignment, "ada").manual_comment
        assert comment == "Right about the length; say what the mean hides."
    # An assignment recorded in the gradebook but not released yet (nobody has submitted it).
    graded_course.nbgrader("db", "assignment", "add", "a7_not_yet")
    out = graded_course.root / "grades.csv"
    graded_course.nbgrader("export", f"--to={out}")
    rows = {(r["assignment"], r["student_id"]): r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert "a7_not_yet" not in {assignment for assignment, _ in rows}
    ada = rows[(assignment, "ada")]
    assert float(ada["score"]) == pytest.approx(10.0 + 1.5) and float(ada["max_score"]) == pytest.approx(12.0)
    assert (float(ada["tests_score"]), float(ada["written_score"]), int(ada["cells_to_grade"])) == (10.0, 1.5, 0)
    assert ada["last_name"] == "Lovelace", "the roster imported with `nbgrader db student import`"
    # The instructor's own notebook holds the model written answer, which nobody has marked yet.
    solution = rows[(assignment, SOLUTION)]
    assert (float(solution["score"]), float(solution["written_score"]), int(solution["cells_to_grade"])) == (10.0, 0.0, 1)
    alan = rows[(assignment, "alan")]
    # alan handed in the untouched notebook: his blank written answer scores 0 and waits for nobody.
    assert (float(alan["score"]), int(alan["cells_to_grade"])) == (0.0, 0)


@pytest.mark.slow
@pytest.mark.assignments
def test_student_versions_command_writes_one_notebook_per_assignment(tmp_path: Path) -> None:
    out = tmp_path / "assets"
    before = sorted(p.name for p in COURSE_SOURCE.iterdir())
    result = subprocess.run(
        [sys.executable, "-m", "coursekit.course", "student-versions", "--out", str(out), "--assignment", ASSIGNMENTS[0]],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PATH": str(VENV_BIN) + os.pathsep + os.environ.get("PATH", "")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = out / f"{ASSIGNMENTS[0]}.ipynb"
    assert result.stdout.strip() == str(written)
    notebook = read_notebook(written)
    text = json.dumps(notebook)
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
    assert "raise NotImplementedError()" in text
    assert sorted(p.name for p in COURSE_SOURCE.iterdir()) == before, "the real course directory was modified"
