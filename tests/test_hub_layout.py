"""coursekit.hub's fast parts: each role's configuration, and sharing the Python with other users.

The configuration folders are read the way the single-user servers read them
(``JUPYTER_CONFIG_PATH`` first), through nbgrader's, jupyter_server's and
jupyterlab_server's own loaders; tests/test_hub.py checks the same in a browser.

:mod:`coursekit.hub.shared_python` is checked on folders made for the test (a closed
folder of mode 700 holding an "installation"): its decisions, and its mount namespace,
really entered (as root) by the unprivileged ``nobody``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import in_ci
from coursekit.hub import __main__ as hub_main
from coursekit.hub.layout import HubLayout, make_folders, write_instructor_config, write_students_config
from coursekit.hub.machine import free_loopback_port, free_loopback_ports
from coursekit.hub.shared_python import ClosedToOthersError, SharedPython, python_to_share


@pytest.fixture()
def layout(tmp_path: Path) -> HubLayout:
    hub = HubLayout(tmp_path / "hub")
    make_folders(hub)
    return hub


def nbgrader_config_seen_with(folder: Path, monkeypatch: pytest.MonkeyPatch, cwd: Path):
    """The config nbgrader's apps load with ``folder`` as JUPYTER_CONFIG_PATH, started in ``cwd``."""
    from nbgrader.apps import NbGrader

    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(folder))
    monkeypatch.chdir(cwd)
    app = NbGrader()
    app.load_config_file()
    return app.config


def test_exchange_is_world_writable_with_the_sticky_bit_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        hub = HubLayout(tmp_path / "hub")
        make_folders(hub)
    finally:
        os.umask(old)
    assert stat.S_IMODE(hub.exchange.stat().st_mode) == 0o777 | stat.S_ISVTX
    assert stat.S_IMODE(hub.students_config.stat().st_mode) == 0o755


def test_students_nbgrader_uses_the_hubs_exchange_and_the_course_id(layout, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("COURSEKIT_EXCHANGE", raising=False)
    monkeypatch.delenv("COURSEKIT_COURSE_ID", raising=False)
    write_students_config(layout)
    config = nbgrader_config_seen_with(layout.students_config, monkeypatch, tmp_path)
    assert config.Exchange.root == str(layout.exchange)
    assert config.CourseDirectory.course_id == "seqloss"


def test_students_server_loads_the_assignment_list_but_not_the_formgrader(layout, monkeypatch) -> None:
    from jupyter_core.paths import jupyter_config_path
    from jupyter_server.extension.config import ExtensionConfigManager

    write_students_config(layout)
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(layout.students_config))
    # what ServerApp.find_server_extensions reads
    extensions = ExtensionConfigManager(read_config_path=jupyter_config_path()).get_jpserver_extensions()
    assert extensions["nbgrader.server_extensions.formgrader"] is False
    assert extensions["nbgrader.server_extensions.assignment_list"] is True


def test_students_jupyterlab_has_no_formgrader_or_create_assignment_plugin(layout, monkeypatch) -> None:
    from jupyter_core.paths import jupyter_path
    from jupyterlab_server.config import get_page_config

    write_students_config(layout)
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(layout.students_config))
    disabled = get_page_config(jupyter_path("labextensions"))["disabledExtensions"]
    assert {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment"} <= set(disabled)
    assert "@jupyter/nbgrader:assignment-list" not in disabled


def test_instructors_nbgrader_is_rooted_at_the_course_with_the_hubs_exchange(layout, monkeypatch, tmp_path) -> None:
    course = tmp_path / "seqloss"
    course.mkdir()
    monkeypatch.setenv("COURSEKIT_EXCHANGE", str(layout.exchange))
    write_instructor_config(layout, course)
    config = nbgrader_config_seen_with(layout.instructor_config, monkeypatch, tmp_path)
    assert config.CourseDirectory.root == str(course)
    assert config.Exchange.root == str(layout.exchange)
    assert config.ExchangeFactory.release_feedback == "coursekit.course.exchange.ReleaseFeedbackToExchangeStudents"


def test_instructors_server_may_be_framed_by_the_hubs_own_pages(layout, monkeypatch, tmp_path) -> None:
    from jupyter_server.serverapp import ServerApp

    write_instructor_config(layout, tmp_path)
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(layout.instructor_config))
    app = ServerApp()
    app.load_config_file()
    assert app.config.ServerApp.tornado_settings["headers"]["Content-Security-Policy"] == "frame-ancestors 'self'"


