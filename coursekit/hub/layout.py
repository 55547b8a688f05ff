"""The hub's own folder and what each account finds in it at first login.

Everything ``make hub`` writes outside the users' homes lies in one folder
(``/srv/coursekit-hub`` unless told otherwise)::

    exchange/             the nbgrader exchange (world-writable, sticky, as nbgrader needs), and in it
                          the course's folder, made by the hub for the instructor (see make_course_exchange)
    jupyter/students/     the students' Jupyter configuration: nbgrader's course id and exchange,
                          and the Formgrader and Create Assignment extensions switched off
    jupyter/instructor/   the instructor's: nbgrader's settings of the course in ~instructor/seqloss,
                          and a server that JupyterLab may show in a frame (the Formgrader)
    jupyterhub_config.py  the hub's configuration (see coursekit.hub.config)
    .coursekit-hub        an empty file that marks the folder as a hub's
    jupyterhub.sqlite, jupyterhub_cookie_secret, proxy.pid   the hub's state (the first two root's alone;
                          the database and proxy.pid are begun afresh at every start)
    passwords             each account's password, drawn at the first start (root's alone)

Each single-user server gets its role's folder as ``JUPYTER_CONFIG_PATH``, which
takes precedence over every other configuration folder, so nothing is written to
``/etc/jupyter``. The instructor's course is a copy of the repository's
``assignments/`` in ``~instructor/<course id>``, made once and then left to the
instructor.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from coursekit.course.config import EXCHANGE_ENV, student_config
from coursekit.grading.secret import SECRET_FILE

#: labextension plugins and server extension that only the instructor gets.
INSTRUCTOR_LAB_PLUGINS = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment")
INSTRUCTOR_SERVER_EXTENSIONS = ("nbgrader.server_extensions.formgrader",)
#: the instructor's server's Content-Security-Policy: framed by pages of its own origin (the hub's address) only.
FRAMED_BY_THE_HUB = "frame-ancestors 'self'"
#: the shell of a JupyterLab terminal. Without it, a server whose output is not a terminal (the hub run
#: under nohup or systemd, or logging to a file) starts ``bash -l``, and Debian's /etc/profile then sets a
#: PATH without the course's environment: ``nbgrader`` and ``coursekit`` would not be found.
TERMINAL_SETTINGS = {"shell_command": ["/bin/bash"]}
#: what the instructor's copy of the course takes from ``assignments/`` (never gradebooks or submissions).
COURSE_FILES = ("nbgrader_config.py", "roster.csv", "source", "autograde")


@dataclass(frozen=True)
class HubLayout:
    """Paths inside the hub's folder ``root``."""

    root: Path

    @property
    def exchange(self) -> Path:
        return self.root / "exchange"

    @property
    def students_config(self) -> Path:
        return self.root / "jupyter" / "students"

    @property
    def instructor_config(self) -> Path:
        return self.root / "jupyter" / "instructor"

    @property
    def hub_config(self) -> Path:
        return self.root / "jupyterhub_config.py"

    @property
    def database(self) -> Path:
        return self.root / "jupyterhub.sqlite"

    @property
    def passwords(self) -> Path:
        return self.root / "passwords"

    @property
    def marker(self) -> Path:
        """An empty file that says the folder is a hub's: written first, so a start that fails later leaves it."""
        return self.root / ".coursekit-hub"


def make_folders(layout: HubLayout) -> None:
    """Create the hub's folder (readable by all) and its exchange (world-writable, sticky bit).

    The modes are set explicitly, whatever the caller's umask: every user's server reads
    ``jupyter/`` and writes into ``exchange/``. The sticky bit keeps a student from removing
    or renaming the course's folder in the exchange; nbgrader protects the submissions
    themselves (``inbound/`` cannot be listed, and each submission's name ends in a random
    string). JupyterHub's database is created empty, readable by root alone, before the
    hub opens it (SQLite keeps an existing file's mode): it holds the users' short-lived
    OAuth codes.
    """
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.marker.touch()
    for folder in (layout.root, layout.root / "jupyter", layout.students_config, layout.instructor_config):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
    layout.exchange.mkdir(exist_ok=True)
    layout.exchange.chmod(0o777 | stat.S_ISVTX)
    layout.database.touch(mode=0o600)
    layout.database.chmod(0o600)


