"""``python -m coursekit.hub``: run a JupyterHub for the course on this machine (what ``make hub`` calls).

Creates (or gives their passwords again to) the accounts ``instructor``, ``student1``,
``student2`` and ``student3``, prepares the hub's folder (:mod:`coursekit.hub.layout`),
writes its ``jupyterhub_config.py`` (:mod:`coursekit.hub.config`), prints the address,
the accounts and (to a terminal only) their passwords, and then runs ``jupyterhub`` in the foreground under
:func:`coursekit.hub.supervisor.supervise`: Ctrl-C stops the hub, the proxy, every user's
server and whatever they started (a kernel outlives its server otherwise), and then locks
and expires the accounts until the next start and stops whatever else they run. One hub
runs on a machine at a time (the accounts are the machine's): a second start is refused. Needs root (it creates users, and the hub
starts each user's server as that user).

Each account has a password of its own, drawn at its first start and kept in the hub's
folder, readable by root alone; ``$HUB_PASSWORD`` instead gives every account the same
one, for a person trying the hub alone (whoever knows it can log in as the instructor).

Where the only thing other users cannot reach is this Python's installation (a
pyenv Python under ``/root``), it first starts itself again, under the same process
id, in a private mount namespace that opens just that installation to them
(:mod:`coursekit.hub.shared_python`), and says so in one line.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pwd
import re
import secrets
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import coursekit
from coursekit.course.config import course_id
from coursekit.hub.accounts import (
    ACCOUNTS,
    HUB_MARK,
    INSTRUCTOR,
    account_exists,
    ensure_account,
    foreign_accounts,
    groups_without_their_user,
    lock_account,
    stop_processes_of,
)
from coursekit.hub.config import HubSettings, config_file_text
from coursekit.hub.layout import (
    COURSE_FILES,
    HubLayout,
    copy_course,
    make_course_exchange,
    make_folders,
    write_instructor_config,
    write_students_config,
)
from coursekit.hub.machine import free_loopback_ports, port_in_use
from coursekit.hub.shared_python import ClosedToOthersError, SharedPython, this_python_to_share
from coursekit.hub.supervisor import say_if_possible, supervise

REPO_ROOT = Path(coursekit.__file__).resolve().parents[1]
DEFAULT_DIR = Path("/srv/coursekit-hub")
DEFAULT_PROXY = REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
PASSWORD_ENV = "HUB_PASSWORD"
PORT_ENV = "HUB_PORT"
#: held by the running hub: a second one would share the machine's accounts and close them under the first.
HUB_LOCK = "/run/coursekit-hub.lock"
#: a course id the hub may use as a folder name in ~instructor and in the exchange.
_COURSE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: set on the command that re-enters the hub inside its mount namespace; guards against doing it twice.
SHARED_ENV = "COURSEKIT_HUB_PYTHON_SHARED"


def hub_passwords(layout: HubLayout, environ: dict[str, str]) -> dict[str, str]:
    """Each account's password: ``$HUB_PASSWORD`` for all of them where it is set, else one per account.

    An account's own password is drawn at its first start and kept in ``layout.passwords``
    (``name password`` lines, mode 600), so that a restart keeps every login.
    """
    if environ.get(PASSWORD_ENV):
        return {name: environ[PASSWORD_ENV] for name in ACCOUNTS}
    stored: dict[str, str] = {}
    if layout.passwords.exists():
        for line in layout.passwords.read_text(encoding="utf-8").splitlines():
            name, _, password = line.partition(" ")
            if name in ACCOUNTS and password:
                stored[name] = password
    if set(stored) != set(ACCOUNTS):
        stored = {name: stored.get(name) or secrets.token_urlsafe(9) for name in ACCOUNTS}
        layout.passwords.touch(mode=0o600)
        layout.passwords.chmod(0o600)
        layout.passwords.write_text("".join(f"{name} {stored[name]}\n" for name in ACCOUNTS), encoding="utf-8")
    return stored


def port_number(text: str) -> int:
    """A TCP port from 1 to 65535, for ``--port`` and ``$HUB_PORT``.

    Example:
        >>> port_number("8010")
        8010
        >>> port_number("abc")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: must be a port number from 1 to 65535 (--port, or $HUB_PORT), got 'abc'
    """
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535 (--port, or ${PORT_ENV}), got {text!r}")
    return port


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``python -m coursekit.hub``.

    Example:
        >>> build_parser().parse_args([]).port
        8000
    """
    parser = argparse.ArgumentParser(prog="python -m coursekit.hub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # a string default goes through port_number too, so a bad $HUB_PORT gets argparse's message
    parser.add_argument("--port", type=port_number, default=os.environ.get(PORT_ENV) or "8000",
                        help="the public port on 127.0.0.1 (default: $HUB_PORT or 8000)")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                        help=f"the hub's own folder: exchange, configuration, state (default: {DEFAULT_DIR})")
    parser.add_argument("--proxy", type=Path, default=DEFAULT_PROXY,
                        help="the configurable-http-proxy executable (default: the repository's npm install)")
    parser.add_argument("--assignments", type=Path, default=REPO_ROOT / "assignments",
                        help="the nbgrader course copied into ~instructor at first start")
    return parser