@pytest.fixture()
def machine() -> Iterator[Path]:
    """A folder every user may enter (pytest's own temporary folders are closed to others), removed afterwards.

    Inside: ``open/`` (mode 755, a virtual environment's stand-in), ``closed/`` (mode 700, like
    ``/root``) holding ``closed/secret`` and ``closed/lib/python/`` (the installation: a
    ``bin/python`` script that prints a line of ``lib/stdlib.txt``).
    """
    root = Path(tempfile.mkdtemp(prefix="coursekit-share-", dir="/tmp"))
    try:
        root.chmod(0o755)
        (root / "open").mkdir(mode=0o755)
        installation = root / "closed" / "lib" / "python"
        (installation / "bin").mkdir(parents=True)
        for folder in (root / "closed" / "lib", installation, installation / "bin"):
            folder.chmod(0o755)
        (root / "closed").chmod(0o700)
        (root / "closed" / "secret").write_text("root's own\n")
        (installation / "stdlib.txt").write_text("the standard library\n")
        (installation / "stdlib.txt").chmod(0o644)
        interpreter = installation / "bin" / "python"
        interpreter.write_text(f"#!/bin/sh\nexec cat {installation / 'stdlib.txt'}\n")
        interpreter.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root)


def test_nothing_is_shared_when_every_user_reaches_the_python_and_the_environment(machine: Path) -> None:
    (machine / "closed").chmod(0o755)
    installation = machine / "closed" / "lib" / "python"
    assert python_to_share(installation, installation / "bin" / "python", [machine / "open"]) is None


def test_a_python_under_a_closed_folder_is_shared_when_the_environment_is_open(machine: Path) -> None:
    installation = machine / "closed" / "lib" / "python"
    share = python_to_share(installation, installation / "bin" / "python", [machine / "open"])
    assert share == SharedPython(installation=installation, closed=machine / "closed")
    assert str(machine / "closed") in share.describe() and "\n" not in share.describe()


def test_an_environment_in_the_closed_folder_is_refused_naming_the_folder(machine: Path) -> None:
    installation = machine / "closed" / "lib" / "python"
    with pytest.raises(ClosedToOthersError, match=f"cannot enter or read {machine / 'closed'}:"):
        python_to_share(installation, installation / "bin" / "python", [machine / "open", installation / "venv"])


@pytest.mark.parametrize("closed_part", ["installation", "bin"])
def test_a_closed_installation_or_a_closed_folder_inside_it_is_refused(machine: Path, closed_part: str) -> None:
    (machine / "closed").chmod(0o755)
    installation = machine / "closed" / "lib" / "python"
    closed = installation if closed_part == "installation" else installation / "bin"
    closed.chmod(0o700)
    with pytest.raises(ClosedToOthersError, match=f"cannot enter or read {closed}:"):
        python_to_share(installation, installation / "bin" / "python", [machine / "open"])


def test_an_interpreter_outside_its_installation_is_refused(machine: Path) -> None:
    installation = machine / "closed" / "lib" / "python"
    outside = machine / "closed" / "python"
    shutil.copy2(installation / "bin" / "python", outside)
    with pytest.raises(ClosedToOthersError, match="make .venv from a Python every user can run"):
        python_to_share(installation, outside, [machine / "open"])


def host_mount_points() -> set[str]:
    return {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}


