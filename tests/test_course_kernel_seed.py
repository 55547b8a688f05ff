"""The seed handed to the kernel of stock ``nbgrader autograde`` (coursekit.course.kernel_seed): never the secret."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from adversarial.course import NBGRADER, ASSIGNMENT, make_course, solved_notebook, submit, tool_env
from coursekit.course.kernel_seed import (CHECK_SEED_VARIABLE, FOLDER_VARIABLE, SEED_VARIABLE,
                                          check_seed_from_environment, folder_from_environment,
                                          kernel_environment, seed_from_environment)
from coursekit.grading.gradebook import load_course
from coursekit.grading.secret import SECRET_VARIABLE, secret_path
from coursekit.grading.spec import check_seed, hidden_seed, load_spec

#: the secret the instructor's nbgrader process holds in its environment.
ENVIRONMENT_SECRET = bytes(range(100, 132))

#: an answer cell that prints every place the secret could be reached from: the file and the environment.
PRINT_EVERYTHING = '''
import os as _os, pathlib as _pathlib
_secret_file = _pathlib.Path({path!r})
print("FILE", _secret_file.read_bytes().hex() if _secret_file.exists() else "absent")
print("ENVIRON", dict(_os.environ))
'''


def test_kernel_environment_sets_the_seeds_and_folder_hides_the_secret_and_restores_all_after_a_failure(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SECRET_VARIABLE, ENVIRONMENT_SECRET.hex())
    monkeypatch.delenv(SEED_VARIABLE, raising=False)
    monkeypatch.setenv(CHECK_SEED_VARIABLE, "999")
    monkeypatch.setenv(FOLDER_VARIABLE, "/an/outer/notebook")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyError), kernel_environment(12345, 678, Path("autograded/ada/a1")):
        assert SECRET_VARIABLE not in os.environ
        assert seed_from_environment("ada") == 12345
        assert check_seed_from_environment("ada") == 678
        assert folder_from_environment() == tmp_path.resolve() / "autograded" / "ada" / "a1", "made absolute"
        raise KeyError("execution failed")
    assert os.environ[SECRET_VARIABLE] == ENVIRONMENT_SECRET.hex()
    assert SEED_VARIABLE not in os.environ
    assert os.environ[CHECK_SEED_VARIABLE] == "999"
    assert os.environ[FOLDER_VARIABLE] == "/an/outer/notebook"


def test_a_missing_check_seed_is_an_error_naming_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CHECK_SEED_VARIABLE, raising=False)
    with pytest.raises(RuntimeError, match=f"{CHECK_SEED_VARIABLE} is not set in the kernel of ada's notebook"):
        check_seed_from_environment("ada")


def test_a_seed_that_is_not_a_number_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SEED_VARIABLE, "12ab")
    with pytest.raises(RuntimeError, match=f"{SEED_VARIABLE} must be a decimal integer"):
        seed_from_environment("ada")


@pytest.mark.slow
def test_student_code_under_nbgrader_autograde_finds_no_grading_secret_only_its_own_seed(tmp_path: Path) -> None:
    """Grader review r5, finding 1 (its f1_secret_leak.py): the hidden blocks read the grading secret in the
    student's kernel, so a cell could print it into the autograded notebook and the feedback. Now the kernel
    neither reads it nor inherits the instructor's COURSEKIT_GRADING_SECRET: it holds only ada's seed, and the
    hidden tests still score the solution in full.

    What this pins: the kernel's own environment and the hidden blocks' output carry no secret. What it cannot
    pin: the kernel runs as the user who runs nbgrader, who can read the secret, so a determined cell still reads
    the file by its path or the nbgrader process's /proc/<pid>/environ; the pages say so and tell the instructor
    to treat a stock run as a leak of its secret. Here the secret is in that process's environment only.
    """
    course = make_course(tmp_path / "course")
    path = secret_path(course)
    notebook = solved_notebook(course)
    notebook["cells"].append({"cell_type": "code", "id": "print-everything", "metadata": {}, "outputs": [],
                              "execution_count": None, "source": PRINT_EVERYTHING.format(path=str(path))})
    submit(course, "ada", notebook)
    env = {**tool_env(), SECRET_VARIABLE: ENVIRONMENT_SECRET.hex()}
    for command in ("autograde", "generate_feedback"):
        done = subprocess.run([*NBGRADER, command, ASSIGNMENT, "--force"], cwd=course, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    assert not path.exists()
    autograded = (course / "autograded" / "ada" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    feedback = (course / "feedback" / "ada" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    printed = "".join("".join(output.get("text", "")) for cell in json.loads(autograded)["cells"]
                      for output in cell.get("outputs", []))
    assert "FILE absent" in printed and "ENVIRON {" in printed, printed[-2000:]
    seed = hidden_seed(load_spec(course / "autograde" / f"{ASSIGNMENT}.py"), load_course(course).course_id, "ada",
                       ENVIRONMENT_SECRET)
    assert f"'{SEED_VARIABLE}': '{seed}'" in printed, printed[-2000:]
    checks = check_seed(load_spec(course / "autograde" / f"{ASSIGNMENT}.py"), ENVIRONMENT_SECRET)
    assert f"'{CHECK_SEED_VARIABLE}': '{checks}'" in printed, printed[-2000:]
    assert ENVIRONMENT_SECRET.hex() not in autograded and ENVIRONMENT_SECRET.hex() not in feedback
    assert f"'{SECRET_VARIABLE}'" not in printed
    assert "hidden tests of test_token_nll: " in printed and "3 of 3 points" in printed, printed[-2000:]


@pytest.mark.slow
def test_the_first_validate_of_a_new_course_creates_the_secret_and_passes(tmp_path: Path) -> None:
    """Instructors' page review r68, finding 1: in a course without a secret, the instructor's first
    ``nbgrader validate`` of a source notebook creates it in the kernel, and said so on the kernel's standard
    error, which nbgrader counts as a failed cell: "VALIDATION FAILED" on the solution. The notice now goes to
    the cell's output, and the first validate passes like every later one.
    """
    course = make_course(tmp_path / "course")
    path = secret_path(course)
    env = {key: value for key, value in tool_env().items() if key != SECRET_VARIABLE}
    source = course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    for attempt in ("first", "second"):
        done = subprocess.run([*NBGRADER, "validate", str(source)], cwd=course, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0 and "Success! Your notebook passes all the tests." in done.stdout, (
            attempt, done.stdout[-3000:], done.stderr[-3000:])
        assert path.exists() and len(path.read_bytes()) == 32, attempt
