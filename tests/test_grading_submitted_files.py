"""What a submission hands in besides its notebook: bounded in number as well as bytes (what is past a budget is left
out, said in a note, and the notebook graded without it), named in a bounded note when the notebook is missing, and,
when the runner cannot set them up, the runner's own words where the instructor reads."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from adversarial.course import ASSIGNMENT, make_course, solved_notebook, submit
from coursekit.grading.driver import GradeOptions, grade_assignment, reports_directory
from coursekit.grading import files as submitted_files
from coursekit.grading.files import FilesOverBudget, LeftOut, files_of, files_within_budgets
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


def test_a_folder_that_must_be_copied_whole_is_refused_past_the_count_however_few_bytes_it_holds(tmp_path: Path) -> None:
    _empty_files(tmp_path / "data", [f"f{i}.txt" for i in range(11)])
    assert len(files_of(tmp_path, {"data/f0.txt"}, budget=0, max_files=10)) == 10
    # The caller names the folder: "the assignment's source folder ... cannot be copied into each sandbox: it ..."
    with pytest.raises(FilesOverBudget, match=r"^it holds more than 10 files, the most accepted$"):
        files_of(tmp_path, set(), budget=0, max_files=10)


def test_files_past_the_count_are_left_out_in_path_order_and_counted(tmp_path: Path) -> None:
    _empty_files(tmp_path / "runs", [f"step{i:02d}.json" for i in range(12)])
    files, left_out = files_within_budgets(tmp_path, {"runs/step00.json"}, budget=0, max_files=10)
    assert sorted(files) == [f"runs/step{i:02d}.json" for i in range(1, 11)]
    assert left_out == LeftOut(files=1, total_bytes=0, first="runs/step11.json")


def test_a_file_past_the_bytes_is_left_out_unread_and_the_smaller_files_after_it_are_taken(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"a" * 6)
    with (tmp_path / "b_model.pt").open("wb") as file:
        file.truncate(51_000_000)  # sparse: costs no disk, and reading it would cost 51 MB
    (tmp_path / "c.txt").write_bytes(b"c" * 4)
    (tmp_path / "d.txt").write_bytes(b"d")
    files, left_out = files_within_budgets(tmp_path, set(), budget=10, max_files=10)
    assert files == {"a.txt": b"a" * 6, "c.txt": b"c" * 4}
    assert left_out == LeftOut(files=2, total_bytes=51_000_001, first="b_model.pt")


def test_the_count_of_files_left_out_stops_at_its_bound_and_says_at_least(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submitted_files, "MAX_COUNTED_LEFT_OUT", 5)
    _empty_files(tmp_path, [f"f{i:02d}" for i in range(20)])
    files, left_out = files_within_budgets(tmp_path, set(), budget=0, max_files=3)
    assert len(files) == 3 and left_out == LeftOut(files=5, total_bytes=0, first="f03", more=True)
    assert submitted_files.left_out_note(left_out, 0, 3).startswith("at least 5 files (0 bytes) handed in beyond")


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """A course whose students hand in many notebooks, many files, a large checkpoint, a notebook past its own limit,
    or a file larger than the sandbox's scratch."""
    require_sandbox()
    course = make_course(tmp_path_factory.mktemp("files"))
    submit(course, "manylogs", solved_notebook(course))
    logs = course / "submitted" / "manylogs" / ASSIGNMENT / "runs"
    logs.mkdir()
    for step in range(1001):
        (logs / f"step{step:04d}.json").write_text(json.dumps({"step": step}))
    submit(course, "bigckpt", solved_notebook(course))
    with (course / "submitted" / "bigckpt" / ASSIGNMENT / "model.pt").open("wb") as file:
        file.truncate(51 * 2**20)  # sparse: 51 MiB as a torch.save in a scratch cell would leave it
    bignotebook = solved_notebook(course)
    bignotebook["cells"][0]["source"] += " " * 20_000_001
    submit(course, "bignotebook", bignotebook)
    folder = submit(course, "manynotebooks", solved_notebook(course)).parent
    (folder / f"{ASSIGNMENT}.ipynb").unlink()
    _empty_files(folder, [f"{i:05d}-{LONG_NAME}.ipynb" for i in range(3000)])
    submit(course, "bigfile", solved_notebook(course))
    (course / "submitted" / "bigfile" / ASSIGNMENT / "data.bin").write_bytes(bytes(3 * 2**20))
    log = io.StringIO()
    grade_assignment(course, ASSIGNMENT, GradeOptions(students=["manylogs", "bigckpt", "bignotebook", "manynotebooks"],
                                                      progress=False, limits=Limits(timeout_s=5)), log=log)
    # A 3 MiB file is within the files' budget but not within a 1 MiB scratch: the runner fails to copy it in.
    # Only the last 300 bytes of its stderr are kept: the traceback's end, the line that names the cause.
    grade_assignment(course, ASSIGNMENT, GradeOptions(students=["bigfile"], progress=False,
                                                      limits=Limits(timeout_s=5, disk_mb=1, diagnostics_bytes=300)),
                     log=log)
    reports = reports_directory(course, ASSIGNMENT)
    stored = {path.stem: json.loads(path.read_text()) for path in reports.glob("*.json")}
    return {"course": course, "log": log.getvalue(), "stored": stored}


