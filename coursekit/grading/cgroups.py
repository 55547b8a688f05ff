"""A control group per sandbox: its share of the CPU, its memory (kernel memory included), its processes.

Rlimits are per process: sixty-four busy processes each stay under their CPU
limit while together they starve every other sandbox on the machine, and four
processes each under a 2 GiB address-space limit hold 8 GiB. A cgroup limits
the sandbox as a whole:

* **cpu**: at most :attr:`Limits.cpus` CPUs at once (v1 ``cpu.cfs_quota_us``
  over ``cpu.cfs_period_us``, v2 ``cpu.max``);
* **memory**: :attr:`Limits.sandbox_memory_mb` in all, which counts the
  scratch file systems, shared memory and the kernel's own objects (inodes,
  dentries, pipe buffers): v1 ``memory.limit_in_bytes``, with
  ``memory.memsw.limit_in_bytes`` at the same value where swap is accounted
  (so swapping does not go past it) and ``memory.kmem.limit_in_bytes`` on
  kernels that still read it; v2 ``memory.max`` with ``memory.swap.max`` at 0;
* **pids**: :attr:`Limits.sandbox_processes` (``pids.max``).

Each sandbox's groups are created below the grader's own group in each
hierarchy, as ``/proc/self/cgroup`` names it, and nowhere else; the grader
puts the sandbox's first process in them before it runs anything (see
:func:`join_command`), and removes them when the run ends. Both the legacy
per-controller hierarchies (v1) and the unified one (v2) are supported; a
controller mounted as v1 is used there.

On v2 a group that holds processes cannot enable controllers for its
children (the "no internal processes" rule; the write fails with ``EBUSY``),
and the grader's own group holds at least the grader. So before it enables
them the grader moves every process of its group into a leaf child,
:data:`LEAF_GROUP`, and creates the sandboxes' groups beside that leaf: still
below the group it started in. The root group is exempt from the rule and is
left as it is.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from coursekit.grading.limits import Limits

CONTROLLERS = ("cpu", "memory", "pids")
#: the CFS period: the CPU quota is this many microseconds times ``Limits.cpus`` per period.
CPU_PERIOD_US = 100_000
#: sandbox groups are named ``coursekit-<grader pid>-<n>``; stale ones of dead graders are removed.
GROUP_PREFIX = "coursekit-"
#: how long to keep killing a group's processes before giving up on removing it.
REMOVE_TIMEOUT_S = 10.0
#: the leaf child of the grader's group that the group's processes move into, on cgroup v2 (see the module docstring).
LEAF_GROUP = "coursekit.grader"
#: how many times, on cgroup v2, to move a group's processes into the leaf while some are still being forked.
LEAF_MOVE_ROUNDS = 10
_counter = itertools.count()


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy that serves some of :data:`CONTROLLERS`.

    Attributes:
        version: 1 (one hierarchy per controller) or 2 (the unified hierarchy).
        controllers: which of :data:`CONTROLLERS` it serves for the sandbox.
        own: the directory of the grader's own group in it (on v2, once the grader
            has moved into :data:`LEAF_GROUP`, the group that leaf is in).
    """

    version: int
    controllers: tuple[str, ...]
    own: Path


def _mounts(mountinfo: str) -> list[tuple[str, str, str, set[str]]]:
    """(file system type, mount root, mount point, super options) of each cgroup mount."""
    found = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            found.append((tail[0], fields[3], fields[4], set(tail[2].split(","))))
    return found


def _below(mount_root: str, group: str) -> str | None:
    """``group`` relative to a mount that shows ``mount_root`` of the hierarchy (``None``: not visible)."""
    if mount_root == "/":
        return group.lstrip("/")
    if group == mount_root or group.startswith(mount_root.rstrip("/") + "/"):
        return group[len(mount_root):].lstrip("/")
    return None


def find_hierarchies(self_cgroup: str | None = None, mountinfo: str | None = None) -> list[Hierarchy]:
    """The hierarchies that serve :data:`CONTROLLERS` for this process, v1 first.

    Args:
        self_cgroup: the text of ``/proc/self/cgroup`` (read when ``None``).
        mountinfo: the text of ``/proc/self/mountinfo`` (read when ``None``).

    Returns:
        One :class:`Hierarchy` per v1 controller found, then the unified one for the rest.

    Example:
        >>> info = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\\n"
        >>> find_hierarchies("4:memory:/grader\\n", info)
        [Hierarchy(version=1, controllers=('memory',), own=PosixPath('/sys/fs/cgroup/memory/grader'))]
    """
    self_cgroup = Path("/proc/self/cgroup").read_text() if self_cgroup is None else self_cgroup
    mountinfo = Path("/proc/self/mountinfo").read_text() if mountinfo is None else mountinfo
    groups_v1: dict[str, str] = {}
    group_v2 = None
    for line in self_cgroup.splitlines():
        number, names, path = line.split(":", 2)
        if number == "0" and names == "":
            group_v2 = path
        for name in names.split(","):
            groups_v1[name] = path
    found, served = [], set()
    for kind, root, point, options in _mounts(mountinfo):
        if kind != "cgroup":
            continue
        for controller in CONTROLLERS:
            if controller in options and controller in groups_v1 and controller not in served:
                relative = _below(root, groups_v1[controller])
                if relative is not None:
                    found.append(Hierarchy(1, (controller,), Path(point) / relative))
                    served.add(controller)
    rest = [c for c in CONTROLLERS if c not in served]
    if rest and group_v2 is not None:
        for kind, root, point, _options in _mounts(mountinfo):
            relative = _below(root, group_v2) if kind == "cgroup2" else None
            if relative is None:
                continue
            own = Path(point) / relative
            if own.name == LEAF_GROUP:
                own = own.parent
            with contextlib.suppress(OSError):
                offered = set((own / "cgroup.controllers").read_text().split())
                usable = tuple(c for c in rest if c in offered)
                if usable:
                    found.append(Hierarchy(2, usable, own))
            break
    return found


