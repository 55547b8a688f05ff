"""`coursekit grade` as a command: SIGKILL mid-run, resuming, --force, --jobs 1 vs N, --require-sandbox."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from adversarial.corpus import WRONG_TOKEN_NLL
from adversarial.course import NBGRADER, ASSIGNMENT, VENV_BIN, make_course, release_notebook, set_answer, solved_notebook, submit, tool_env
from coursekit.grading import driver
from coursekit.grading.driver import GradeOptions, grade_assignment
from coursekit.grading.limits import Limits
from coursekit.grading.sandbox import kernel_leaves_root
from conftest import require_sandbox, require_system_tool

pytestmark = [pytest.mark.slow, pytest.mark.grading, pytest.mark.a1]

EXPECTED = {"alice": 10.0, "bob": 7.0, "carol": 0.0, "dave": 10.0}
WRITTEN = "written_sum_vs_mean"  # dave answers it; alice, bob and carol leave it as released


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_sandbox()
    course = make_course(tmp_path_factory.mktemp("resume"))
    submit(course, "alice", solved_notebook(course))
    submit(course, "bob", set_answer(solved_notebook(course), "answer_token_nll", WRONG_TOKEN_NLL))
    submit(course, "carol", release_notebook(course))
    submit(course, "dave", set_answer(solved_notebook(course), WRITTEN, "The sum grows with the length; the mean does not."))
    return course


def _grade(course: Path, *args: str, env: dict | None = None, wrapper: tuple[str, ...] | list[str] = (), **kwargs) -> subprocess.Popen:
    command = [*wrapper, str(VENV_BIN / "coursekit"), "grade", ASSIGNMENT, "--no-progress", "--timeout", "5", *args]
    return subprocess.Popen(command, cwd=course, env=env or tool_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _committed(course: Path) -> dict[str, float]:
    from nbgrader.api import Gradebook

    from coursekit.grading.gradebook import graded_students, load_course

    settings = load_course(course)
    tests = ["test_token_nll", "test_sequence_loss", "test_perplexity", "test_fox", "test_mc_classification"]
    done = graded_students(settings, ASSIGNMENT, ASSIGNMENT, tests)
    with Gradebook(settings.db_url, settings.course_id) as gradebook:
        return {s: gradebook.find_submission(ASSIGNMENT, s).score for s in done}


def _graded(course: Path, *args: str) -> tuple[str, str]:
    """Run `coursekit grade` to its end; its stdout and stderr (it must succeed)."""
    process = _grade(course, *args)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return out, err


def _graded_then_resubmitted(folder: Path) -> Path:
    """A course where ada and bob were graded, then ada resubmitted a wrong token_nll with a later timestamp."""
    require_sandbox()
    course = make_course(folder)
    submit(course, "ada", solved_notebook(course))
    submit(course, "bob", solved_notebook(course))
    _graded(course)
    resubmitted = set_answer(solved_notebook(course), "answer_token_nll", WRONG_TOKEN_NLL)
    submit(course, "ada", resubmitted, timestamp="2026-11-21 09:00:00.000000 UTC")
    return course


def _skipped_line(err: str) -> str:
    """The log's line on the submissions skipped as already graded."""
    return next(line for line in err.splitlines() if "already graded" in line)


def _reports(course: Path) -> dict[str, dict]:
    out = {}
    for path in (course / "grade-reports" / ASSIGNMENT).glob("*.json"):
        data = json.loads(path.read_text())
        data.pop("seconds")
        out[data["student"]] = data
    return out


def test_sigkill_keeps_finished_grades_and_rerun_finishes_the_rest(course: Path) -> None:
    process = _grade(course, "--jobs", "1")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if len(_committed(course)) >= 1:
            break
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = _committed(course)
    assert 1 <= len(finished) < 4
    for student, score in finished.items():
        assert score == EXPECTED[student]

    rerun = _grade(course, "--jobs", "1")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    regraded = {line.split()[0] for line in out.splitlines()[1:] if line and not line.startswith("reports:")}
    assert regraded == set(EXPECTED) - set(finished)
    assert "already graded" in err
    assert _committed(course) == EXPECTED
    assert _committed(course).keys() == _reports(course).keys()