def _listing(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


@pytest.mark.slow
def test_more_files_than_accepted_are_left_out_and_the_notebook_gets_full_marks_with_a_note(graded: dict) -> None:
    stored = graded["stored"]["manylogs"]
    assert (stored["outcome"], stored["score"]) == ("graded", 10.0), stored
    note = ("1 file (14 bytes) handed in beyond the budgets (1,000 files, 50,000,000 bytes besides the notebook, "
            "taken folder by folder in name order) were not copied into the graded folder, the first "
            "runs/step1000.json; the notebook was graded without them (the submitted copy is kept)")
    assert note in stored["notes"], stored["notes"]
    logs = [f"runs/step{step:04d}.json" for step in range(1001)]
    submitted = graded["course"] / "submitted" / "manylogs" / ASSIGNMENT
    assert _listing(submitted) == sorted([f"{ASSIGNMENT}.ipynb", "timestamp.txt", *logs])
    autograded = graded["course"] / "autograded" / "manylogs" / ASSIGNMENT
    assert _listing(autograded) == sorted([f"{ASSIGNMENT}.ipynb", "timestamp.txt", *logs[:1000]])


@pytest.mark.slow
def test_a_checkpoint_past_the_bytes_is_left_out_and_the_notebook_gets_full_marks_with_a_note(graded: dict) -> None:
    stored = graded["stored"]["bigckpt"]
    assert (stored["outcome"], stored["score"]) == ("graded", 10.0), stored
    note = (f"1 file ({51 * 2**20:,} bytes) handed in beyond the budgets (1,000 files, 50,000,000 bytes besides the "
            "notebook, taken folder by folder in name order) were not copied into the graded folder, the first "
            "model.pt; the notebook was graded without them (the submitted copy is kept)")
    assert note in stored["notes"], stored["notes"]
    submitted = graded["course"] / "submitted" / "bigckpt" / ASSIGNMENT
    assert (submitted / "model.pt").stat().st_size == 51 * 2**20
    assert _listing(graded["course"] / "autograded" / "bigckpt" / ASSIGNMENT) == [f"{ASSIGNMENT}.ipynb",
                                                                                 "timestamp.txt"]


@pytest.mark.slow
def test_a_notebook_past_its_own_limit_is_still_too_large(graded: dict) -> None:
    stored = graded["stored"]["bignotebook"]
    assert (stored["outcome"], stored["score"]) == ("too_large", 0.0)
    assert stored["notes"][0].startswith("the notebook has ") and stored["notes"][0].endswith(", limit 20000000")
    submitted = graded["course"] / "submitted" / "bignotebook" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert submitted.stat().st_size > 20_000_000
    assert _listing(graded["course"] / "autograded" / "bignotebook" / ASSIGNMENT) == [f"{ASSIGNMENT}.ipynb",
                                                                                     "timestamp.txt"]


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
    assert all(not graded["stored"][student]["diagnostics"] for student in ("manylogs", "bigckpt", "manynotebooks"))
