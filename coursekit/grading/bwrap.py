"""The bubblewrap command line of a sandbox, and whether bubblewrap works here.

What a sandbox is (Linux namespaces through ``bwrap``, run as root):

* a fresh mount namespace holding only a read-only ``/usr`` (and the top-level
  links into it), the read-only Python environment, the assignment's view of
  ``coursekit`` (:mod:`~coursekit.grading.package_view`) mounted over the
  installed package, ``/proc``, a minimal ``/dev``, and two size-capped tmpfs
  mounts: the working copy under ``/home/student`` and ``/tmp``. The course
  directory, every home directory and every other submission are absent;
* new network, PID, IPC and UTS namespaces: no network, and every process dies
  with the sandbox;
* a seccomp filter that denies ``memfd_create``, ``shmget``, ``msgget`` and ``mq_open``
  (:mod:`~coursekit.grading.seccomp`);
* the capabilities the runner needs to set up (:data:`RUNNER_CAPABILITIES`),
  asked for with ``--cap-drop ALL --cap-add ...``; the kernel runs as a
  dedicated uid and has none (its ``setuid`` clears them, and ``no_new_privs``
  stops file capabilities).

Bubblewrap 0.8 does not limit the runner at all when one capability asked for
is missing from the grader's own bounding set (a container without
``CAP_SYS_RESOURCE``, say): it leaves every capability the host gives root.
So the grader asks only for those its bounding set holds
(:func:`requested_capabilities`), and both the start-up probe
(:func:`bubblewrap_available`) and the runner itself, before any student code
runs, read the runner's ``CapEff`` and ``CapPrm`` and refuse when they hold
anything else. Without ``CAP_SYS_RESOURCE`` the runner cannot keep itself off
the OOM killer's list; the grader says so at start.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

SANDBOX_HOME = "/home/student"
SANDBOX_WORKDIR = SANDBOX_HOME + "/work"
#: what the runner may do as root inside the sandbox, and why:
#: chown the working copy to the sandbox uid; switch the kernel to that uid; kill the kernel when it
#: will not stop; remount the scratch file systems with an inode limit; keep itself off the OOM
#: killer's list. It drops all but CAP_KILL once the kernel runs.
RUNNER_CAPABILITIES = ("CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE")
#: their numbers (linux/capability.h).
CAPABILITY_BITS = {"CAP_CHOWN": 0, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SYS_ADMIN": 21,
                   "CAP_SYS_RESOURCE": 24}
#: what the probe prints inside a sandbox: the runner's capability sets, as ``/proc/self/status`` has them.
_PRINT_CAPABILITIES = ("import coursekit\n"
                       "print(''.join(l for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapPrm'))))")
#: the environment of every process in the sandbox (the kernel uses one thread, as its CPU quota allows).
ENVIRONMENT = {
    "LANG": "C.UTF-8",
    "TMPDIR": "/tmp",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
    "MPLBACKEND": "Agg",
}
_TOP_LEVEL = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "localtime", "nsswitch.conf")


def python_roots() -> list[str]:
    """The Python environment's directories (the virtual environment and the interpreter it links to)."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    return sorted(str(Path(r).resolve()) for r in roots)


def interpreter() -> str:
    """The Python that runs the runner (the virtual environment's, when there is one)."""
    return str(Path(sys.prefix) / "bin" / "python") if sys.prefix != sys.base_prefix else sys.executable


def environment(home: str) -> dict[str, str]:
    """The sandbox's environment variables for a home directory ``home``."""
    return {"HOME": home, "PATH": f"{Path(interpreter()).parent}:/usr/bin:/bin", **ENVIRONMENT}


def bounding_set() -> int:
    """This process's capability bounding set (``CapBnd``) as a bit mask (0 when unreadable)."""
    try:
        with open("/proc/self/status") as handle:
            return next((int(line.split()[1], 16) for line in handle if line.startswith("CapBnd:")), 0)
    except OSError:
        return 0