def move_into_leaf(group: Path) -> Path:
    """Move every process of v2 ``group`` into its child :data:`LEAF_GROUP`, so that ``group`` may enable controllers.

    Args:
        group: a group of the unified hierarchy.

    Returns:
        The leaf's directory (``group`` itself when it is the root group, which may hold processes).

    Raises:
        OSError: the leaf could not be made, or a process not moved.
    """
    if not (group / "cgroup.type").exists():
        return group    # only the root group has no type
    leaf = group / LEAF_GROUP
    leaf.mkdir(exist_ok=True)
    for _round in range(LEAF_MOVE_ROUNDS):
        pids = (group / "cgroup.procs").read_text().split()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):   # it ended meanwhile
                (leaf / "cgroup.procs").write_text(pid)
    return leaf


def _v2_delegated(hierarchy: Hierarchy) -> None:
    """Enable the controllers for the grader's children in v2 (they must be in ``cgroup.subtree_control``)."""
    control = hierarchy.own / "cgroup.subtree_control"
    enabled = set(control.read_text().split())
    missing = [c for c in hierarchy.controllers if c not in enabled]
    if missing:
        move_into_leaf(hierarchy.own)
        control.write_text(" ".join(f"+{c}" for c in missing))


def cgroups_available() -> tuple[bool, str]:
    """Whether sandboxes can get groups for every controller of :data:`CONTROLLERS` (asked once per process).

    Returns:
        ``(True, "")`` or ``(False, reason)``.
    """
    usable, why_not, _limits_swap = _probe()
    return usable, why_not


@functools.lru_cache(maxsize=None)
def _probe() -> tuple[bool, str, bool]:
    """One probe group, created and removed once per process: whether sandboxes can get groups (and why not),
    and whether their memory groups limit swap (``False`` when there are none)."""
    try:
        hierarchies = find_hierarchies()
    except (OSError, ValueError) as error:
        return False, f"cannot read this process's cgroups: {error}", False
    served = {c for h in hierarchies for c in h.controllers}
    missing = [c for c in CONTROLLERS if c not in served]
    if missing:
        return False, f"no cgroup hierarchy offers the {', '.join(missing)} controller(s) to this process", False
    try:
        group = SandboxGroup.create(Limits(), hierarchies)
    except OSError as error:
        return False, f"cannot create a cgroup below this process's own ({error.strerror}: {error.filename})", False
    try:
        return True, "", group.limits_swap()
    finally:
        group.remove()


def host_swaps(swaps: str | None = None) -> bool:
    """Whether this host has swap space in use (a line below ``/proc/swaps``' header).

    Example:
        >>> host_swaps("Filename Type Size Used Priority"), host_swaps("Filename\\n/swapfile file 1024 0 -2")
        (False, True)
    """
    if swaps is None:
        try:
            swaps = Path("/proc/swaps").read_text()
        except OSError:
            return False
    return len(swaps.strip().splitlines()) > 1


def swap_unlimited() -> bool:
    """Whether a sandbox could swap past its memory limit here: the host swaps and its groups cannot limit swap.

    The groups limit swap where the kernel accounts it (v1 ``memory.memsw.limit_in_bytes``, v2
    ``memory.swap.max``); the probe group of :func:`cgroups_available` shows whether it does.
    """
    if not host_swaps():
        return False
    usable, _why_not, limits_swap = _probe()
    return usable and not limits_swap


def _write(path: Path, value: str) -> None:
    path.write_text(value)