def test_jobs_one_and_two_give_identical_results(course: Path) -> None:
    before = _reports(course)
    assert set(before) == set(EXPECTED)
    process = _grade(course, "--jobs", "2", "--force")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert _reports(course) == before
    assert _committed(course) == EXPECTED
    table = [line.split() for line in out.splitlines()[1:5]]
    assert [(row[0], float(row[1]), row[3]) for row in table] == [
        ("alice", 10.0, "graded"), ("bob", 7.0, "graded"), ("carol", 0.0, "graded"), ("dave", 10.0, "graded")]


def test_without_bwrap_require_sandbox_refuses_and_a_plain_run_warns_or_will_not_run_as_root(course: Path) -> None:
    env = tool_env()
    env["PATH"] = str(VENV_BIN)
    refused = _grade(course, "--require-sandbox", "--force", env=env)
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == 3 and "--require-sandbox" in err and "bwrap" in err
    report_path = course / "grade-reports" / ASSIGNMENT / "bob.json"
    before = report_path.stat().st_mtime_ns if report_path.exists() else None
    plain = _grade(course, "--student", "bob", "--force", env=env)
    out, err = plain.communicate(timeout=300)
    leaves_root, _why = kernel_leaves_root(False)
    if not leaves_root:
        # A root grader whose Python environment other uids cannot read (here: a pyenv under /root) would run
        # the kernel as root without bubblewrap: it refuses and grades nothing (review round 1, finding 8).
        assert plain.returncode == 3 and "would run as root" in err, err
        assert (report_path.stat().st_mtime_ns if report_path.exists() else None) == before
        return
    assert plain.returncode == 0, err
    assert "WITHOUT THE SANDBOX" in err
    report = json.loads(report_path.read_text())
    assert report["score"] == 7.0 and not report["sandboxed"] and "NOT SANDBOXED" in report["notes"]


#: runs a command in a mount namespace of its own where every cgroup hierarchy is read-only.
READ_ONLY_CGROUPS = ('for d in $(awk \'$3 ~ /^cgroup/ {print $2}\' /proc/self/mounts); do '
                     'mount -o remount,bind,ro "$d" || exit 97; done; exec "$@"')


