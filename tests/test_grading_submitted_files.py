"""What a submission hands in besides its notebook: bounded in number as well as bytes, named in a bounded note when
the notebook is missing, and, when the runner cannot set them up, the runner's own words where the instructor reads."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from adversarial.course import ASSIGNMENT, make_course, solved_notebook, submit
from coursekit.grading.driver import GradeOptions, grade_assignment, reports_directory
from coursekit.grading.files import FilesOverBudget, files_of
from coursekit.grading.limits import Limits
from coursekit.grading.notebook import NAME_SHOWN_CHARS, NOTEBOOKS_NAMED, missing_notebook_note
from conftest import require_sandbox

pytestmark = [pytest.mark.grading, pytest.mark.a1]

LONG_NAME = "n" * 200


def _empty_files(directory: Path, names: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.close(os.open(directory / name, os.O_CREAT | os.O_WRONLY, 0o644))


def test_the_missing_notebook_note_names_a_few_notebooks_cut_short_and_counts_the_rest(tmp_path: Path) -> None:
    _empty_files(tmp_path, [f"{i:05d}-{LONG_NAME}.ipynb" for i in range(3000)])
    note = missing_notebook_note(tmp_path, f"{ASSIGNMENT}.ipynb")
    listed = note.split("; found ", 1)[1].split(": rename", 1)[0]
    names, more = listed.split(f" and {3000 - NOTEBOOKS_NAMED:,} more")[0].split(", "), listed.endswith(" more")
    assert more and len(names) == NOTEBOOKS_NAMED, note[:300]
    assert all(len(name) == NAME_SHOWN_CHARS and name.startswith(f"{i:05d}-n") for i, name in enumerate(names))
    assert len(note) < 1000


def test_a_notebook_one_folder_down_is_named_by_its_path(tmp_path: Path) -> None:
    _empty_files(tmp_path / ASSIGNMENT, [f"{ASSIGNMENT}.ipynb"])
    _empty_files(tmp_path / ".ipynb_checkpoints", [f"{ASSIGNMENT}-checkpoint.ipynb"])
    assert missing_notebook_note(tmp_path, f"{ASSIGNMENT}.ipynb").startswith(
        f"no {ASSIGNMENT}.ipynb in the submission; found {ASSIGNMENT}/{ASSIGNMENT}.ipynb: move it to the "
        f"submission's own folder as {ASSIGNMENT}.ipynb and regrade with --force")


def test_files_past_the_count_are_refused_however_few_bytes_they_hold(tmp_path: Path) -> None:
    _empty_files(tmp_path / "data", [f"f{i}.txt" for i in range(11)])
    assert len(files_of(tmp_path, {"data/f0.txt"}, budget=0, max_files=10)) == 10
    with pytest.raises(FilesOverBudget, match=r"^the submission holds more than 10 files besides the notebook"):
        files_of(tmp_path, set(), budget=0, max_files=10)


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """A course whose students hand in many notebooks, many files, or a file larger than the sandbox's scratch."""
    require_sandbox()
    course = make_course(tmp_path_factory.mktemp("files"))
    submit(course, "manyfiles", solved_notebook(course))
    _empty_files(course / "submitted" / "manyfiles" / ASSIGNMENT / "data", [f"f{i:04d}.txt" for i in range(1500)])
    folder = submit(course, "manynotebooks", solved_notebook(course)).parent
    (folder / f"{ASSIGNMENT}.ipynb").unlink()
    _empty_files(folder, [f"{i:05d}-{LONG_NAME}.ipynb" for i in range(3000)])
    submit(course, "bigfile", solved_notebook(course))
    (course / "submitted" / "bigfile" / ASSIGNMENT / "data.bin").write_bytes(bytes(3 * 2**20))
    log = io.StringIO()
    grade_assignment(course, ASSIGNMENT, GradeOptions(students=["manyfiles", "manynotebooks"], progress=False,
                                                      limits=Limits(timeout_s=5)), log=log)
    # A 3 MiB file is within the files' budget but not within a 1 MiB scratch: the runner fails to copy it in.
    # Only the last 300 bytes of its stderr are kept: the traceback's end, the line that names the cause.
    grade_assignment(course, ASSIGNMENT, GradeOptions(students=["bigfile"], progress=False,
                                                      limits=Limits(timeout_s=5, disk_mb=1, diagnostics_bytes=300)),
                     log=log)
    reports = reports_directory(course, ASSIGNMENT)
    stored = {path.stem: json.loads(path.read_text()) for path in reports.glob("*.json")}
    return {"course": course, "log": log.getvalue(), "stored": stored}


@pytest.mark.slow
def test_a_submission_of_more_files_than_accepted_is_too_large_and_says_how_many(graded: dict) -> None:
    stored = graded["stored"]["manyfiles"]
    assert (stored["outcome"], stored["score"]) == ("too_large", 0.0)
    assert stored["notes"][0] == "the submission holds more than 1,000 files besides the notebook, the most accepted"


@pytest.mark.slow
def test_a_missing_notebook_among_thousands_gets_a_short_note_and_none_of_them_is_copied(graded: dict) -> None:
    stored = graded["stored"]["manynotebooks"]
    assert (stored["outcome"], stored["score"]) == ("missing_notebook", 0.0)
    assert f" and {3000 - NOTEBOOKS_NAMED:,} more: rename the one to grade to {ASSIGNMENT}.ipynb" in stored["notes"][0]
    assert len(json.dumps(stored)) < 5000
    copied = graded["course"] / "autograded" / "manynotebooks" / ASSIGNMENT
    assert sorted(path.name for path in copied.iterdir()) == [f"{ASSIGNMENT}.ipynb", "timestamp.txt"]


@pytest.mark.slow
def test_a_runner_that_fails_leaves_its_stderr_in_the_log_and_the_report_and_the_note_says_where(graded: dict) -> None:
    stored = graded["stored"]["bigfile"]
    assert (stored["outcome"], stored["score"]) == ("kernel_died", 0.0)
    assert "`diagnostics`" in stored["notes"][0] and "grader's log" in stored["notes"][0]
    assert "No space left on device" in stored["diagnostics"], stored["diagnostics"]
    log = graded["log"]
    said = log[log.index("bigfile: kernel_died"):]
    assert "No space left on device" in said, log
    assert all(not graded["stored"][student]["diagnostics"] for student in ("manyfiles", "manynotebooks"))
