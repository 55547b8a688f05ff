"""The sandbox's walls, one at a time: cgroups, the seccomp filter, banned operators, the stand-ins' record."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from coursekit.grading.cgroups import (CPU_PERIOD_US, Hierarchy, SandboxGroup, cgroups_available, find_hierarchies,
                                       join_command, remove_stale_groups)
from coursekit.grading.kernel import BannedOperation, _banned
from coursekit.grading.limits import Limits
from coursekit.grading.seccomp import memfd_filter
from conftest import in_ci

pytestmark = pytest.mark.grading

MOUNTINFO = (
    "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n"
    "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
)
SELF = "8:pids:/\n4:memory:/docker/abc/grader\n1:cpu:/\n0::/grader.scope\n"


def _need_cgroups() -> None:
    ok, reason = cgroups_available()
    if not ok:
        if in_ci():
            pytest.fail(f"cgroups are required in CI: {reason}")
        pytest.skip(f"cgroups are not available here: {reason}")


def test_hierarchies_are_found_below_the_graders_own_group() -> None:
    found = find_hierarchies(SELF, MOUNTINFO)
    assert found[:2] == [
        Hierarchy(1, ("cpu",), Path("/sys/fs/cgroup/cpu")),
        Hierarchy(1, ("memory",), Path("/sys/fs/cgroup/memory/grader")),   # the mount shows /docker/abc as its root
    ]
    # pids has no v1 mount here: the unified hierarchy serves it if its own group offers it (not readable here).
    assert all(h.version == 1 for h in found)


def test_v2_limits_are_written_in_v2_files(tmp_path: Path) -> None:
    """On a unified hierarchy (not mounted on this machine): the files and values a v2 kernel reads."""
    own = tmp_path / "grader.scope"
    own.mkdir()
    (own / "cgroup.subtree_control").write_text("")
    group = SandboxGroup.create(Limits(memory_mb=512, disk_mb=16, nproc=10, cpus=0.5),
                                [Hierarchy(2, ("cpu", "memory", "pids"), own)])
    [directory] = group.directories
    assert (own / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (directory / "cpu.max").read_text() == f"50000 {CPU_PERIOD_US}"
    assert (directory / "memory.max").read_text() == str((512 + 32 + 512) * 2**20)
    assert (directory / "pids.max").read_text() == "26"
    assert directory.parent == own and directory.name.startswith(f"coursekit-{os.getpid()}-")


def test_v1_groups_limit_cpu_memory_and_processes_and_are_removed() -> None:
    _need_cgroups()
    limits = Limits(memory_mb=512, disk_mb=16, nproc=10, cpus=0.5)
    group = SandboxGroup.create(limits)
    try:
        by_controller = {h.controllers[0]: d for d, h in group.directories.items() if h.version == 1}
        own = {h.controllers[0]: h.own for h in group.directories.values()}
        for controller, directory in by_controller.items():
            assert directory.parent == own[controller]
        if "cpu" in by_controller:
            assert (by_controller["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
        if "memory" in by_controller:
            assert int((by_controller["memory"] / "memory.limit_in_bytes").read_text()) == 1056 * 2**20
        if "pids" in by_controller:
            assert (by_controller["pids"] / "pids.max").read_text().strip() == "26"
        # A process that joins the groups first, then holds 1.5 GiB, is killed by the memory limit.
        hog = "b = b'1' * (1536 * 2**20)\nprint('survived')"
        done = subprocess.run(join_command(group.procs_files(), [sys.executable, "-c", hog]),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == -9 and "survived" not in done.stdout
        assert group.oom_kills() >= 1
    finally:
        directories = list(group.directories)
        group.remove()
    assert not any(d.exists() for d in directories)


def test_stale_groups_of_dead_graders_are_removed() -> None:
    _need_cgroups()
    [first, *_] = find_hierarchies()
    stale = first.own / "coursekit-999999999-0"
    stale.mkdir()
    assert remove_stale_groups() >= 1 and not stale.exists()


def test_the_seccomp_filter_denies_memfd_create_and_nothing_else(tmp_path: Path) -> None:
    program = memfd_filter()
    if program is None:
        pytest.skip("no seccomp program for this architecture")
    if os.geteuid() != 0 or not Path("/usr/bin/bwrap").exists():
        if in_ci():
            pytest.fail("bubblewrap as root is required in CI")
        pytest.skip("bubblewrap as root is needed to load the filter")
    read, write = os.pipe()
    os.write(write, program)
    os.close(write)
    code = ("import os\ntry:\n    os.memfd_create('x')\n    print('allowed')\nexcept PermissionError:\n"
            "    print('denied')\nprint(len(os.listdir('/proc/self/fd')) > 0, os.getpid() > 0)")
    done = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--seccomp", str(read),
                           sys.executable, "-I", "-c", code], pass_fds=(read,), capture_output=True, text=True,
                          timeout=60)
    os.close(read)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["denied", "True", "True"]


def test_a_banned_operator_raises_by_any_route_only_while_banned() -> None:
    logits, targets = torch.randn(3, 4), torch.tensor([0, 1, 3])
    hits: list[str] = []
    routes = [
        lambda: F.cross_entropy(logits, targets),
        lambda: getattr(F, "cross" + "_entropy")(logits, targets),
        lambda: torch.ops.aten._log_softmax(logits, -1, False),
        lambda: logits.log_softmax(-1),
    ]
    with _banned(["_log_softmax"], hits):
        for route in routes:
            with pytest.raises(BannedOperation):
                route()
        assert torch.logsumexp(logits, -1).shape == (3,)
    assert hits == ["_log_softmax"] * len(routes)
    torch.testing.assert_close(F.cross_entropy(logits, targets, reduction="none"),
                               torch.logsumexp(logits, -1) - logits[torch.arange(3), targets])


def test_a_ban_covers_the_sparse_layouts_kernels_too() -> None:
    """Grader review r1, finding 1: a1's log-softmax must not be reachable through a sparse tensor."""
    logits = torch.randn(3, 4)
    hits: list[str] = []
    with _banned(["_sparse_log_softmax"], hits), pytest.raises(BannedOperation):
        torch.sparse.log_softmax(logits.to_sparse(), -1)
    assert hits == ["_sparse_log_softmax"]
    torch.testing.assert_close(torch.sparse.log_softmax(logits.to_sparse(), -1).to_dense(), logits.log_softmax(-1))


