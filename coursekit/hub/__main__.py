"""``python -m coursekit.hub``: run a JupyterHub for the course on this machine (what ``make hub`` calls).

Creates (or gives the password again to) the accounts ``instructor``, ``student1``,
``student2`` and ``student3``, prepares the hub's folder (:mod:`coursekit.hub.layout`),
writes its ``jupyterhub_config.py`` (:mod:`coursekit.hub.config`), prints the address,
the accounts and the password, and then runs ``jupyterhub`` in the foreground under
:func:`coursekit.hub.supervisor.supervise`: Ctrl-C stops the hub, the proxy, every user's
server and whatever they started (a kernel outlives its server otherwise). Needs root (it
creates users, and the hub starts each user's server as that user).

Where the only thing other users cannot reach is this Python's installation (a
pyenv Python under ``/root``), it first starts itself again, under the same process
id, in a private mount namespace that opens just that installation to them
(:mod:`coursekit.hub.shared_python`), and says so in one line.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

import coursekit
from coursekit.course.config import course_id
from coursekit.hub.accounts import ACCOUNTS, INSTRUCTOR, ensure_account
from coursekit.hub.config import HubSettings, config_file_text
from coursekit.hub.layout import HubLayout, copy_course, make_folders, write_instructor_config, write_students_config
from coursekit.hub.machine import free_loopback_ports, port_in_use
from coursekit.hub.shared_python import ClosedToOthersError, SharedPython, this_python_to_share
from coursekit.hub.supervisor import supervise

REPO_ROOT = Path(coursekit.__file__).resolve().parents[1]
DEFAULT_DIR = Path("/srv/coursekit-hub")
DEFAULT_PROXY = REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
PASSWORD_ENV = "HUB_PASSWORD"
#: set on the command that re-enters the hub inside its mount namespace; guards against doing it twice.
SHARED_ENV = "COURSEKIT_HUB_PYTHON_SHARED"


def hub_password(layout: HubLayout, environ: dict[str, str]) -> str:
    """``$HUB_PASSWORD``, else a password drawn once for this hub and kept (mode 600) in its folder."""
    if environ.get(PASSWORD_ENV):
        return environ[PASSWORD_ENV]
    stored = layout.root / "password"
    if not stored.exists():
        stored.touch(mode=0o600)
        stored.write_text(secrets.token_urlsafe(9) + "\n", encoding="utf-8")
    return stored.read_text(encoding="utf-8").strip()


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``python -m coursekit.hub``.

    Example:
        >>> build_parser().parse_args([]).port
        8000
    """
    parser = argparse.ArgumentParser(prog="python -m coursekit.hub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("HUB_PORT", "8000")),
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
    if not os.access(args.proxy, os.X_OK):
        return f"--proxy: no configurable-http-proxy at {args.proxy}: run `npm ci` (make hub runs it)", None
    if port_in_use(args.port):
        return f"--port: something already listens on 127.0.0.1:{args.port}; set HUB_PORT to a free port", None
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
    return None, share


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

    layout = HubLayout(args.dir.resolve())
    make_folders(layout)
    password = hub_password(layout, dict(os.environ))
    for name in ACCOUNTS:
        ensure_account(name, password)
    course = copy_course(args.assignments.resolve(), INSTRUCTOR, course_id())
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
    source = f"${PASSWORD_ENV}" if os.environ.get(PASSWORD_ENV) else f"drawn once, kept in {layout.root / 'password'}"
    print(f"  password:  {password}  ({source})")
    print(f"  exchange:  {layout.exchange}")
    print(f"  config:    {layout.hub_config}")
    print("Ctrl-C stops the hub, every user's server and what they started.", flush=True)
    os.chdir(layout.root)
    return supervise([str(venv_bin / "jupyterhub"), "--config", str(layout.hub_config)])


if __name__ == "__main__":
    sys.exit(main())
