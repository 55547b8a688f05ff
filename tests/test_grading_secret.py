"""The course's grading secret (grader review r4, finding 6): the public specs alone no longer give the inputs."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from coursekit.grading.secret import SECRET_VARIABLE, load_secret, secret_path
from coursekit.grading.spec import _prepare_calls, load_spec, prepare_calls
from coursekit.grading.wire import decode_value
from coursekit.hub.shared_python import first_closed_to_others
from conftest import GRADING_SECRET, REPO_ROOT

pytestmark = pytest.mark.grading

A1_SPEC = REPO_ROOT / "assignments" / "autograde" / "a1_sequence_loss.py"


@pytest.fixture
def course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A course folder with an autograde folder and no secret in the environment."""
    monkeypatch.delenv(SECRET_VARIABLE, raising=False)
    (tmp_path / "autograde").mkdir()
    return tmp_path


def _token_nll_inputs(calls: dict) -> list[list[np.ndarray]]:
    return [[decode_value(a) for a in c.call["args"]] for c in calls["test_token_nll"]]


def _same(first: list[list[np.ndarray]], second: list[list[np.ndarray]]) -> bool:
    return all(len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b)) for a, b in zip(first, second))


def test_the_secret_file_is_created_once_mode_600_and_said_once(course: Path) -> None:
    said = io.StringIO()
    first = load_secret(course, log=said)
    again = load_secret(course, log=said)
    path = secret_path(course)
    assert first == again == path.read_bytes() and len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert said.getvalue().count("created the grading secret") == 1, said.getvalue()
    assert "keep it" in said.getvalue()


def test_the_secret_is_named_in_an_existing_gitignore_that_lacks_it(course: Path) -> None:
    """Instructors' review s42 r6, F2: a course's own autograde/.gitignore was left as it was, so a private course
    kept in its own repository could commit the secret."""
    ignore = course / "autograde" / ".gitignore"
    ignore.write_text("*.pyc")
    load_secret(course, log=io.StringIO())
    assert ignore.read_text().splitlines() == ["*.pyc", "# coursekit's grading secret: private, never committed",
                                               ".grading-secret"]
    ignore.write_text("/.grading-secret\n")
    secret_path(course).unlink()
    load_secret(course, log=io.StringIO())
    assert ignore.read_text() == "/.grading-secret\n"


#: a uid that owns nothing here: the instructor who runs nbgrader, where the grader runs as root.
INSTRUCTOR_UID = 65534


@pytest.fixture
def shared_course(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A course under a folder every uid may enter (pytest's own tmp folders are root's only)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the grader's root creates the secret for another uid")
    monkeypatch.delenv(SECRET_VARIABLE, raising=False)
    top = Path(tempfile.mkdtemp(prefix="coursekit-secret-"))
    top.chmod(0o755)
    (top / "autograde").mkdir(mode=0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top)


def test_a_root_grader_creates_the_secret_owned_by_the_autograde_folders_owner(shared_course: Path) -> None:
    """Grader review r5, finding 5: a root `coursekit grade` left a root-owned 600 secret that the instructor's
    nbgrader could not read. The file now goes to the owner of <course>/autograde/, who can read it."""
    os.chown(shared_course / "autograde", INSTRUCTOR_UID, INSTRUCTOR_UID)
    secret = load_secret(shared_course, log=io.StringIO())
    path = secret_path(shared_course)
    assert (path.stat().st_uid, path.stat().st_gid, stat.S_IMODE(path.stat().st_mode)) == (
        INSTRUCTOR_UID, INSTRUCTOR_UID, 0o600)
    read = subprocess.run(["setpriv", f"--reuid={INSTRUCTOR_UID}", f"--regid={INSTRUCTOR_UID}", "--clear-groups",
                           "--inh-caps=-all", "cat", str(path)], capture_output=True)
    assert read.returncode == 0 and read.stdout == secret, read.stderr


def test_a_secret_the_process_cannot_read_is_an_error_naming_the_file_and_who_must_read_it(
        shared_course: Path) -> None:
    closed = first_closed_to_others(REPO_ROOT)
    if closed is not None:
        pytest.fail(f"uid {INSTRUCTOR_UID} must import coursekit from this checkout, but {closed} (on the way to "
                    f"{REPO_ROOT}) is closed to other users: clone the repository under a folder they may enter")
    load_secret(shared_course, log=io.StringIO())
    code = ("import sys; from pathlib import Path; from coursekit.grading.secret import load_secret\n"
            "try:\n    load_secret(Path(sys.argv[1]))\nexcept PermissionError as error:\n    print(error)")
    env = {k: v for k, v in os.environ.items() if k != SECRET_VARIABLE}
    env["PYTHONPATH"] = str(REPO_ROOT)
    read = subprocess.run(["setpriv", f"--reuid={INSTRUCTOR_UID}", f"--regid={INSTRUCTOR_UID}", "--clear-groups",
                           "--inh-caps=-all", sys.executable, "-c", code, str(shared_course)],
                          capture_output=True, text=True, env=env, cwd="/", timeout=120)
    path = secret_path(shared_course)
    assert f"the grading secret {path} (owner uid 0, mode 600) cannot be read by uid {INSTRUCTOR_UID}" in read.stdout, (
        read.stdout + read.stderr)
    assert "must be able to read it" in read.stdout


def test_two_courses_get_different_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_VARIABLE, raising=False)
    secrets = []
    for name in ("one", "two"):
        (tmp_path / name / "autograde").mkdir(parents=True)
        secrets.append(load_secret(tmp_path / name, log=io.StringIO()))
    assert secrets[0] != secrets[1]