def test_in_the_shared_namespace_another_user_runs_the_python_and_sees_nothing_else(machine: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        if in_ci():
            pytest.fail("the mount namespace needs root and unshare (required under CI=true)")
        pytest.skip("the mount namespace needs root and unshare")
    installation = machine / "closed" / "lib" / "python"
    share = SharedPython(installation=installation, closed=machine / "closed")
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    before = host_mount_points()
    outside = subprocess.run([*as_nobody, str(installation / "bin" / "python")], capture_output=True, text=True)
    assert outside.returncode != 0, "the test's closed folder is closed to nobody outside the namespace"

    script = (f'{installation / "bin" / "python"}; ls -A {machine / "closed"}; ls -A {machine / "closed" / "lib"}; '
              f'umask; touch {installation / "new"} 2>/dev/null && echo writable || echo read-only')
    # a umask of 077 must not close the folders the namespace makes, and must reach the command unchanged
    inside = subprocess.run(share.command([*as_nobody, "sh", "-c", script]), capture_output=True, text=True,
                            check=True, umask=0o077)
    assert inside.stdout.splitlines() == ["the standard library", "lib", "python", "0077", "read-only"]

    as_root = subprocess.run(share.command(["sh", "-c", f"touch {installation / 'new'}"]), capture_output=True,
                             text=True)
    assert as_root.returncode != 0 and "Read-only file system" in as_root.stderr
    assert host_mount_points() == before, "no mount is left on the machine"
    assert sorted(p.name for p in (machine / "closed").iterdir()) == ["lib", "secret"]


def test_the_hub_refuses_a_folder_its_namespace_would_hide(machine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    share = SharedPython(installation=machine / "closed" / "lib" / "python", closed=machine / "closed")
    monkeypatch.setattr(hub_main, "this_python_to_share", lambda: share)
    monkeypatch.setattr(hub_main.os, "geteuid", lambda: 0)
    monkeypatch.setattr(hub_main, "foreign_accounts", lambda: [])
    from conftest import REPO_ROOT

    proxy = shutil.which("true")
    args = argparse.Namespace(port=free_loopback_port(), dir=machine / "closed" / "hub",
                              proxy=Path(proxy), assignments=REPO_ROOT / "assignments")
    venv_bin = Path(hub_main.sys.executable).parent
    assert hub_main.refusal_to_start(args, venv_bin) == (
        f"--dir: {machine / 'closed' / 'hub'} is under {machine / 'closed'}, which the hub's mount namespace hides; "
        "choose a path outside it", None)
    args.dir = machine / "open" / "hub"
    assert hub_main.refusal_to_start(args, venv_bin) == (None, share)
    monkeypatch.setenv("COURSEKIT_COURSE_ID", "../x")  # hub review s45 r2, L6: the settings are checked here too
    assert hub_main.refusal_to_start(args, venv_bin)[0].startswith("$COURSEKIT_COURSE_ID must be a folder name")
    monkeypatch.delenv("COURSEKIT_COURSE_ID")
    monkeypatch.setenv(hub_main.SHARED_ENV, str(share.installation))
    assert "still cannot enter" in hub_main.refusal_to_start(args, venv_bin)[0]


def test_the_hubs_internal_ports_differ_from_each_other_and_from_its_public_port() -> None:
    # Drawn one after the other, they could be equal, or the public port. In a rehearsal of .ci/run on 2026-12-02
    # the hub exited while its proxy asked itself for error pages, as it does when the hub's port is the proxy's.
    for _ in range(200):
        public = free_loopback_port()
        ports = free_loopback_ports(2, besides=public)
        assert len(set(ports)) == 2 and public not in ports, (public, ports)


def test_the_hubs_course_copy_leaves_out_a_grading_secret_already_in_assignments(tmp_path, monkeypatch) -> None:
    """Instructors' review s42 r1, L6: `make hub` copied `autograde/` whole, so a secret that the repository's
    course had made (by `nbgrader validate`, say) went onto the hub, where grading runs students' code unsandboxed."""
    from coursekit.hub import layout as hub_layout
    from conftest import REPO_ROOT

    assignments = tmp_path / "assignments"
    assignments.mkdir()
    for name in hub_layout.COURSE_FILES:
        source = REPO_ROOT / "assignments" / name
        if source.is_dir():
            shutil.copytree(source, assignments / name, ignore=shutil.ignore_patterns(".grading-secret"))
        else:
            shutil.copy2(source, assignments / name)
    (assignments / "autograde" / ".grading-secret").write_bytes(b"\x01" * 32)
    home = tmp_path / "home"
    home.mkdir()
    account = argparse.Namespace(pw_dir=str(home), pw_uid=os.getuid(), pw_gid=os.getgid())
    monkeypatch.setattr(hub_layout.pwd, "getpwnam", lambda user: account if user == "instructor" else None)
    course = hub_layout.copy_course(assignments, "instructor", "seqloss")
    assert course == home / "seqloss"
    assert not (course / "autograde" / ".grading-secret").exists()
    specs = sorted(p.name for p in (assignments / "autograde").glob("a*.py"))
    assert len(specs) == 6 and sorted(p.name for p in (course / "autograde").glob("a*.py")) == specs
    assert (course / "autograde" / ".gitignore").is_file() and (course / "nbgrader_config.py").is_file()


def test_every_account_gets_a_password_of_its_own_kept_for_root_alone(layout: HubLayout) -> None:
    """Hub review s45 r1, S1: the four accounts shared one password, so every student could log in as the
    instructor (the Formgrader, the solutions, the gradebook)."""
    from coursekit.hub.accounts import ACCOUNTS

    passwords = hub_main.hub_passwords(layout, {})
    assert sorted(passwords) == sorted(ACCOUNTS) and len(set(passwords.values())) == len(ACCOUNTS)
    assert stat.S_IMODE(layout.passwords.stat().st_mode) == 0o600
    assert hub_main.hub_passwords(layout, {}) == passwords, "a restart keeps every login"
    shared = hub_main.hub_passwords(layout, {"HUB_PASSWORD": "try-alone"})
    assert set(shared.values()) == {"try-alone"}
    assert hub_main.hub_passwords(layout, {}) == passwords, "$HUB_PASSWORD does not replace the kept passwords"


def test_a_bad_hub_port_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Hub review s45 r1, M5: HUB_PORT=abc was a ValueError traceback; --port 70000 an OverflowError."""
    for env, argv in (("abc", []), ("", ["--port", "70000"]), ("8010", ["--port", "0"])):
        monkeypatch.setenv("HUB_PORT", env)
        with pytest.raises(SystemExit) as exit_info:
            hub_main.build_parser().parse_args(argv)
        assert exit_info.value.code == 2
        assert "must be a port number from 1 to 65535 (--port, or $HUB_PORT)" in capsys.readouterr().err
    monkeypatch.setenv("HUB_PORT", "8010")
    assert hub_main.build_parser().parse_args([]).port == 8010
    monkeypatch.setenv("HUB_PORT", "")
    assert hub_main.build_parser().parse_args([]).port == 8000


@pytest.mark.skipif(os.geteuid() != 0, reason="the hub runs as root: its folder's ancestors must be root's")
def test_the_hub_refuses_settings_it_would_misuse_before_changing_anything(tmp_path: Path, monkeypatch) -> None:
    """Hub review s45 r1, M5-M7: a course id used as a path by root, a folder such as /tmp re-moded, a password
    with a line break, a wrong --assignments found only after the accounts were made."""
    from conftest import REPO_ROOT

    monkeypatch.setattr(hub_main, "foreign_accounts", lambda: [])
    args = argparse.Namespace(dir=tmp_path / "hub", assignments=REPO_ROOT / "assignments")
    assert hub_main.refusal_of_settings(args, {}) is None
    assert "$HUB_PASSWORD must be a single line" in hub_main.refusal_of_settings(args, {"HUB_PASSWORD": "a\nb"})
    for bad in ("../x", "a/b", ".hidden"):
        refusal = hub_main.refusal_of_settings(args, {"COURSEKIT_COURSE_ID": bad})
        assert refusal.startswith("$COURSEKIT_COURSE_ID must be a folder name") and repr(bad) in refusal
    assert hub_main.refusal_of_settings(args, {"COURSEKIT_COURSE_ID": "seqloss-2027"}) is None
    wrong = argparse.Namespace(dir=args.dir, assignments=tmp_path)
    assert hub_main.refusal_of_settings(wrong, {}).startswith(f"--assignments: {tmp_path} must be the course folder")

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "someone's file").write_text("x")
    refusal = hub_main.refusal_of_settings(argparse.Namespace(dir=shared, assignments=args.assignments), {})
    assert refusal.startswith(f"--dir: {shared} exists, is not empty and is not a hub's folder")
    link = tmp_path / "link"
    link.symlink_to(shared)
    assert "must be a folder (not a symlink" in hub_main.refusal_of_settings(
        argparse.Namespace(dir=link, assignments=args.assignments), {})
    (shared / "jupyterhub_config.py").write_text("")
    assert hub_main.refusal_of_settings(argparse.Namespace(dir=shared, assignments=args.assignments), {}) is None
    # hub review s45 r2, M3: a start that failed after make_folders leaves a hub's folder the next start accepts
    interrupted = HubLayout(tmp_path / "interrupted")
    make_folders(interrupted)
    hub_main.hub_passwords(interrupted, {})
    assert not interrupted.hub_config.exists()
    assert hub_main.refusal_of_settings(argparse.Namespace(dir=interrupted.root, assignments=args.assignments), {}) \
        is None
    # hub review s45 r7, M2: a --dir inside a folder another user may change could be swapped for theirs
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        os.chown(theirs, 65534, 65534)
        refusal = hub_main.refusal_of_settings(argparse.Namespace(dir=theirs / "hub", assignments=args.assignments), {})
        assert refusal.startswith(f"--dir: {theirs / 'hub'} lies in {theirs}, which another user owns"), refusal
    squatted = interrupted.exchange / "seqloss"
    squatted.mkdir()
    refusal = hub_main.refusal_of_settings(argparse.Namespace(dir=interrupted.root, assignments=args.assignments), {})
    assert refusal.startswith(f"the exchange's course folder {squatted} does not belong to the hub's "
                              "instructor"), refusal
    # hub review s45 r3, L4: anyone may drop the marker into a world-writable folder such as /tmp
    open_to_all = tmp_path / "open-to-all"
    open_to_all.mkdir()
    open_to_all.chmod(0o1777)
    HubLayout(open_to_all).marker.touch()
    refusal = hub_main.refusal_of_settings(argparse.Namespace(dir=open_to_all, assignments=args.assignments), {})
    assert refusal.startswith(f"--dir: {open_to_all} exists and others may write in it (mode 1777)"), refusal
    if os.geteuid() == 0:
        os.chown(shared, 65534, 65534)
        assert "belongs to uid 65534" in hub_main.refusal_of_settings(
            argparse.Namespace(dir=shared, assignments=args.assignments), {})

    monkeypatch.setattr(hub_main, "foreign_accounts", lambda: ["student1"])
    assert "the users ['student1'] exist and were not created by the hub" in hub_main.refusal_of_settings(args, {})


def test_an_account_the_hub_did_not_create_is_never_taken_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub review s45 r1, M1: an existing user `student1` had its password replaced and the course copied in."""
    from coursekit.hub import accounts

    def no_command(*args, **kwargs):
        raise AssertionError(f"ran {args[0]} on an account the hub did not create")

    assert accounts.foreign_accounts(("root", "no-such-user-here")) == ["root"]
    monkeypatch.setattr(accounts.subprocess, "run", no_command)
    with pytest.raises(ValueError, match=r"name: the user 'root' exists and was not created by the hub"):
        accounts.ensure_account("root", "secret")
    accounts.lock_account("root")  # closing the hub's accounts never touches another's


@pytest.mark.skipif(os.geteuid() != 0, reason="chowns a folder to nobody, as root")
def test_the_course_exchange_is_made_for_the_instructor_and_a_squatted_one_is_refused(layout: HubLayout) -> None:
    """Hub review s45 r1, M3: a student who logged in first could create exchange/<course> in the world-writable
    exchange; the instructor's release then stopped, and students fetched what that folder held."""
    from coursekit.hub.layout import make_course_exchange

    course = make_course_exchange(layout, "seqloss", "root")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (course, course / "outbound", course / "inbound")}
    assert modes == {"seqloss": 0o755, "outbound": 0o755, "inbound": 0o2733}
    assert make_course_exchange(layout, "seqloss", "root") == course, "a second start keeps it"
    squatted = layout.exchange / "other"
    squatted.mkdir()
    os.chown(squatted, 65534, 65534)
    with pytest.raises(ValueError, match=r"must belong to root, got one of uid 65534"):
        make_course_exchange(layout, "other", "root")


def test_the_hubs_database_is_root_s_alone_and_terminals_get_the_course_environment(layout, monkeypatch,
                                                                                     tmp_path) -> None:
    """Hub review s45 r1, L5 and M4: jupyterhub.sqlite (OAuth codes) was readable by every student; a server whose
    output is not a terminal started `bash -l`, whose /etc/profile drops the course's environment from PATH."""
    from jupyter_server.serverapp import ServerApp

    assert stat.S_IMODE(layout.database.stat().st_mode) == 0o600
    write_students_config(layout)
    write_instructor_config(layout, tmp_path)
    for folder in (layout.students_config, layout.instructor_config):
        monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(folder))
        app = ServerApp()
        app.load_config_file()
        assert app.config.ServerApp.terminado_settings == {"shell_command": ["/bin/bash"]}, folder