def make_course_exchange(layout: HubLayout, course_id: str, instructor: str) -> Path:
    """Create the course's folder in the exchange, owned by ``instructor``, as nbgrader's first release would.

    Made before any student can log in: in the world-writable exchange a student could
    otherwise create ``exchange/<course_id>`` first, and the instructor's release would then
    stop ("You don't own the directory") while students fetch what that folder holds.
    ``outbound/`` is 0755, ``inbound/`` 2733 (writable, not listable), nbgrader's modes. Each
    folder is opened without following links and changed through its descriptor, so that a
    link the instructor puts in its place never leads root's changes elsewhere.

    Returns:
        The course's exchange folder.

    Raises:
        ValueError: the folder, or one inside it, exists and is not a directory owned by
            ``instructor`` (naming the path and its owner).
    """
    account = pwd.getpwnam(instructor)
    course = layout.exchange / course_id
    exchange_fd = os.open(layout.exchange, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        course_fd = _instructors_folder(exchange_fd, course_id, 0o755, account, course)
        try:
            for name, mode in (("outbound", 0o755), ("inbound", 0o2733)):
                os.close(_instructors_folder(course_fd, name, mode, account, course / name))
        finally:
            os.close(course_fd)
    finally:
        os.close(exchange_fd)
    return course


def _instructors_folder(parent_fd: int, name: str, mode: int, account: pwd.struct_passwd, path: Path) -> int:
    """Make (if missing) the folder ``name`` in ``parent_fd`` for ``account``, give it ``mode``; its descriptor."""
    try:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    except FileExistsError:
        pass
    try:
        descriptor = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
    except OSError as error:
        raise ValueError(f"the exchange's {path} must be a folder of {account.pw_name}, got a symlink or a file "
                         f"({error.strerror})") from None
    owner = os.fstat(descriptor).st_uid
    if owner == 0 and account.pw_uid != 0:
        os.fchown(descriptor, account.pw_uid, account.pw_gid)  # just made by root
    elif owner != account.pw_uid:
        os.close(descriptor)
        raise ValueError(f"the exchange's {path} must belong to {account.pw_name}, got one of uid {owner}: "
                         "remove it as root")
    os.fchmod(descriptor, mode)
    return descriptor


def write_students_config(layout: HubLayout) -> None:
    """The students' nbgrader settings (course id, this hub's exchange) and their Jupyter extensions.

    ``nbgrader_config.py`` is :func:`coursekit.course.config.student_config` with this hub's
    exchange, the file the instructors' page tells a hub administrator to install in
    ``/etc/jupyter``. Two JSON files switch the Formgrader off for students, in the
    JupyterLab page (its menu entry) and in the server (its URL); a third gives their
    terminals the course's environment (:data:`TERMINAL_SETTINGS`).
    """
    environ = dict(os.environ, **{EXCHANGE_ENV: str(layout.exchange)})
    folder = layout.students_config
    _write(folder / "nbgrader_config.py", student_config(environ))
    page_config = {"disabledExtensions": {plugin: True for plugin in INSTRUCTOR_LAB_PLUGINS}}
    _write(folder / "labconfig" / "page_config.json", json.dumps(page_config, indent=2) + "\n")
    server_config = {"ServerApp": {"jpserver_extensions": {name: False for name in INSTRUCTOR_SERVER_EXTENSIONS}}}
    _write(folder / "jupyter_server_config.d" / "coursekit-students.json", json.dumps(server_config, indent=2) + "\n")
    # jupyter_server reads its .d folder for extensions only; other settings go in the main file.
    terminals = {"ServerApp": {"terminado_settings": TERMINAL_SETTINGS}}
    _write(folder / "jupyter_server_config.json", json.dumps(terminals, indent=2) + "\n")


def write_instructor_config(layout: HubLayout, course_dir: Path) -> None:
    """The instructor's nbgrader settings (the course's own, rooted at ``course_dir``) and server settings.

    The Formgrader reads nbgrader's configuration from the Jupyter config path and the
    server's working folder (the home folder), not from the course folder, so this file
    applies :func:`coursekit.course.configure` there, as the course's ``nbgrader_config.py`` does.
    """
    # JupyterHub's servers refuse to be framed (frame-ancestors 'none'), and JupyterLab shows the
    # Formgrader in a frame; the instructor's server lets pages of the hub's own address frame it.
    server_config = {"ServerApp": {"tornado_settings": {"headers": {"Content-Security-Policy": FRAMED_BY_THE_HUB}},
                                   "terminado_settings": TERMINAL_SETTINGS}}
    _write(layout.instructor_config / "jupyter_server_config.json", json.dumps(server_config, indent=2) + "\n")
    _write(
        layout.instructor_config / "nbgrader_config.py",
        '# nbgrader settings of the instructor on the hub (written by `python -m coursekit.hub`).\n'
        "from coursekit.course import configure\n\n"
        "c = get_config()  # noqa: F821\n"
        f"configure(c, {str(course_dir)!r})\n",
    )


def copy_course(assignments: Path, user: str, course_id: str) -> Path:
    """Copy the course (``assignments/``'s sources, specs and config) into ``~user/<course_id>``, once.

    A grading secret already in ``assignments/autograde/`` is not copied: the hub's course makes
    its own on first use, so trying the hub never carries a real course's secret onto it. The
    copy is written as ``user`` (``tar`` with that user's ids and umask 077, reading what root's
    ``tar`` reads from ``assignments``): in the user's own home folder a link the user put in the
    way reaches only what the user may change anyway.

    Args:
        assignments: the repository's nbgrader course folder.
        user: the account that will own the copy.
        course_id: the nbgrader course id, the copy's folder name.

    Returns:
        The course folder. An existing one is left exactly as it is (it holds the
        instructor's gradebook and submissions).

    Raises:
        ValueError: ``assignments`` lacks one of the course's files.
        subprocess.CalledProcessError: the copy failed.
    """
    missing = [name for name in COURSE_FILES if not (assignments / name).exists()]
    if missing:
        raise ValueError(f"assignments must be the course folder holding {COURSE_FILES}, got {str(assignments)!r} "
                         f"without {missing}")
    account = pwd.getpwnam(user)
    course = Path(account.pw_dir) / course_id
    if course.exists() or course.is_symlink():
        return course
    # root reads the course (tar -c); a shell and tar running as the user make the folder and write into it
    reader = subprocess.Popen(
        ["tar", "--exclude=__pycache__", f"--exclude={SECRET_FILE.name}", "-C", str(assignments), "-cf", "-",
         *COURSE_FILES],
        stdout=subprocess.PIPE,
    )
    try:
        subprocess.run(
            ["sh", "-c", 'mkdir -m 700 -- "$1" && exec tar -C "$1" -xf -', "sh", str(course)],
            stdin=reader.stdout, user=account.pw_uid, group=account.pw_gid, extra_groups=[], umask=0o077,
            cwd=account.pw_dir, check=True, text=True,
            # a session of its own, no terminal: a process of the user must not reach root's terminal through it
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        )
    finally:
        assert reader.stdout is not None
        reader.stdout.close()
        status = reader.wait()
    if status != 0:
        raise subprocess.CalledProcessError(status, reader.args)
    return course


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o755)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
