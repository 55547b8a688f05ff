"""`nbgrader zip_collect` with the course's collector, on names learning platforms really write."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from adversarial.course import NBGRADER, ASSIGNMENT, make_course, release_notebook, tool_env
from coursekit.course.config import LMS_FILENAME_REGEXP
from coursekit.course.lms_names import normalised_name, why_skipped


def test_late_flags_and_reupload_numbers_are_read_as_the_plain_name() -> None:
    assert normalised_name("/d/ada_LATE_1_2_a1_sequence_loss-3.ipynb") == "/d/ada_late_1_2_a1_sequence_loss.ipynb"
    assert why_skipped("/d/ada_LATE_1_2_a1_sequence_loss-3.ipynb", LMS_FILENAME_REGEXP) is None
    assert "student id" in why_skipped("/d/Carol Smith_a1_sequence_loss.ipynb", LMS_FILENAME_REGEXP)
    assert "no '<student>_'" in why_skipped("/d/a1.ipynb", LMS_FILENAME_REGEXP)
    assert why_skipped("/d/notes.txt", LMS_FILENAME_REGEXP) is None


@pytest.mark.slow
@pytest.mark.assignments
@pytest.mark.a1
def test_zip_collect_takes_late_and_reuploaded_files_and_lists_the_ones_it_skips(tmp_path: Path) -> None:
    course = make_course(tmp_path / "course")
    notebook = json.dumps(release_notebook(course))
    archive = course / "downloaded" / ASSIGNMENT / "archive"
    archive.mkdir(parents=True)
    names = {
        f"ada_LATE_48213_904811_{ASSIGNMENT}.ipynb": "ada",
        f"bob_48213_904812_{ASSIGNMENT}-1.ipynb": "bob",
        f"Carol Smith_48213_{ASSIGNMENT}.ipynb": None,
        "dan_48213_a1_seq_loss.ipynb": None,
    }
    with zipfile.ZipFile(archive / "download.zip", "w") as download:
        for name in names:
            download.writestr(name, notebook)
    done = subprocess.run([*NBGRADER, "zip_collect", ASSIGNMENT], cwd=course, env=tool_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for student in ("ada", "bob"):
        assert (course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file(), student
    log = done.stdout + done.stderr
    after = log.split("zip_collect will SKIP 2 notebook(s)", 1)[1].splitlines()[1:]
    summary = "\n".join(line for line in after[:2] if line.startswith("  "))
    assert f"Carol Smith_48213_{ASSIGNMENT}.ipynb: the student id" in summary
    assert "dan_48213_a1_seq_loss.ipynb: the notebook's name is not an assignment's" in summary
    assert "ada_LATE" not in summary and "bob_48213" not in summary
    # What the message and the instructors' page say to do: unzip into the archive folder, rename, rerun with --force.
    with zipfile.ZipFile(archive / "download.zip") as download:
        download.extractall(archive)
    (archive / "download.zip").unlink()
    (archive / f"Carol Smith_48213_{ASSIGNMENT}.ipynb").rename(archive / f"carol_48213_{ASSIGNMENT}.ipynb")
    refused = subprocess.run([*NBGRADER, "zip_collect", ASSIGNMENT], cwd=course, env=tool_env(),
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "Directory not empty" in refused.stdout + refused.stderr
    again = subprocess.run([*NBGRADER, "zip_collect", "--force", ASSIGNMENT], cwd=course, env=tool_env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    for student in ("ada", "bob", "carol"):
        assert (course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file(), student
    assert "zip_collect will SKIP 1 notebook(s)" in again.stdout + again.stderr


@pytest.mark.slow
@pytest.mark.assignments
@pytest.mark.a1
def test_zip_collect_keeps_the_latest_of_several_uploads_by_one_student(tmp_path: Path) -> None:
    course = make_course(tmp_path / "course")
    released = release_notebook(course)
    archive = course / "downloaded" / ASSIGNMENT / "archive"
    archive.mkdir(parents=True)
    uploads = [f"ada_48213_{ASSIGNMENT}.ipynb", f"ada_48213_{ASSIGNMENT}-1.ipynb",
               f"bob_48213_{ASSIGNMENT}.ipynb", f"bob_LATE_48213_{ASSIGNMENT}.ipynb"]
    with zipfile.ZipFile(archive / "download.zip", "w") as download:
        for name in uploads:
            download.writestr(name, json.dumps({**released, "metadata": {**released["metadata"], "upload": name}}))
    done = subprocess.run([*NBGRADER, "zip_collect", ASSIGNMENT], cwd=course, env=tool_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for student, latest in (("ada", uploads[1]), ("bob", uploads[3])):
        collected = json.loads((course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
        assert collected["metadata"]["upload"] == latest
        assert not (course / "submitted" / student / ASSIGNMENT / "timestamp.txt").exists()
    log = done.stdout + done.stderr
    assert f"{uploads[0]}: {uploads[1]} is collected instead" in log
    assert f"{uploads[2]}: {uploads[3]} is collected instead" in log