def test_the_passwords_are_printed_only_to_a_terminal(layout: HubLayout, capsys) -> None:
    """Hub review s45 r2, M2: every user's server inherits the hub's output; written to a file, the printed
    passwords could be read back by a student through /proc/self/fd/1."""
    passwords = hub_main.hub_passwords(layout, {})
    hub_main.print_passwords(layout, passwords, shared=False, terminal=False)
    out = capsys.readouterr().out
    assert str(layout.passwords) in out and not any(password in out for password in passwords.values())
    hub_main.print_passwords(layout, {name: "shared-pw-7" for name in passwords}, shared=True, terminal=False)
    assert "shared-pw-7" not in capsys.readouterr().out
    hub_main.print_passwords(layout, passwords, shared=False, terminal=True)
    out = capsys.readouterr().out
    assert all(password in out for password in passwords.values())


def test_the_hubs_mark_is_the_full_name_a_user_cannot_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub review s45 r2, L1: `chfn -r 1` turns the comment into "coursekit hub,1,,", which made the account look
    foreign; chfn lets a user change the other fields, not the full name (login.defs' CHFN_RESTRICT)."""
    from coursekit.hub import accounts

    for comment, ours in (("coursekit hub", True), ("coursekit hub,1,,", True), ("Ada,1,,", False), ("", False)):
        monkeypatch.setattr(accounts.pwd, "getpwnam", lambda name, comment=comment: argparse.Namespace(pw_gecos=comment))
        assert accounts.made_by_the_hub("student1") is ours, comment


def test_a_start_opens_the_account_the_last_stop_expired_before_giving_its_password(monkeypatch, tmp_path) -> None:
    """Hub review s45 r3, L5: without `usermod --expiredate ""` at start, every login after the first stop fails."""
    from coursekit.hub import accounts

    ran = []
    monkeypatch.setattr(accounts, "account_exists", lambda name: True)
    monkeypatch.setattr(accounts, "made_by_the_hub", lambda name: True)
    monkeypatch.setattr(accounts.pwd, "getpwnam", lambda name: argparse.Namespace(pw_dir=str(tmp_path)))
    monkeypatch.setattr(accounts.subprocess, "run", lambda command, **kwargs: ran.append(command))
    assert accounts.ensure_account("student1", "pw") is False
    assert ran == [["usermod", "--expiredate", "", "student1"], ["chpasswd"]]
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    ran.clear()
    accounts.lock_account("student1")
    assert ran == [["usermod", "--lock", "--expiredate", "1", "student1"]]


def test_a_second_hub_on_the_machine_is_refused(monkeypatch, tmp_path) -> None:
    """Hub review s45 r3, M2: a second `make hub` shared the first's accounts (and closed them under it at its stop)."""
    monkeypatch.setattr(hub_main, "HUB_LOCK", str(tmp_path / "run" / "coursekit-hub.lock"))
    first = hub_main.one_hub_per_machine()
    assert first is not None and hub_main.one_hub_per_machine() is None
    os.close(first)
    second = hub_main.one_hub_per_machine()
    assert second is not None
    os.close(second)


def test_what_an_account_still_runs_is_killed_until_nothing_is_left(monkeypatch) -> None:
    """Hub review s45 r4, M2: one pass over /proc let a process that started another between the reading and the
    kill survive the hub's stop."""
    from coursekit.hub import accounts

    rounds = iter([[101, 102], [103], []])  # 103 was started by 101 or 102 before they died
    killed = []
    monkeypatch.setattr(accounts, "account_exists", lambda name: True)
    monkeypatch.setattr(accounts, "made_by_the_hub", lambda name: name == "student1")
    monkeypatch.setattr(accounts, "processes_of", lambda name: next(rounds))
    monkeypatch.setattr(accounts.os, "kill", lambda pid, signum: killed.append((pid, signum)))
    monkeypatch.setattr(accounts.time, "sleep", lambda seconds: None)
    assert accounts.stop_processes_of("student1") == [101, 102, 103]
    assert killed == [(101, signal.SIGKILL), (102, signal.SIGKILL), (103, signal.SIGKILL)]
    assert accounts.stop_processes_of("someone") == [], "never another user's"


@pytest.mark.skipif(os.geteuid() != 0, reason="the stale proxy is root's, as the hub's is")
def test_a_proxy_left_by_a_crashed_hub_is_stopped_and_nothing_else(tmp_path: Path) -> None:
    """Hub review s45 r5, M1: the start drops proxy.pid, so JupyterHub no longer stops a proxy that outlived a
    crash; the hub does, where the recorded process is still a configurable-http-proxy."""
    proxy_dir = tmp_path / "bin"
    proxy_dir.mkdir()
    fake_proxy = proxy_dir / "configurable-http-proxy"
    fake_proxy.write_text("#!/bin/sh\nwhile :; do sleep 1; done\n")  # no exec: the shell keeps its command line
    fake_proxy.chmod(0o755)
    pid_file = tmp_path / "proxy.pid"
    other = subprocess.Popen(["sleep", "60"])
    proxy = subprocess.Popen(["/bin/sh", str(fake_proxy)])  # its command line ends in configurable-http-proxy
    try:
        # hub review s45 r7, M1: a process's command line is empty for a moment after it starts
        deadline = time.monotonic() + 10
        while b"configurable-http-proxy" not in Path(f"/proc/{proxy.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the fake proxy never showed its command line"
            time.sleep(0.01)
        pid_file.write_text(f"{other.pid}\n")
        assert hub_main.stop_stale_proxy(pid_file) is None and other.poll() is None, "another process is left alone"
        pid_file.write_text(f"{proxy.pid}\n")
        assert hub_main.stop_stale_proxy(pid_file) == proxy.pid
        assert proxy.wait(timeout=10) == -signal.SIGKILL
        pid_file.write_text("not a number\n")
        assert hub_main.stop_stale_proxy(pid_file) is None
    finally:
        for process in (other, proxy):
            process.kill()
            process.wait()


def test_the_start_stops_a_stale_proxy_before_it_checks_the_port(monkeypatch, tmp_path, capsys) -> None:
    """Hub review s45 r6, S1: the port was checked first, so a proxy that outlived a crash (holding the hub's
    port, routing it to a dead hub's port anyone could take) made every later start refuse, and kept running."""
    steps = []
    monkeypatch.setattr(hub_main, "refusal_to_start", lambda args, venv_bin: (None, None))
    monkeypatch.setattr(hub_main, "one_hub_per_machine", lambda: steps.append("lock") or 3)
    monkeypatch.setattr(hub_main, "claim_folder", lambda folder: steps.append("folder") or None)
    monkeypatch.setattr(hub_main, "stop_stale_proxy", lambda pid_file: steps.append("stale proxy") or None)
    monkeypatch.setattr(hub_main, "port_in_use", lambda port: steps.append("port") or True)
    monkeypatch.setattr(hub_main, "ensure_account", lambda *args: steps.append("accounts"))
    monkeypatch.setattr(hub_main, "close_accounts", lambda: steps.append("close"))
    assert hub_main.main(["--port", "8123", "--dir", str(tmp_path / "hub")]) == 2
    assert steps[:3] == ["lock", "folder", "stale proxy"] and set(steps[3:]) == {"port"}, \
        f"the port is checked after the stale proxy is stopped, and no account is touched after a refusal: {steps}"
    assert "--port: something already listens on 127.0.0.1:8123" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="chowns a folder to nobody, as root")
def test_a_hub_folder_another_user_made_after_the_checks_is_refused(tmp_path: Path, monkeypatch) -> None:
    """Hub review s45 r8, M1 and M2: a --dir whose parent is missing crashed; one that did not exist yet, in a
    shared folder such as /tmp, could be made by another user between the checks and its use."""
    from conftest import REPO_ROOT

    monkeypatch.setattr(hub_main, "foreign_accounts", lambda: [])
    monkeypatch.setattr(hub_main, "groups_without_their_user", lambda: [])
    missing_parents = argparse.Namespace(dir=tmp_path / "missing" / "parent" / "hub",
                                         assignments=REPO_ROOT / "assignments")
    assert hub_main.refusal_of_settings(missing_parents, {}) is None, "root makes the missing parents"
    deep = missing_parents.dir
    assert hub_main.claim_folder(deep) is None and deep.is_dir() and deep.stat().st_uid == 0
    assert hub_main.claim_folder(deep) is None, "the hub's own folder, found again"
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    refusal = hub_main.claim_folder(theirs)
    assert refusal.startswith(f"--dir: {theirs} is not a folder that only root may change (owner uid 65534"), refusal


@pytest.mark.skipif(os.geteuid() != 0, reason="the hub's folder is root's")
def test_a_link_put_at_the_hubs_folder_after_the_checks_is_refused_not_followed(tmp_path: Path) -> None:
    """Hub review s45 r9, M1: the folder was resolved after the checks, so a link another user put at --dir in
    /tmp led the hub to re-mode and fill the link's target (a root folder, say)."""
    target = tmp_path / "roots-folder"
    target.mkdir(mode=0o700)
    link = tmp_path / "hub"
    link.symlink_to(target)
    refusal = hub_main.claim_folder(link)
    assert refusal is not None and refusal.startswith(f"--dir: {link} is not a folder that only root may change")
    assert stat.S_IMODE(target.stat().st_mode) == 0o700 and not any(target.iterdir()), "the target is untouched"
    old = os.umask(0o077)
    try:
        assert hub_main.claim_folder(tmp_path / "a" / "b" / "hub") is None
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o755, "missing parents are made 755 whatever the umask"


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the copy as another user")
def test_the_course_is_copied_with_the_instructors_own_rights(monkeypatch) -> None:
    """Hub review s45 r9, S1: root copied the course into the instructor's home and chowned what it found there,
    so a link the instructor put in the way gave them any file; the copy is now written as the instructor."""
    from conftest import REPO_ROOT
    from coursekit.hub import layout as hub_layout

    machine = Path(tempfile.mkdtemp(prefix="coursekit-copy-", dir="/tmp"))  # pytest's folders are closed to others
    try:
        machine.chmod(0o755)
        home = machine / "home"
        home.mkdir()
        os.chown(home, 65534, 65534)
        nobody = argparse.Namespace(pw_dir=str(home), pw_uid=65534, pw_gid=65534, pw_name="nobody")
        monkeypatch.setattr(hub_layout.pwd, "getpwnam", lambda user: nobody)
        assignments = machine / "assignments"
        shutil.copytree(REPO_ROOT / "assignments", assignments, ignore=shutil.ignore_patterns(".grading-secret"))
        (assignments / "autograde" / ".grading-secret").write_bytes(b"\x01" * 32)
        (assignments / "autograde").chmod(0o700)  # root reads the course, however closed
        course = hub_layout.copy_course(assignments, "nobody", "seqloss")
        owners = {path.stat().st_uid for path in (course, *course.rglob("*"))}
        assert owners == {65534} and stat.S_IMODE(course.stat().st_mode) == 0o700
        assert not (course / "autograde" / ".grading-secret").exists()
        assert sorted(p.name for p in (course / "autograde").glob("a*.py")) == \
            sorted(p.name for p in (assignments / "autograde").glob("a*.py"))
        root_only = machine / "root-only"
        root_only.write_text("secret")
        root_only.chmod(0o600)
        (home / "other").symlink_to(root_only)  # a link of the user's own where root used to write and chown
        with pytest.raises(subprocess.CalledProcessError):
            hub_layout.copy_course(assignments, "nobody", "other/x")
        assert root_only.stat().st_uid == 0 and root_only.read_text() == "secret"
    finally:
        shutil.rmtree(machine)
