"""The fork server: a runner it starts sits in the same sandbox, with the same limits, as one bubblewrap starts."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from typing import Any

import pytest

from conftest import require_sandbox
from coursekit.grading import forkserver
from coursekit.grading.bwrap import capability_mask, requested_capabilities
from coursekit.grading.limits import Limits
from coursekit.grading.package_view import plan_view
from coursekit.grading.sandbox import Job, RawRun, run_job
from coursekit.grading.secret import SECRET_VARIABLE

pytestmark = pytest.mark.grading

#: a cell that describes the process it runs in (the kernel) and its parent (the runner) as JSON.
NAMESPACES = ("pid", "mnt", "net", "ipc", "uts", "cgroup")
PROBE = f"NAMESPACES = {NAMESPACES!r}\n" + r'''
import json, os, random, resource, sys
import numpy
def status(pid):
    keep = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
    return {k: v.strip() for k, _, v in (l.partition(":") for l in open(f"/proc/{pid}/status")) if k in keep}
def withheld():
    from coursekit.losses import nll
    try:
        nll.token_nll(None, None)
    except BaseException as error:
        return type(error).__name__
    return "computed"
def memfd():
    try:
        os.close(os.memfd_create("probe"))
    except OSError as error:
        return type(error).__name__
    return "created"
def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline").read().split("\0")[:4]
    except OSError as error:
        return str(error)
print(json.dumps({
    "kernel": status("self"), "runner": status(os.getppid()), "pid 2": status(2), "memfd": memfd(),
    "namespaces": {name: os.stat(f"/proc/self/ns/{name}").st_ino for name in NAMESPACES}, "environment": dict(os.environ), "cwd": os.getcwd(),
    "fds": sorted(os.listdir("/proc/self/fd")), "sys.path": sys.path,
    "rlimits": {name: resource.getrlimit(getattr(resource, name)) for name in
                ("RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_CORE", "RLIMIT_STACK")},
    "address space limit": resource.getrlimit(resource.RLIMIT_AS)[0],
    "hostname": os.uname().nodename, "root": sorted(os.listdir("/")),
    "mounts": [line.split()[4] + " " + line.split(" - ")[1] for line in open("/proc/self/mountinfo")],
    "cgroup": open("/proc/self/cgroup").read(), "network": sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]),
    "processes": {pid: cmdline(pid) for pid in sorted(os.listdir("/proc"), key=lambda p: p.zfill(9)) if pid.isdigit()},
    "coursekit modules": sorted(m for m in sys.modules if m == "coursekit" or m.startswith("coursekit.")),
    "reference": withheld(),
    "random": [random.getrandbits(64), int(numpy.random.randint(2**31))],
}))
'''


@pytest.fixture(autouse=True)
def _sandbox() -> None:
    require_sandbox()


def _probe(use_fork_server: bool) -> tuple[RawRun, dict[str, Any]]:
    job = Job(files={"data.txt": base64.b64encode(b"x").decode()}, cells=[{"index": 0, "source": PROBE}],
              calls=[], adapters=[], view=plan_view({"token_nll"}, []))
    run = run_job(job, Limits(), cells_s=120.0, calls_s=60.0, use_fork_server=use_fork_server)
    assert run.finished and len(run.cells) == 1, (run, run.diagnostics[-2000:])
    return run, json.loads(run.cells[0].stdout)


@pytest.mark.slow
def test_a_forked_runner_and_its_kernel_see_the_sandbox_a_bubblewrap_runner_sees() -> None:
    execed_run, execed = _probe(use_fork_server=False)
    forked_run, forked = _probe(use_fork_server=True)
    assert (execed_run.forked, forked_run.forked) == (False, True)
    # The runner exits right after its last word; the grader, once it has read it, kills the sandbox: 0 or -9.
    assert forked_run.returncode in (0, -9) and forked_run.diagnostics == ""
    same = ("environment", "cwd", "fds", "sys.path", "rlimits", "hostname", "root", "mounts", "cgroup", "network",
            "coursekit modules", "reference", "memfd")
    assert {key: forked[key] for key in same} == {key: execed[key] for key in same}
    assert forked["memfd"] == "PermissionError", "the seccomp filter denies memfd_create"
    host = {name: os.stat(f"/proc/self/ns/{name}").st_ino for name in NAMESPACES}
    for seen in (execed, forked):
        assert [name for name in NAMESPACES if seen["namespaces"][name] == host[name]] == [], seen["namespaces"]
    assert forked["network"] == ["lo"] and forked["hostname"] == "sandbox" and forked["reference"] == "ReferenceWithheld"
    # The address-space limit is the runner's own reading of the kernel's start plus the budget.
    assert abs(forked["address space limit"] - execed["address space limit"]) < 64 * 2**20
    requested = capability_mask(requested_capabilities())
    for who in ("kernel", "runner"):
        # Identical but for two sets bubblewrap leaves wider: it keeps the bounding set whole and makes the
        # capabilities asked for inheritable; the fork server keeps only those asked for, in neither.
        differing = {"CapBnd", "CapInh"}
        assert {k: v for k, v in forked[who].items() if k not in differing} == \
               {k: v for k, v in execed[who].items() if k not in differing}, (forked[who], execed[who])
        assert (int(forked[who]["CapBnd"], 16), int(forked[who]["CapInh"], 16)) == (requested, 0)
    assert forked["kernel"]["NoNewPrivs"] == "1" and forked["kernel"]["Seccomp"] == "2"
    assert int(forked["kernel"]["CapEff"], 16) == int(forked["kernel"]["CapPrm"], 16) == 0
    assert forked["kernel"]["Uid"].split() == execed["kernel"]["Uid"].split()[:1] * 4 != ["0"] * 4
    # One more process: the placeholder that holds the namespaces (pid 2), without capabilities, then the
    # runner and the kernel.
    assert len(forked["processes"]) == len(execed["processes"]) + 1 == 4
    assert forked["processes"]["2"][1:] == ["-I", "-S", "-c"], forked["processes"]
    assert int(forked["pid 2"]["CapEff"], 16) == int(forked["pid 2"]["CapPrm"], 16) == 0, forked["pid 2"]


@pytest.mark.slow
def test_each_forked_runner_seeds_its_random_generators_afresh() -> None:
    runs = [_probe(use_fork_server=True) for _ in range(2)]
    assert all(run.forked for run, _ in runs)
    draws = [seen["random"] for _, seen in runs]
    assert draws[0][0] != draws[1][0] and draws[0][1] != draws[1][1], draws


def test_the_fork_server_does_not_hold_the_grading_secret() -> None:
    """(That it holds nothing of ``coursekit`` is in the comparison above: the kernel's modules are the same.)"""
    server = forkserver.shared()
    assert _probe(use_fork_server=True)[0].forked
    assert forkserver.shared() is server and server.alive
    with open(f"/proc/{server.process.pid}/environ", "rb") as handle:
        environment = dict(item.partition(b"=")[::2] for item in handle.read().split(b"\0") if item)
    assert SECRET_VARIABLE.encode() not in environment and os.environ[SECRET_VARIABLE]
    assert not any(os.environ[SECRET_VARIABLE].encode() in value for value in environment.values())
    with open(f"/proc/{server.process.pid}/cmdline", "rb") as handle:
        assert handle.read().split(b"\0")[1:3] == [b"-I", forkserver.__file__.encode()]


@pytest.mark.slow
def test_without_the_fork_server_bubblewrap_starts_the_runner_and_the_run_says_why(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable() -> forkserver.ForkServer:
        raise ConnectionRefusedError("no fork server in this test")

    monkeypatch.setattr(forkserver, "shared", unreachable)
    run, seen = _probe(use_fork_server=True)
    assert not run.forked and seen["hostname"] == "sandbox"
    assert run.fork_server_note == "the fork server did not start the runner (no fork server in this test)"


def _refused(namespaces: dict[str, int], pidfd: int) -> str:
    """What the starter says of a request naming this test's own process (in the host's namespaces)."""
    pipes = [os.pipe() for _ in range(4)]
    ours = [pipes[0][1], pipes[1][0], pipes[2][0], pipes[3][0]]
    theirs = (pipes[0][0], pipes[1][1], pipes[2][1], pipes[3][1], pidfd)
    try:
        forkserver.shared().start_runner(os.getpid(), namespaces, [], 0, None, "/nonexistent/runner.py", "/",
                                         theirs, deadline=time.monotonic() + 30.0)
    finally:
        for fd in theirs:
            os.close(fd)
    try:
        with os.fdopen(os.dup(pipes[3][0]), "rb") as status:
            said = status.read().decode()
        assert said.endswith("\n") and said.count("\n") == 1, said
        assert os.read(pipes[1][0], 100) == b"", "no runner started"
        return said
    finally:
        for fd in ours:
            os.close(fd)


def _host_namespaces() -> dict[str, int]:
    return {name: os.stat(f"/proc/self/ns/{name}").st_ino for name in NAMESPACES}


@pytest.mark.parametrize("other", NAMESPACES)
def test_a_placeholder_pid_in_other_namespaces_is_refused(other: str) -> None:
    """Review r42, S1: a PID reused after the placeholder died must not lead a runner into another sandbox; here
    bubblewrap's report differs from the process's namespaces in one."""
    sandbox_like = {**_host_namespaces(), other: _host_namespaces()[other] + 1}
    said = _refused(sandbox_like, os.pidfd_open(os.getpid()))
    assert said.startswith("failed OSError(") and f"is not in the sandbox's {other} namespace" in said, said


def test_a_placeholder_that_died_is_refused_even_where_its_pid_matches() -> None:
    """Review r44, low 1: namespace inodes are reused too; the pidfd taken when the placeholder was found must
    still name a live process."""
    child = os.fork()
    if child == 0:
        os._exit(0)
    try:
        pidfd = os.pidfd_open(child)
    finally:
        os.waitpid(child, 0)
    said = _refused(_host_namespaces(), pidfd)
    assert said.startswith("failed ProcessLookupError("), said


@pytest.mark.slow
def test_a_runner_that_cannot_enter_the_sandbox_is_started_by_bubblewrap_instead(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Review r42, L1: a failure after the request was sent falls back too, and the note says what failed."""
    from coursekit.grading import sandbox

    monkeypatch.setattr(sandbox, "SANDBOX_HOME", "/no/such/home")
    run, seen = _probe(use_fork_server=True)
    assert not run.forked and seen["cwd"] == "/home/student/work"
    assert run.fork_server_note.startswith("the fork server did not start the runner (failed the runner did not "
                                           "enter the sandbox: FileNotFoundError("), run.fork_server_note


@pytest.mark.slow
def test_a_start_that_hangs_falls_back_to_bubblewrap_with_the_cells_budget_left(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Review r43, S1: a start that never reports must not use up the cells' budget; bubblewrap gets the rest."""
    from coursekit.grading import sandbox

    held: list[int] = []

    told: list[str] = []

    class Silent:
        def start_runner(self, *args: Any, **options: Any) -> None:
            held.extend(os.dup(fd) for fd in args[-1])  # keeps every pipe open and starts nothing

        def silent_start(self) -> None:
            told.append("silent")

        def heard(self) -> None:
            told.append("heard")

    monkeypatch.setattr(forkserver, "shared", Silent)
    monkeypatch.setattr(sandbox, "FORK_START_S", 2.0)
    try:
        job = Job(files={"data.txt": base64.b64encode(b"x").decode()}, cells=[{"index": 0, "source": "print(1)"}],
                  calls=[], adapters=[], view=plan_view(set(), []))
        run = run_job(job, Limits(), cells_s=60.0, calls_s=60.0)
    finally:
        for fd in held:
            os.close(fd)
    assert run.finished and not run.forked and not run.wall_killed and run.cells[0].stdout == "1\n", run
    assert run.fork_server_note == ("the fork server did not start the runner (the runner did not report itself in "
                                    "the sandbox in time)"), run.fork_server_note
    assert run.cells_seconds >= 2.0, "the attempt's clock counts the hung start, as it counts any sandbox's start"
    assert run.seconds - run.cells_seconds - run.calls_seconds < 0.5, "no time is given back"
    assert told == ["silent"], "the server is told its start went unanswered"


@pytest.mark.slow
def test_a_request_waits_for_the_server_no_longer_than_its_deadline() -> None:
    """Review r45, low 1: a start queued behind another thread's stuck request gives up at its own deadline."""
    server = forkserver.ForkServer()
    try:
        with server._lock:  # another thread's request, stuck in its send
            started = time.monotonic()
            with pytest.raises(TimeoutError, match="other requests held the fork server"):
                server.start_runner(os.getpid(), {}, [], 0, None, "/nonexistent/runner.py", "/", (0, 1, 2, 0, 0),
                                    deadline=started + 0.5)
            assert 0.4 <= time.monotonic() - started < 5.0
    finally:
        server.close()


def test_a_server_is_stopped_only_after_starts_in_a_row_go_unanswered() -> None:
    """Review r46, S1, r47, 1 and r48, 1: the server is judged, not one request: a start cut short by a rerun's
    small cells' budget, or one hung starter among answering ones, leaves a serving server alone."""
    server = forkserver.ForkServer()
    try:
        for _ in range(forkserver.MAX_SILENT_STARTS - 1):
            server.silent_start()
        server.heard()
        for _ in range(forkserver.MAX_SILENT_STARTS - 1):
            server.silent_start()
        assert server.alive, "an answer in between resets the count"
        server.silent_start()
        assert not server.alive
    finally:
        server.close()


@pytest.mark.slow
def test_an_answered_start_counts_as_heard_even_when_it_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review r48, 3: a starter's "failed ..." is an answer: the server is serving."""
    told: list[str] = []

    class Failing:
        def start_runner(self, *args: Any, **options: Any) -> None:
            os.write(args[-1][3], b"failed OSError('x')\n")

        def silent_start(self) -> None:
            told.append("silent")

        def heard(self) -> None:
            told.append("heard")

    monkeypatch.setattr(forkserver, "shared", Failing)
    job = Job(files={}, cells=[{"index": 0, "source": "print(1)"}], calls=[], adapters=[], view=plan_view(set(), []))
    run = run_job(job, Limits(), cells_s=60.0, calls_s=60.0, use_sandbox=True)
    assert told == ["heard"] and not run.forked and run.finished
    assert run.fork_server_note == "the fork server did not start the runner (failed OSError('x'))"


@pytest.mark.slow
@pytest.mark.parametrize("why", ["no pidfds", "under the reserve and a second left"])
def test_the_server_is_not_asked_without_pidfds_or_time(why: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from coursekit.grading import sandbox

    def asked() -> forkserver.ForkServer:
        raise AssertionError("the fork server was asked")

    monkeypatch.setattr(forkserver, "shared", asked)
    if why == "no pidfds":
        monkeypatch.setattr(forkserver, "pidfds_available", lambda: False)
    cells_s = 60.0 if why == "no pidfds" else sandbox.BUBBLEWRAP_RESERVE_S + sandbox.MIN_FORK_BUDGET_S - 0.5
    job = Job(files={}, cells=[{"index": 0, "source": "print(1)"}], calls=[], adapters=[], view=plan_view(set(), []))
    run = run_job(job, Limits(), cells_s=cells_s, calls_s=60.0, use_sandbox=True)
    assert not run.forked and run.fork_server_note == "", run.fork_server_note
    assert run.finished and run.cells[0].stdout == "1\n", run


def test_a_report_naming_a_namespace_the_runner_would_not_join_is_refused() -> None:
    """Review r46, low 3: a user namespace (bubblewrap's --unshare-user) would leave the runner host-root."""
    said = _refused({**_host_namespaces(), "user": 1}, os.pidfd_open(os.getpid()))
    assert said.startswith("failed OSError(") and "namespaces the runner would not join: user" in said, said


def test_a_server_that_takes_no_request_is_stopped_at_the_deadline() -> None:
    """Review r46, low 2: a server alive but not reading (stopped here) is killed once its socket is full."""
    import signal as signals

    server = forkserver.ForkServer()
    held: list[int] = []
    try:
        server._control.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
        os.kill(server.process.pid, signals.SIGSTOP)
        with pytest.raises(TimeoutError, match="did not take the request"):
            for _ in range(1000):
                read, write = os.pipe()
                held += [read, write]
                server.start_runner(os.getpid(), {}, [], 0, None, "/nonexistent/runner.py", "/",
                                    (read, write, write, write, read), deadline=time.monotonic() + 0.5)
        assert not server.alive and server.process.returncode == -signals.SIGKILL
    finally:
        for fd in held:
            os.close(fd)
        server.close()


@pytest.mark.slow
def test_a_start_through_the_server_leaves_bubblewrap_its_reserve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review r49, 1: a hung start must leave bubblewrap enough of a short cells' budget to run the cells."""
    from coursekit.grading import sandbox

    held: list[int] = []

    class Silent:
        def start_runner(self, *args: Any, **options: Any) -> None:
            held.extend(os.dup(fd) for fd in args[-1])

        def silent_start(self) -> None:
            pass

    monkeypatch.setattr(forkserver, "shared", Silent)
    # Only the reserve may end the hung start: without it, the start would take the whole 16 s.
    monkeypatch.setattr(sandbox, "FORK_START_S", 60.0)
    monkeypatch.setattr(sandbox, "BUBBLEWRAP_RESERVE_S", 12.0)
    try:
        job = Job(files={}, cells=[{"index": 0, "source": "print(1)"}], calls=[], adapters=[],
                  view=plan_view(set(), []))
        run = run_job(job, Limits(), cells_s=16.0, calls_s=60.0, use_sandbox=True)
    finally:
        for fd in held:
            os.close(fd)
    assert held and run.fork_server_note.endswith("did not report itself in the sandbox in time)")
    assert run.finished and not run.wall_killed and run.cells[0].stdout == "1\n", run