def test_the_secret_file_is_ignored_by_git_in_a_course_repository(course: Path) -> None:
    subprocess.run(["git", "init", "-q", str(course)], check=True)
    load_secret(course, log=io.StringIO())
    ignored = subprocess.run(["git", "check-ignore", "-q", str(secret_path(course))], cwd=course)
    assert ignored.returncode == 0


def test_the_secret_file_is_ignored_by_git_in_this_repository() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", "assignments/autograde/.grading-secret"], cwd=REPO_ROOT)
    assert ignored.returncode == 0


def test_the_environment_overrides_the_file(course: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_VARIABLE, GRADING_SECRET.hex())
    assert load_secret(course) == GRADING_SECRET
    assert not secret_path(course).exists()


@pytest.mark.parametrize(("value", "words"), [("not hex", "must be a hex string"), ("00ff", "at least 16 bytes")])
def test_a_bad_secret_in_the_environment_is_refused_by_name(course: Path, monkeypatch: pytest.MonkeyPatch,
                                                           value: str, words: str) -> None:
    monkeypatch.setenv(SECRET_VARIABLE, value)
    with pytest.raises(ValueError, match=words) as raised:
        load_secret(course)
    assert SECRET_VARIABLE in str(raised.value)


def test_a_short_secret_file_is_refused(course: Path) -> None:
    secret_path(course).write_bytes(b"short")
    with pytest.raises(ValueError, match="at least 16 bytes, got 5"):
        load_secret(course)


def test_a_course_without_an_autograde_folder_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_VARIABLE, raising=False)
    with pytest.raises(FileNotFoundError, match="course_dir must hold an autograde folder"):
        load_secret(tmp_path)


def test_the_same_student_gets_the_same_cases_with_the_same_secret() -> None:
    spec = load_spec(A1_SPEC)
    first = prepare_calls(spec, course="seqloss", student="leaker", secret=GRADING_SECRET)
    again = prepare_calls(spec, course="seqloss", student="leaker", secret=GRADING_SECRET)
    assert _same(_token_nll_inputs(first), _token_nll_inputs(again))


def test_another_secret_draws_other_cases() -> None:
    spec = load_spec(A1_SPEC)
    first = prepare_calls(spec, course="seqloss", student="leaker", secret=GRADING_SECRET)
    other = prepare_calls(spec, course="seqloss", student="leaker", secret=bytes(32))
    assert not _same(_token_nll_inputs(first), _token_nll_inputs(other))


def test_the_public_seed_alone_no_longer_rebuilds_a_students_cases() -> None:
    """The reviewer's public_seed.py: the spec file's SEED, the course id and the student id, without the secret."""
    spec = load_spec(A1_SPEC)
    graded = prepare_calls(spec, course="seqloss", student="leaker", secret=GRADING_SECRET)
    material = "\x1f".join([str(spec.seed), "seqloss", spec.assignment, "leaker"]).encode()
    public_seed = int.from_bytes(hashlib.sha256(material).digest()[:16], "little")
    rebuilt = _prepare_calls(spec, public_seed, public_seed)
    # The probe can fail: the same derivation keyed with nothing but public data is what the grader used before.
    assert _same(_token_nll_inputs(rebuilt), _token_nll_inputs(_prepare_calls(spec, public_seed, public_seed)))
    assert not _same(_token_nll_inputs(graded), _token_nll_inputs(rebuilt))
    with pytest.raises(TypeError, match="secret must be non-empty bytes"):
        prepare_calls(spec, course="seqloss", student="leaker", secret=b"")