def requested_capabilities(bounding: int | None = None) -> tuple[str, ...]:
    """The :data:`RUNNER_CAPABILITIES` that the bounding set ``bounding`` (default: this process's) holds.

    Example:
        >>> requested_capabilities(capability_mask(("CAP_CHOWN", "CAP_KILL")))
        ('CAP_CHOWN', 'CAP_KILL')
    """
    bounding = bounding_set() if bounding is None else bounding
    return tuple(name for name in RUNNER_CAPABILITIES if bounding >> CAPABILITY_BITS[name] & 1)


def capability_mask(names: tuple[str, ...]) -> int:
    """The bit mask of the capabilities ``names``.

    Example:
        >>> hex(capability_mask(("CAP_CHOWN", "CAP_KILL")))
        '0x21'
    """
    return sum(1 << CAPABILITY_BITS[name] for name in set(names))


def _ancestors(path: str) -> list[str]:
    parts = Path(path).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def bwrap_command(disk_mb: int, package: Path, view: Path | None, seccomp_fd: int | None,
                  info_fd: int | None = None, capabilities: bool = True) -> list[str]:
    """The ``bwrap`` arguments that set up a sandbox (the command to run inside follows them).

    Args:
        disk_mb: size of each scratch tmpfs.
        package: the installed ``coursekit`` directory.
        view: the assignment's view of the package, mounted over ``package`` (``None``: the package itself).
        seccomp_fd: a descriptor holding the seccomp program (``None``: no filter).
        info_fd: a descriptor bubblewrap writes the sandbox's first process and namespaces to, as JSON
            (``None``: none).
        capabilities: give the command inside the runner's capabilities (:func:`requested_capabilities`);
            ``False``: none (the fork server's placeholder).

    Returns:
        The argument list, starting with ``bwrap``.
    """
    args = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv", "--cap-drop", "ALL"]
    for capability in requested_capabilities() if capabilities else ():
        args += ["--cap-add", capability]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    for top in _TOP_LEVEL:
        path = Path("/") / top
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in _ETC_FILES:
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    disk = str(int(disk_mb) * 2**20)
    # The scratch file systems come before the read-only binds: a Python
    # environment or checkout that lives under /tmp (a CI clone, say) is then
    # bound on top of the empty tmpfs instead of being hidden by it.
    args += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--perms", "01777", "--size", disk, "--tmpfs", "/tmp",
        "--perms", "0755", "--size", disk, "--tmpfs", SANDBOX_HOME,
    ]
    created: set[str] = {"/tmp", SANDBOX_HOME}
    for target in python_roots() + [str(package)]:
        for parent in _ancestors(target):
            if parent not in created and not parent.startswith("/usr"):
                args += ["--perms", "0755", "--dir", parent]
                created.add(parent)
        source = str(view) if view is not None and target == str(package) else target
        args += ["--ro-bind", source, target]
    for key, value in environment(SANDBOX_HOME).items():
        args += ["--setenv", key, value]
    return args + ["--chdir", SANDBOX_HOME]


@functools.lru_cache(maxsize=None)
def bubblewrap_available() -> tuple[bool, str]:
    """Whether bubblewrap isolation with a dedicated uid works on this machine.

    The probe runs Python in a sandbox as the runner would run and checks that
    it holds no capability beyond :func:`requested_capabilities`.

    Returns:
        ``(True, "")`` or ``(False, reason)``.

    Example:
        >>> ok, reason = bubblewrap_available()
        >>> isinstance(ok, bool) and isinstance(reason, str)
        True
    """
    if shutil.which("bwrap") is None:
        return False, "bubblewrap (bwrap) is not installed"
    if os.geteuid() != 0:
        return False, "the grader is not root, so it cannot run submissions under dedicated uids"
    from coursekit.grading.package_view import package_root

    probe = bwrap_command(16, package_root(), None, None) + [interpreter(), "-I", "-c", _PRINT_CAPABILITIES]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        return False, f"bwrap failed to start: {error}"
    if done.returncode != 0:
        return False, "bwrap failed: " + done.stderr.decode(errors="replace")[-500:]
    requested = capability_mask(requested_capabilities())
    held = 0
    for line in done.stdout.decode(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key in ("CapEff", "CapPrm"):
            held |= int(value.strip() or "0", 16)
    if held & ~requested:
        return False, (f"bubblewrap leaves the runner capabilities it did not ask for (mask {held & ~requested:#x} "
                       f"beyond {requested:#x})")
    return True, ""