class SandboxGroup:
    """The groups of one sandbox, one per hierarchy; see the module docstring."""

    def __init__(self, directories: dict[Path, Hierarchy]) -> None:
        self.directories = directories

    @classmethod
    def create(cls, limits: Limits, hierarchies: list[Hierarchy] | None = None) -> "SandboxGroup":
        """Create and limit the groups of a new sandbox.

        Args:
            limits: the sandbox's limits.
            hierarchies: where (default: :func:`find_hierarchies`).

        Returns:
            The groups, empty until a process joins them.

        Raises:
            OSError: a group could not be created or limited (those already made are removed), or no
                hierarchy offers one of :data:`CONTROLLERS` (the run would go without that limit, unsaid).
        """
        hierarchies = find_hierarchies() if hierarchies is None else hierarchies
        served = {controller for hierarchy in hierarchies for controller in hierarchy.controllers}
        missing = [controller for controller in CONTROLLERS if controller not in served]
        if missing:
            raise OSError(errno.ENOENT, f"no cgroup hierarchy offers the {', '.join(missing)} controller(s) "
                                        "to this process now")
        name = f"{GROUP_PREFIX}{os.getpid()}-{next(_counter)}"
        group = cls({})
        try:
            for hierarchy in hierarchies:
                if hierarchy.version == 2:
                    _v2_delegated(hierarchy)
                directory = hierarchy.own / name
                directory.mkdir()
                group.directories[directory] = hierarchy
                group._limit(directory, hierarchy, limits)
        except OSError:
            group.remove()
            raise
        return group

    @staticmethod
    def _limit(directory: Path, hierarchy: Hierarchy, limits: Limits) -> None:
        memory = str(limits.sandbox_memory_mb * 2**20)
        quota = str(max(1000, int(limits.cpus * CPU_PERIOD_US)))
        for controller in hierarchy.controllers:
            if hierarchy.version == 1 and controller == "cpu":
                _write(directory / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                _write(directory / "cpu.cfs_quota_us", quota)
            elif hierarchy.version == 1 and controller == "memory":
                _write(directory / "memory.limit_in_bytes", memory)
                # Memory and swap together: without it a sandbox swaps past its limit (v2's swap.max is 0).
                if (directory / "memory.memsw.limit_in_bytes").exists():
                    _write(directory / "memory.memsw.limit_in_bytes", memory)
                # Kernels before 5.x charge kernel memory only once it has a limit of its own;
                # later ones charge it to the group anyway and ignore (or refuse) this file.
                with contextlib.suppress(OSError):
                    _write(directory / "memory.kmem.limit_in_bytes", memory)
            elif hierarchy.version == 2 and controller == "cpu":
                _write(directory / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            elif hierarchy.version == 2 and controller == "memory":
                _write(directory / "memory.max", memory)
                if (directory / "memory.swap.max").exists():
                    _write(directory / "memory.swap.max", "0")
            elif controller == "pids":
                _write(directory / "pids.max", str(limits.sandbox_processes))

    def limits_swap(self) -> bool:
        """Whether the memory group limits swap too (where the kernel accounts swap to cgroups)."""
        for directory, hierarchy in self.directories.items():
            if "memory" in hierarchy.controllers:
                name = "memory.memsw.limit_in_bytes" if hierarchy.version == 1 else "memory.swap.max"
                return (directory / name).exists()
        return False

    def procs_files(self) -> list[Path]:
        """The ``cgroup.procs`` files a process writes its pid to, to join every group."""
        return [directory / "cgroup.procs" for directory in self.directories]

    def oom_kills(self) -> int:
        """How many processes the memory limit killed (v1 ``memory.oom_control``, v2 ``memory.events``)."""
        for directory, hierarchy in self.directories.items():
            if "memory" not in hierarchy.controllers:
                continue
            name = "memory.oom_control" if hierarchy.version == 1 else "memory.events"
            with contextlib.suppress(OSError, ValueError):
                for line in (directory / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        return 0

    def remove(self) -> None:
        """Kill every process still in the groups, then remove them (errors are ignored: best effort)."""
        deadline = time.monotonic() + REMOVE_TIMEOUT_S
        for directory in list(self.directories):
            while directory.exists() and time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    pids = [int(p) for p in (directory / "cgroup.procs").read_text().split()]
                    for pid in pids:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(pid, signal.SIGKILL)
                    if not pids:
                        directory.rmdir()
                        break
                time.sleep(0.01)
            self.directories.pop(directory, None)


def remove_stale_groups(hierarchies: list[Hierarchy] | None = None) -> int:
    """Remove the empty sandbox groups left by graders that no longer run (killed with SIGKILL, say).

    Returns:
        How many groups were removed.
    """
    removed = 0
    with contextlib.suppress(OSError, ValueError):
        hierarchies = find_hierarchies() if hierarchies is None else hierarchies
    for hierarchy in hierarchies or []:
        with contextlib.suppress(OSError):
            for directory in hierarchy.own.glob(GROUP_PREFIX + "*"):
                owner = directory.name[len(GROUP_PREFIX):].split("-")[0]
                if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                    with contextlib.suppress(OSError):
                        directory.rmdir()
                        removed += 1
    return removed


def join_command(procs_files: list[Path], command: list[str]) -> list[str]:
    """``command`` started by a shell that first moves itself into the groups, then execs it.

    The shell's pid is the command's pid, so the sandbox's first process, and
    every process it forks, starts inside the groups.

    Example:
        >>> join_command([Path("/g/cgroup.procs")], ["bwrap", "true"])[3:]
        ['sh', '/g/cgroup.procs', '--', 'bwrap', 'true']
    """
    script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
    return ["/bin/sh", "-c", script, "sh", *map(str, procs_files), "--", *command]
