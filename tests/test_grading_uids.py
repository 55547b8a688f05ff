"""The sandbox uids' leases (:mod:`coursekit.grading.uids`) live in a folder that only the grader's user controls.

Grader review r11, finding 6: the lock files were in ``/tmp/coursekit-grade-uids``, made with ``exist_ok`` and
opened by root with ``open(..., "a+")``. A local user who made that folder first could hold every lease (no
submission could run), swap a locked file for a fresh one (two sandboxes on one uid, and one's release killing
the other's kernel), or plant symlinks through which root creates files anywhere.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from coursekit.grading import uids
from coursekit.grading.uids import UID_BASE, UID_COUNT, UID_LOCK_DIR, LockDirectoryError, UidLease

pytestmark = pytest.mark.grading

#: the uid that owns the planted folder: ``nobody``, as an unprivileged local user.
OTHER_UID = 65534


@pytest.fixture(autouse=True)
def no_kills(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The uids a lease's release would kill: recorded, not killed (another test's grader may hold the same uid in
    the real folder and run a kernel as it)."""
    killed: list[int] = []
    monkeypatch.setattr(uids, "kill_uid", killed.append)
    return killed


def _refusal(path: Path, found: str) -> str:
    """The start of the refusal for the folder ``path`` holding ``found``, as a regular expression."""
    return (rf"^refusing to lease sandbox uids: {path} is {found}; expected a real directory \(not a symlink\) "
            rf"owned by uid {os.geteuid()} \(this grader\) with mode 0700 \(no access for group or others\)\. ")


def test_leases_make_a_private_folder_and_never_share_a_uid(tmp_path: Path, no_kills: list[int]) -> None:
    folder = tmp_path / "leases"
    first, second = UidLease(folder), UidLease(folder)
    assert first.uid != second.uid and {first.uid, second.uid} <= set(range(UID_BASE, UID_BASE + UID_COUNT))
    info = os.lstat(folder)
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
    lock = os.lstat(folder / f"{first.uid}.lock")
    assert stat.S_ISREG(lock.st_mode) and stat.S_IMODE(lock.st_mode) & 0o077 == 0
    first.release()
    assert no_kills == [first.uid]
    # This thread tries the uids in the same order each time: the freed one comes first again.
    again = UidLease(folder)
    assert again.uid == first.uid
    again.release()
    second.release()


def test_a_folder_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a folder to another user")
    folder = tmp_path / "leases"
    folder.mkdir(mode=0o700)
    os.chown(folder, OTHER_UID, OTHER_UID)
    with pytest.raises(LockDirectoryError, match=_refusal(folder, f"a directory owned by uid {OTHER_UID}")):
        UidLease(folder)
    assert list(folder.iterdir()) == []


def test_a_folder_other_users_can_open_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "leases"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(LockDirectoryError, match=_refusal(folder, "a directory of mode 0777")):
        UidLease(folder)
    assert list(folder.iterdir()) == []


def test_a_symlink_in_place_of_the_folder_is_refused_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    folder = tmp_path / "leases"
    folder.symlink_to(target)
    with pytest.raises(LockDirectoryError, match=_refusal(folder, f"a symlink to '{target}'")):
        UidLease(folder)
    assert list(target.iterdir()) == []


def test_a_file_in_place_of_the_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "leases"
    folder.write_text("")
    with pytest.raises(LockDirectoryError, match=_refusal(folder, "not a directory")):
        UidLease(folder)


def test_a_symlinked_lock_file_is_refused_and_nothing_is_made_through_it(tmp_path: Path) -> None:
    folder = tmp_path / "leases"
    folder.mkdir(mode=0o700)
    victims = tmp_path / "victims"
    victims.mkdir()
    for uid in range(UID_BASE, UID_BASE + UID_COUNT):
        (folder / f"{uid}.lock").symlink_to(victims / f"{uid}")
    with pytest.raises(LockDirectoryError, match=rf"^refusing to lease sandbox uids: the lock file {folder}/\d+\.lock "
                                                 r"is a symlink; expected a regular file, which only the grader makes"):
        UidLease(folder)
    assert list(victims.iterdir()) == []


def test_the_pages_name_the_leases_folder(repo_root: Path) -> None:
    assert UID_LOCK_DIR == Path("/run/coursekit-grade-uids")
    for page in ("README.md", "book/for_instructors.md"):
        text = " ".join((repo_root / page).read_text().split())
        assert f"`{UID_LOCK_DIR}`" in text, f"{page} does not name the uid leases' folder"
        assert f"({UID_BASE} to {UID_BASE + UID_COUNT - 1}" in text, f"{page} does not give the uids' range"


@pytest.mark.slow
@pytest.mark.a1
def test_coursekit_grade_refuses_to_start_when_the_leases_folder_is_unsafe(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """One clear refusal at start, rather than every submission failing alone as a ``grader_error``."""
    from adversarial.course import ASSIGNMENT, make_course, solved_notebook, submit
    from conftest import require_sandbox
    from coursekit.cli import main
    from coursekit.grading import driver

    if os.geteuid() != 0:
        pytest.skip("only a root grader leases uids")
    require_sandbox()
    course = make_course(tmp_path / "course")
    submit(course, "alice", solved_notebook(course))
    planted = tmp_path / "leases"
    planted.mkdir()
    planted.chmod(0o777)
    monkeypatch.setattr(driver, "open_lock_directory", lambda: uids.open_lock_directory(planted))
    assert main(["grade", ASSIGNMENT, "--course-dir", str(course), "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert f"coursekit grade: refusing to lease sandbox uids: {planted} is a directory of mode 0777;" in err, err
    assert not (course / "grade-reports" / ASSIGNMENT / "alice.json").exists()