def refusal_to_start(args: argparse.Namespace, venv_bin: Path) -> tuple[str | None, SharedPython | None]:
    """Why the hub cannot start here, and the Python it must share with other users.

    Args:
        args: the parsed arguments of ``python -m coursekit.hub``.
        venv_bin: the ``bin`` folder of the running virtual environment.

    Returns:
        ``(refusal, None)`` when it cannot start (the refusal names the option or folder at
        fault); ``(None, share)`` otherwise, ``share`` being the
        :class:`~coursekit.hub.shared_python.SharedPython` to enter first, or None.
    """
    if os.geteuid() != 0:
        return ("python -m coursekit.hub must run as root: it creates the accounts and starts each user's server "
                "as that user"), None
    if not (venv_bin / "jupyterhub-singleuser").is_file():
        return f"jupyterhub is not installed in {venv_bin.parent}: run `make venv`", None
    if not (args.proxy.is_file() and os.access(args.proxy, os.X_OK)):
        return f"--proxy: no configurable-http-proxy at {args.proxy}: run `npm ci` (make hub runs it)", None
    try:
        share = this_python_to_share()
    except ClosedToOthersError as error:
        return str(error), None
    if share is not None and os.environ.get(SHARED_ENV):
        return f"other users still cannot enter {share.closed} inside the hub's mount namespace", None
    for option, path in (("--dir", args.dir), ("--proxy", args.proxy), ("--assignments", args.assignments)):
        if share is not None and path.resolve().is_relative_to(share.closed):
            return (f"{option}: {path} is under {share.closed}, which the hub's mount namespace hides; "
                    "choose a path outside it"), None
    refusal = refusal_of_settings(args, dict(os.environ))
    return (refusal, None) if refusal else (None, share)