def test_banning_cross_entropy_stops_it_with_and_without_gradients() -> None:
    """Grader review r1, finding 7: a4 bans the composite operator behind F.cross_entropy; its CPU kernel fires."""
    logits, targets = torch.randn(3, 4, requires_grad=True), torch.tensor([0, 1, 3])
    hits: list[str] = []
    with _banned(["cross_entropy_loss"], hits):
        for inputs in (logits, logits.detach()):
            with pytest.raises(BannedOperation):
                F.cross_entropy(inputs, targets, label_smoothing=0.1)
        assert F.nll_loss(F.log_softmax(logits, -1), targets).requires_grad, "the hand-written route still works"
    assert hits == ["cross_entropy_loss"] * 2


def test_the_kernel_reports_each_call_as_it_ends_and_skips_a_function_that_timed_out() -> None:
    from coursekit.grading.kernel import Kernel, _run
    from coursekit.grading.protocol import AdapterReport, CallReport, CallStatus, RunCalls, RunCells
    from coursekit.grading.wire import encode_value

    kernel = Kernel(Limits(timeout_s=0.5).for_runner(), dedicated_uid=False)
    cells = [{"index": 0, "source": "def slow(x):\n    while True:\n        pass\ndef twice(x):\n    return 2 * x\n"}]
    assert [r.failed for r in _run(kernel, RunCells(cells))] == [False]

    def call(i: int, name: str) -> dict:
        return {"id": f"q#{i}", "kind": "function", "name": name, "tensors": False, "args": [encode_value(i)],
                "kwargs": {}, "banned": []}

    reports = list(_run(kernel, RunCalls(["def _adapted(x):\n    return twice(x) + 1\n"],
                                         [call(0, "slow"), call(1, "_adapted"), call(2, "slow")])))
    assert reports[0] == AdapterReport(0)
    assert [(r.call_id, r.status) for r in reports[1:]] == [
        ("q#0", CallStatus.TIMEOUT), ("q#1", CallStatus.OK), ("q#2", CallStatus.NOT_RUN)]
    assert reports[2] == CallReport("q#1", CallStatus.OK, encode_value(3))
