"""The hub's system accounts: created (or opened and given their passwords again) at start, closed at stop.

At stop the hub locks and expires them and stops every process they still run; whoever
tears the hub down removes them (``userdel -r``).

``make hub`` logs people in with PAM, so its accounts are real system users with
a home folder each; every single-user server then runs as its own user.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import signal
import subprocess
import time
from pathlib import Path

INSTRUCTOR = "instructor"
STUDENTS = ("student1", "student2", "student3")
ACCOUNTS = (INSTRUCTOR, *STUDENTS)
#: the full name (the comment field's first part) of the accounts the hub creates: it never touches one without it.
HUB_MARK = "coursekit hub"
#: what ``useradd`` accepts on Debian without ``--badname``, and nothing a shell or chpasswd reads specially.
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def account_exists(name: str) -> bool:
    """Whether the system has a user ``name``.

    Example:
        >>> account_exists("root")
        True
    """
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def made_by_the_hub(name: str) -> bool:
    """Whether the existing user ``name`` was created by the hub (its full name is :data:`HUB_MARK`).

    Example:
        >>> made_by_the_hub("root")
        False
    """
    # the full name, the comment's first field, which chfn lets a user change only where login.defs allows
    return pwd.getpwnam(name).pw_gecos.split(",")[0] == HUB_MARK


def foreign_accounts(names: tuple[str, ...] = ACCOUNTS) -> list[str]:
    """The names among ``names`` that belong to users the hub did not create (and must not take over)."""
    return [name for name in names if account_exists(name) and not made_by_the_hub(name)]


def groups_without_their_user(names: tuple[str, ...] = ACCOUNTS) -> list[str]:
    """The names among ``names`` that are groups but not users: ``useradd --user-group`` cannot create those users.

    Example:
        >>> groups_without_their_user(("root",))
        []
    """
    found = []
    for name in names:
        try:
            grp.getgrnam(name)
        except KeyError:
            continue
        if not account_exists(name):
            found.append(name)
    return found


def ensure_account(name: str, password: str) -> bool:
    """Create the system user ``name`` (marked as the hub's) with a home folder if missing, close that folder to
    other users, open the account again if the last stop expired it, and set its password.

    Args:
        name: the user name.
        password: the password PAM will check (set on every call, so a restart with another
            ``$HUB_PASSWORD`` takes effect).

    Returns:
        True if the user was created, False if it existed already.

    Raises:
        ValueError: ``name`` is not a plain user name or is an existing user the hub did not
            create, or ``password`` is empty or holds a line break (``chpasswd`` reads one
            ``name:password`` line).
        subprocess.CalledProcessError: ``useradd``, ``usermod`` or ``chpasswd`` failed (not root, say).
    """
    if not _USER_NAME.fullmatch(name):
        raise ValueError(f"name must be a plain user name ([a-z_][a-z0-9_-]*), got {name!r}")
    if not password or "\n" in password or "\r" in password:
        raise ValueError("password must be a non-empty single line")
    created = not account_exists(name)
    if created:
        subprocess.run(["useradd", "--create-home", "--user-group", "--shell", "/bin/bash", "--comment", HUB_MARK,
                        name], check=True)
    elif not made_by_the_hub(name):
        raise ValueError(f"name: the user {name!r} exists and was not created by the hub (its full name is not "
                         f"{HUB_MARK!r}); the hub does not take over another account")
    # useradd's mode follows login.defs; students must not read one another's work or the course.
    Path(pwd.getpwnam(name).pw_dir).chmod(0o700)
    # open again an account that the last stop closed (lock_account), then give it its password
    subprocess.run(["usermod", "--expiredate", "", name], check=True, capture_output=True, text=True)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
    return created


def lock_account(name: str) -> None:
    """Close the hub's user ``name`` while no hub runs: lock its password and expire the account.

    ``usermod --lock`` disables the password only; an expired account (``--expiredate 1``)
    is refused by PAM's account check too, so an SSH key or a crontab the user left from a
    JupyterLab terminal does not let it in either. The next start opens it again
    (:func:`ensure_account`). Does nothing for a user that does not exist or that the hub
    did not create.

    Raises:
        subprocess.CalledProcessError: ``usermod`` failed.
    """
    if account_exists(name) and made_by_the_hub(name):
        subprocess.run(["usermod", "--lock", "--expiredate", "1", name], check=True, capture_output=True, text=True)


def stop_processes_of(name: str) -> list[int]:
    """Kill (SIGKILL) every process of the hub's user ``name``, as :func:`remove_account` does; their ids.

    What a user started outside the hub's process tree (an SSH session, a job cron started)
    would otherwise outlive the hub. Does nothing for a user that does not exist or that the
    hub did not create.

    Raises:
        RuntimeError: processes of ``name`` are still there after 50 rounds (naming them).
    """
    if not (account_exists(name) and made_by_the_hub(name)):
        return []
    return _kill_every_process_of(name)


def _kill_every_process_of(name: str) -> list[int]:
    """SIGKILL every process of ``name``, round after round until none is left; their ids (RuntimeError if some survive)."""
    killed: set[int] = set()
    # again and again: a process may start another between the reading of /proc and the kill
    for _ in range(50):
        left = processes_of(name)
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    else:
        left = processes_of(name)
        if left:
            raise RuntimeError(f"{name} still runs processes {left} after 50 rounds of SIGKILL")
    return sorted(killed)


def processes_of(name: str) -> list[int]:
    """Process ids of every process whose real user is ``name`` (read from ``/proc``).

    Example:
        >>> os.getpid() in processes_of(pwd.getpwuid(os.getuid()).pw_name)
        True
    """
    uid = pwd.getpwnam(name).pw_uid
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:  # the process ended while we were reading
            continue
        real_uid = re.search(r"^Uid:\s+(\d+)", text, re.MULTILINE)
        if real_uid and int(real_uid.group(1)) == uid:
            pids.append(int(status.parent.name))
    return sorted(pids)


def remove_account(name: str) -> None:
    """Stop every process of the user ``name`` (by process id), then delete it and its home folder.

    Does nothing when the user does not exist.

    Raises:
        subprocess.CalledProcessError: ``userdel`` failed.
    """
    if not account_exists(name):
        return
    try:
        _kill_every_process_of(name)
    except RuntimeError:
        pass  # userdel refuses a user with a process left, and says so below
    subprocess.run(["userdel", "--remove", name], check=True, capture_output=True)