def refusal_of_settings(args: argparse.Namespace, environ: dict[str, str]) -> str | None:
    """Why the hub's folder, course, password or accounts cannot be used, naming the setting; None if they can.

    Checked before the hub changes anything on the machine.
    """
    password = environ.get(PASSWORD_ENV, "")
    if "\n" in password or "\r" in password:
        return f"${PASSWORD_ENV} must be a single line, got one with a line break"
    course = course_id(environ)
    if not _COURSE_ID.fullmatch(course):
        return (f"$COURSEKIT_COURSE_ID must be a folder name of letters, digits, '.', '_' and '-' that starts "
                f"with a letter or digit, got {course!r}")
    missing = [name for name in COURSE_FILES if not (args.assignments / name).exists()]
    if missing:
        return f"--assignments: {args.assignments} must be the course folder holding {list(COURSE_FILES)}; it lacks {missing}"
    folder = args.dir
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        return f"--dir: {folder} must be a folder (not a symlink or a file)"
    for ancestor in folder.resolve().parents:
        if not ancestor.exists():  # root creates it, with the hub's folder
            continue
        # whoever may rename entries of an ancestor could put a folder of their own at --dir
        info = ancestor.stat()
        if info.st_uid != 0 or (info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX):
            return (f"--dir: {folder} lies in {ancestor}, which another user owns or may change "
                    f"(owner uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):o}); choose a folder under "
                    "folders only root may change")
    if folder.exists():
        if folder.stat().st_uid != 0:
            return f"--dir: {folder} exists and belongs to uid {folder.stat().st_uid}; the hub's folder must be root's"
        if folder.stat().st_mode & 0o022:
            return (f"--dir: {folder} exists and others may write in it (mode {stat.S_IMODE(folder.stat().st_mode):o}); "
                    "the hub's folder must be root's alone to change")
        layout = HubLayout(folder)
        if any(folder.iterdir()) and not (layout.marker.exists() or layout.hub_config.exists()):
            return (f"--dir: {folder} exists, is not empty and is not a hub's folder (it holds neither "
                    f"{layout.marker.name} nor {layout.hub_config.name}); choose a new or empty folder, or remove "
                    "this one if an earlier hub made it (the hub sets the folder's mode and the exchange's)")
    foreign = foreign_accounts()
    if foreign:
        return (f"the users {foreign} exist and were not created by the hub (their full name is not "
                f"{HUB_MARK!r}); the hub does not take over another account: remove or rename them, or, if an "
                f"earlier hub made them, mark them with `usermod --comment {HUB_MARK!r} NAME`")
    groups = groups_without_their_user()
    if groups:
        return f"the groups {groups} exist without a user of the same name, so the hub cannot create those users"
    exchange = HubLayout(folder).exchange / course
    if exchange.exists() or exchange.is_symlink():
        owner = exchange.lstat().st_uid
        instructor_uid = pwd.getpwnam(INSTRUCTOR).pw_uid if account_exists(INSTRUCTOR) else None
        if exchange.is_symlink() or owner != instructor_uid:
            return (f"the exchange's course folder {exchange} does not belong to the hub's {INSTRUCTOR} "
                    f"(it is owned by uid {owner}): remove it as root (after `userdel -r {INSTRUCTOR}`, remove the "
                    f"whole hub folder, {folder})")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare the hub, print how to log in, and run ``jupyterhub`` until it stops; returns its exit status."""
    args = build_parser().parse_args(argv)
    venv_bin = Path(sys.executable).parent
    refusal, share = refusal_to_start(args, venv_bin)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    os.environ.pop(SHARED_ENV, None)
    if share is not None:
        print(share.describe(), flush=True)
        again = [sys.executable, "-m", "coursekit.hub", "--port", str(args.port), "--dir", str(args.dir),
                 "--proxy", str(args.proxy), "--assignments", str(args.assignments)]
        os.execvpe("unshare", share.command(again), {**os.environ, SHARED_ENV: str(share.installation)})

    one_hub = one_hub_per_machine()
    if one_hub is None:
        print(f"another hub runs on this machine (it holds {HUB_LOCK}): its accounts are the machine's, so stop it "
              "first", file=sys.stderr)
        return 2
    # not resolved: a link put at --dir after the checks must be refused, not followed (claim_folder)
    layout = HubLayout(Path(os.path.abspath(args.dir)))
    refusal = claim_folder(layout.root)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    # No other hub has started since (the lock says so): what an earlier one left is stale. A proxy that
    # outlived a crash is stopped here, and the recorded ids are dropped, which JupyterHub would otherwise
    # signal, as root, whatever process had since taken them.
    stale = stop_stale_proxy(layout.root / "proxy.pid")
    if stale is not None:
        print(f"stopped the proxy an earlier hub left running (process {stale})", flush=True)
    # checked only now: a proxy left by a crashed hub held the port until the line above (and may for a moment)
    deadline = time.monotonic() + (5.0 if stale is not None else 0.0)
    while port_in_use(args.port) and time.monotonic() < deadline:
        time.sleep(0.1)
    if port_in_use(args.port):
        print(f"--port: something already listens on 127.0.0.1:{args.port}; set HUB_PORT to a free port",
              file=sys.stderr)
        return 2
    (layout.root / "proxy.pid").unlink(missing_ok=True)
    layout.database.unlink(missing_ok=True)
    make_folders(layout)
    passwords = hub_passwords(layout, dict(os.environ))
    try:
        try:
            for name in ACCOUNTS:
                ensure_account(name, passwords[name])
        except subprocess.CalledProcessError as error:
            detail = (error.stderr or "").strip() if isinstance(error.stderr, str) else ""
            print(f"the hub cannot start: `{' '.join(map(str, error.cmd))}` failed (status {error.returncode})"
                  f"{': ' + detail if detail else ''}", file=sys.stderr)
            return 2
        try:
            make_course_exchange(layout, course_id(), INSTRUCTOR)
            course = copy_course(args.assignments.resolve(), INSTRUCTOR, course_id())
        except (ValueError, OSError) as error:
            print(f"the hub cannot start: {error}", file=sys.stderr)
            return 2
        except subprocess.CalledProcessError as error:
            detail = (error.stderr or "").strip() if isinstance(error.stderr, str) else ""
            print(f"the hub cannot start: copying the course into ~{INSTRUCTOR} failed (status {error.returncode})"
                  f"{': ' + detail if detail else ''}; remove the partial copy before the next start", file=sys.stderr)
            return 2
        write_instructor_config(layout, course)
        write_students_config(layout)
        hub_api_port, proxy_api_port = free_loopback_ports(2, besides=args.port)
        settings = HubSettings(
            layout=layout, port=args.port, hub_api_port=hub_api_port, proxy_api_port=proxy_api_port,
            proxy_command=args.proxy.resolve(), venv_bin=venv_bin, course_id=course_id(),
        )
        layout.hub_config.write_text(config_file_text(settings), encoding="utf-8")

        print(f"JupyterHub for the course {settings.course_id!r}: http://127.0.0.1:{args.port}/")
        print(f"  accounts:  {INSTRUCTOR} (Formgrader; course in {course})")
        print(f"             {', '.join(name for name in ACCOUNTS if name != INSTRUCTOR)} (Assignments tab)")
        print_passwords(layout, passwords, shared=bool(os.environ.get(PASSWORD_ENV)), terminal=sys.stdout.isatty())
        print(f"  exchange:  {layout.exchange}")
        print(f"  config:    {layout.hub_config}")
        print("Ctrl-C stops the hub, every user's server and what they started, and closes the accounts.", flush=True)
        os.chdir(layout.root)
        return supervise([str(venv_bin / "jupyterhub"), "--config", str(layout.hub_config)])
    finally:
        close_accounts()


def print_passwords(layout: HubLayout, passwords: dict[str, str], shared: bool, terminal: bool) -> None:
    """Print the accounts' passwords where the output is a ``terminal``; elsewhere only where to find them.

    Every user's server, and the code in its kernels, inherits the hub's output: written to a
    file, the passwords could be read back through ``/proc/self/fd/1`` by a student.
    """
    if not terminal:
        where = f"${PASSWORD_ENV}, the same for every account" if shared else f"in {layout.passwords} (root's alone)"
        print(f"  passwords: {where}; not printed, as the hub's output is not a terminal")
    elif shared:
        print(f"  password:  {passwords[INSTRUCTOR]}  (${PASSWORD_ENV}, the same for every account: try the hub alone)")
    else:
        print(f"  passwords: (drawn once, kept in {layout.passwords}, readable by root alone)")
        for name in ACCOUNTS:
            print(f"             {name:<10}  {passwords[name]}")


def claim_folder(folder: Path) -> str | None:
    """Make the hub's folder and any missing parent (mode 755), checking each on the way down; why not, or None.

    Between the checks of :func:`refusal_of_settings` and now, another user could have made a
    folder, or put a link, at one of these paths (in a shared folder such as ``/tmp``). Each
    missing one is made without ``exist_ok``; then every one is looked at without following
    it: an ancestor must be root's and changeable by root alone (or sticky), and the hub's
    folder must be a folder, not a link, that only root may change. Once it is root's, no
    other user can replace it.
    """
    path = Path(os.path.abspath(folder))
    old_umask = os.umask(0o022)
    try:
        for part in [*reversed(path.parents), path]:
            try:
                part.mkdir(mode=0o755)
            except FileExistsError:
                pass
            info = part.lstat()
            if part != path and stat.S_ISLNK(info.st_mode) and info.st_uid == 0:
                continue  # a link of root's above the folder, such as /var/run
            shared = info.st_mode & 0o022 and (part == path or not info.st_mode & stat.S_ISVTX)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or shared:
                return (f"--dir: {part} is not a folder that only root may change (owner uid {info.st_uid}, mode "
                        f"{stat.S_IMODE(info.st_mode):o}); someone may have made it after the checks: remove it and "
                        "start again")
    finally:
        os.umask(old_umask)
    return None


def stop_stale_proxy(pid_file: Path) -> int | None:
    """Kill the process ``pid_file`` names if it is still a ``configurable-http-proxy`` run by root; its id, or None.

    Any other process that has since taken that id is left alone. Waits (up to 5 s) until the process
    is gone; its port may stay taken a moment longer, which the start waits for too.
    """
    try:
        pid = int(pid_file.read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if not any(part.endswith(b"configurable-http-proxy") for part in command) or owner_of(pid) != 0:
        return None
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return None
    for _ in range(100):  # until it is gone
        if not Path(f"/proc/{pid}").exists() or _state(pid) == "Z":
            break
        time.sleep(0.05)
    return pid


def owner_of(pid: int) -> int | None:
    """The real uid of process ``pid`` (the first of the ``Uid:`` line of its status), or None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)
    return int(found.group(1)) if found else None


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def one_hub_per_machine() -> int | None:
    """Take :data:`HUB_LOCK` for as long as this process runs: a descriptor, or None if another hub holds it."""
    Path(HUB_LOCK).parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(HUB_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


def close_accounts() -> None:
    """Close every account of the hub (:func:`~coursekit.hub.accounts.lock_account`) and stop what it still runs.

    Ctrl-C is ignored meanwhile, so that a second one cannot leave an account open.
    """
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        closed = []
        for name in ACCOUNTS:
            try:
                lock_account(name)
            except subprocess.CalledProcessError as error:
                say_if_possible(f"could not close the account {name}: {(error.stderr or '').strip() or error}")
                continue
            if account_exists(name):
                closed.append(name)
                try:
                    stopped = stop_processes_of(name)
                except RuntimeError as error:
                    say_if_possible(f"could not stop what {name} runs: {error}")
                    continue
                if stopped:
                    say_if_possible(f"stopped what {name} still ran outside the hub: processes {stopped}")
        if closed:
            say_if_possible(f"The accounts {', '.join(closed)} are locked and expired until the next start "
                            "(to remove the hub: userdel -r each, then its folder).")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