def test_without_cgroups_require_sandbox_refuses_and_plain_run_warns(course: Path) -> None:
    unshare = require_system_tool("unshare", "to give one grader read-only cgroup hierarchies")
    if os.geteuid() != 0:
        pytest.skip("only root can remount the cgroup hierarchies")
    hidden = [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", READ_ONLY_CGROUPS, "sh"]
    refused = _grade(course, "--require-sandbox", "--force", wrapper=hidden)
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == 3 and "--require-sandbox" in err and "cgroup" in err, err
    plain = _grade(course, "--student", "bob", "--force", wrapper=hidden)
    out, err = plain.communicate(timeout=300)
    assert plain.returncode == 0, err
    assert "WITHOUT CGROUPS" in err
    report = json.loads((course / "grade-reports" / ASSIGNMENT / "bob.json").read_text())
    assert report["score"] == 7.0 and report["sandboxed"] and "NO CGROUP LIMITS" in report["notes"]


def test_feedback_and_export_work_on_the_graded_course(course: Path) -> None:
    from nbgrader.api import Gradebook

    from coursekit.grading.gradebook import load_course

    settings = load_course(course)
    with Gradebook(settings.db_url, settings.course_id) as gradebook:
        grade = gradebook.find_grade("written_sum_vs_mean", ASSIGNMENT, ASSIGNMENT, "alice")
        grade.manual_score = 2.0
        gradebook.db.commit()
    for command in (["generate_feedback", ASSIGNMENT, "--force"], ["export"]):
        done = subprocess.run([*NBGRADER, *command], cwd=course, env=tool_env(),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    html = (course / "feedback" / "bob" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "HIDDEN TESTS" not in html and "_compare" not in html and "not the per-sample metric" not in html
    assert "coursekit grade: 0 / 3 points" in html
    rows = {line.split(",")[3]: line.split(",") for line in (course / "grades.csv").read_text().splitlines()[1:]}
    assert float(rows["alice"][9]) == 12.0 and float(rows["bob"][9]) == 7.0 and float(rows["alice"][10]) == 12.0


def test_written_answers_are_flagged_as_nbgrader_autograde_flags_them(course: Path) -> None:
    from nbgrader.api import Gradebook
    import nbformat
    from nbgrader.utils import determine_grade

    from coursekit.grading.gradebook import load_course

    graded = _grade(course, "--jobs", "2")
    _, err = graded.communicate(timeout=300)
    assert graded.returncode == 0, err
    settings = load_course(course)
    with Gradebook(settings.db_url, settings.course_id) as gradebook:
        for student in ("carol", "dave"):
            submitted = nbformat.read(course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
            cell = next(c for c in submitted.cells if c.metadata.get("nbgrader", {}).get("grade_id") == WRITTEN)
            # nbgrader's own rule (SaveAutoGrades): an unchanged answer scores 0, a changed one has no auto score.
            nbgrader_auto, _ = determine_grade(cell)
            grade = gradebook.find_grade(WRITTEN, ASSIGNMENT, ASSIGNMENT, student)
            assert grade.auto_score == nbgrader_auto, (student, grade.auto_score, nbgrader_auto)
            assert grade.needs_manual_grade is (nbgrader_auto is None), student
    assert nbgrader_auto is None, "dave's written answer must wait for a grader"


def test_after_nbgrader_autograde_coursekit_grade_says_the_other_grader_graded(tmp_path: Path) -> None:
    other = make_course(tmp_path / "other")
    submit(other, "erin", solved_notebook(other))
    autograde = subprocess.run([*NBGRADER, "autograde", ASSIGNMENT], cwd=other, env=tool_env(),
                               capture_output=True, text=True, timeout=600)
    assert autograde.returncode == 0, autograde.stderr[-2000:]
    graded = _grade(other)
    out, err = graded.communicate(timeout=300)
    assert graded.returncode == 0, err
    assert "1 submission(s) already graded" in err
    assert "graded by `nbgrader autograde`" in err and "erin" in err
    assert not (other / "grade-reports" / ASSIGNMENT / "erin.json").exists()


def test_a_submission_regraded_by_nbgrader_autograde_after_coursekit_grade_is_named(tmp_path: Path) -> None:
    """Stop 41's note: the naming check looked only for a grade report, so a submission graded by `coursekit grade`
    and then regraded by `nbgrader autograde --force` kept its old report and was skipped without being named.
    The report now records the autograded notebook it wrote; stock's regrade replaces that notebook."""
    require_sandbox()
    course = make_course(tmp_path / "both")
    submit(course, "erin", solved_notebook(course))
    submit(course, "finn", solved_notebook(course))
    _graded(course)
    out, err = _graded(course)
    assert "2 submission(s) already graded; use --force to regrade them\n" in err, err
    assert "nbgrader autograde" not in err, err
    autograde = subprocess.run([*NBGRADER, "autograde", ASSIGNMENT, "--force", "--student", "erin"], cwd=course,
                               env=tool_env(), capture_output=True, text=True, timeout=600)
    assert autograde.returncode == 0, autograde.stderr[-2000:]
    assert (course / "grade-reports" / ASSIGNMENT / "erin.json").exists()
    out, err = _graded(course)
    assert _skipped_line(err).startswith("2 submission(s) already graded; use --force to regrade them (1 of them last "
                                         "graded by `nbgrader autograde`"), err
    assert _skipped_line(err).endswith(": erin)"), err
    # An abandoned stock regrade leaves the scores and no autograded copy: named too.
    for path in sorted((course / "autograded" / "finn").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    out, err = _graded(course)
    assert "(2 of them last graded by `nbgrader autograde`" in _skipped_line(err), err
    assert _skipped_line(err).endswith(": erin, finn)"), err


def test_a_submission_the_grader_failed_on_is_graded_again_by_the_next_run(tmp_path: Path, monkeypatch) -> None:
    """Instructors' review s42 r2, S1: a grader_error records no grade, and the note promises that the next run tries
    the submission again; but one that already had scores (here a resubmission, whose gradebook write failed) was
    skipped by the next run, its old scores standing beside the new autograded notebook."""
    course = _graded_then_resubmitted(tmp_path / "failed")
    record = driver.gb.record_submission

    def locked_for_ada(*args, **kwargs):
        if args[3] == "ada":
            raise OSError("database is locked")
        return record(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(driver.gb, "record_submission", locked_for_ada)
        failed = grade_assignment(course, ASSIGNMENT, GradeOptions(limits=Limits(timeout_s=5), progress=False),
                                  log=io.StringIO())
    assert [(r.student, r.outcome) for r in failed] == [("ada", "grader_error")]
    assert _committed(course)["ada"] == 10.0, "the failed run recorded nothing: the old scores stand"
    out, err = _graded(course)
    assert "1 submission(s) whose last grading failed in the grader (grader_error), graded again: ada" in err, err
    table = [line.split() for line in out.splitlines()[1:] if line and not line.startswith("reports:")]
    assert [(row[0], float(row[1]), row[3]) for row in table] == [("ada", 7.0, "graded")], out
    assert _committed(course)["ada"] == 7.0
    out, err = _graded(course)
    assert "2 submission(s) already graded; use --force to regrade them\n" in err and "grader_error" not in err, err
    # A full disk: nothing can be written, not even the grader_error report; the log says what to do.
    full = OSError(28, "No space left on device")
    with monkeypatch.context() as patch:
        patch.setattr(driver.Grader, "_write", lambda *args, **kwargs: (_ for _ in ()).throw(full))
        patch.setattr(driver.Grader, "_write_report", lambda *args, **kwargs: (_ for _ in ()).throw(full))
        log = io.StringIO()
        failed = grade_assignment(course, ASSIGNMENT, GradeOptions(students=["bob"], force=True,
                                                                   limits=Limits(timeout_s=5), progress=False), log=log)
    assert [(r.student, r.outcome) for r in failed] == [("bob", "grader_error")]
    assert (f"ERROR: the report of bob could not be written either ([Errno 28] No space left on device), so the next "
            f"`coursekit grade` cannot tell that this run failed: once the cause is mended, regrade the submission "
            f"with `coursekit grade {ASSIGNMENT} --force --student bob`") in log.getvalue(), log.getvalue()


def test_an_exchange_submission_that_is_not_run_keeps_its_submission_secret_for_release_feedback(
        tmp_path: Path) -> None:
    """Instructors' review s42 r2, L1: a notebook that is not run (here missing: the student submitted a copy) left
    only the notebook and timestamp.txt in autograded/, so `nbgrader release_feedback` took the exchange student for
    one who submitted another way and did not release the feedback."""
    require_sandbox()
    course = make_course(tmp_path / "exchange")
    notebook = submit(course, "cy", release_notebook(course))
    notebook.rename(notebook.with_name(f"{ASSIGNMENT}-Copy1.ipynb"))
    (notebook.parent / "submission_secret.txt").write_text("0123456789abcdef0123456789abcdef")
    out, err = _graded(course)
    assert "missing_notebook" in out, out
    graded = course / "autograded" / "cy" / ASSIGNMENT
    assert (graded / "submission_secret.txt").read_text() == "0123456789abcdef0123456789abcdef"
    assert sorted(p.name for p in graded.iterdir()) == [f"{ASSIGNMENT}.ipynb", "submission_secret.txt", "timestamp.txt"]


def test_a_root_grade_leaves_what_it_writes_to_the_course_folders_owner(tmp_path: Path) -> None:
    """Instructors' review s42 r4, F3: a root `coursekit grade` left autograded/, grade-reports/ and a new gradebook
    owned by root, so the instructor's own `coursekit report`, `nbgrader autograde` regrade or `coursekit grade` of
    those students failed with PermissionError."""
    require_sandbox()
    if os.geteuid() != 0:
        pytest.skip("a root grader's hand-over is tested as root (this run is not root)")
    course = make_course(tmp_path / "owned")
    submit(course, "ada", solved_notebook(course))
    nobody = 65534
    for path in (course, *course.rglob("*")):
        os.chown(path, nobody, nobody, follow_symlinks=False)
    os.chown(course / "gradebook.db", 0, 0)  # as if root had made it (a root `nbgrader generate_assignment`)
    out, err = _graded(course)
    assert "ada" in out and "warning: could not give" not in err, err
    assert (course / "gradebook.db").is_file() and (course / "grade-reports" / ASSIGNMENT / "index.html").is_file()
    left_to_root = sorted(str(p.relative_to(course)) for p in course.rglob("*") if p.lstat().st_uid != nobody)
    assert left_to_root == [], left_to_root
    _graded(course, "--force")
    report = subprocess.run([str(VENV_BIN / "coursekit"), "report", ASSIGNMENT], cwd=course, env=tool_env(),
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    left_to_root = sorted(str(p.relative_to(course)) for p in course.rglob("*") if p.lstat().st_uid != nobody)
    assert left_to_root == [], left_to_root


def test_a_resubmission_newer_than_its_grade_is_regraded_without_force_and_named(tmp_path: Path) -> None:
    """Grader review r4, finding 8 (its resubmit.py): as `nbgrader autograde`, a submission whose timestamp.txt is
    newer than the graded one is graded again without --force; an unchanged one is still skipped."""
    course = _graded_then_resubmitted(tmp_path / "resubmit")
    out, err = _graded(course)
    table = [line.split() for line in out.splitlines()[1:] if line and not line.startswith("reports:")]
    assert [(row[0], float(row[1]), row[3]) for row in table] == [("ada", 7.0, "graded")], out
    assert "1 submission(s) already graded; use --force to regrade them" in err, err
    assert ("1 submission(s) resubmitted after grading (timestamp.txt newer than the graded one), regraded: ada"
            in err), err
    autograded = course / "autograded" / "ada" / ASSIGNMENT / "timestamp.txt"
    assert autograded.read_text() == "2026-11-21 09:00:00.000000 UTC"
    out, err = _graded(course)
    assert "2 submission(s) already graded" in err and "resubmitted" not in err, err


def test_a_huge_timestamp_is_read_no_further_than_a_date_and_never_stops_the_batch(tmp_path: Path) -> None:
    """Grader review r5, finding 4 (its f4_timestamp.sh): a graded submission's 4 GiB (sparse) timestamp.txt made
    `pending()` read all of it, and under a 3 GiB address-space limit `coursekit grade` died (MemoryError) before
    grading anyone. Now at most 201 bytes are read and the file is not a date, so the batch goes on."""
    require_sandbox()
    course = make_course(tmp_path / "huge-timestamp")
    submit(course, "ada", solved_notebook(course))
    submit(course, "bob", solved_notebook(course))
    first = _grade(course)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    stamp = course / "submitted" / "ada" / ASSIGNMENT / "timestamp.txt"
    with stamp.open("r+b") as file:
        file.truncate(4 << 30)
    submit(course, "carol", solved_notebook(course))
    second = _grade(course, wrapper=("prlimit", f"--as={3 << 30}:"))
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "MemoryError" not in err, err
    table = [line.split() for line in out.splitlines()[1:] if line and not line.startswith("reports:")]
    assert [(row[0], float(row[1]), row[3]) for row in table] == [("carol", 10.0, "graded")], out
    assert "2 submission(s) already graded" in err and "resubmitted" not in err, err


def test_a_timestamp_longer_than_a_date_is_not_a_date_and_only_its_head_is_read(tmp_path: Path) -> None:
    """Finding 4's read itself: a 4 GiB sparse timestamp.txt is refused after 201 bytes, a date is still read."""
    from coursekit.grading.driver import MAX_TIMESTAMP_BYTES, _read_timestamp

    huge = tmp_path / "timestamp.txt"
    with huge.open("wb") as file:
        file.write(b"2026-11-21 09:00:00.000000 UTC")
        file.truncate(4 << 30)
    text, problem = _read_timestamp(huge)
    assert text is None and problem is not None and f"over {MAX_TIMESTAMP_BYTES} bytes" in problem
    date = tmp_path / "date.txt"
    date.write_text("2026-11-21 09:00:00.000000 UTC")
    assert _read_timestamp(date) == ("2026-11-21 09:00:00.000000 UTC", None)


def test_the_smallest_accepted_memory_limit_grades_a_correct_notebook_in_full(tmp_path: Path) -> None:
    """Grader review r4, finding 5: at `--memory 512`, which Limits accepts, every submission scored 0 (kernel_died):
    the limit was the whole address space and the kernel starts with about 600 MiB mapped."""
    require_sandbox()
    course = make_course(tmp_path / "memory")
    submit(course, "ada", solved_notebook(course))
    graded = _grade(course, "--memory", "512")
    out, err = graded.communicate(timeout=300)
    assert graded.returncode == 0, err
    table = [line.split() for line in out.splitlines()[1:] if line and not line.startswith("reports:")]
    assert [(row[0], float(row[1]), row[3]) for row in table] == [("ada", 10.0, "graded")], out
