"""`coursekit.hub.supervisor`: the hub's process forwards Ctrl-C once and leaves none of its tree behind.

Each test runs :func:`~coursekit.hub.supervisor.supervise` in a Python process of its own (it makes
that process a subreaper) over a small command that misbehaves the way a stopping Jupyter server's
tree can: a process in a session of its own that outlives its parent, one that ignores ``SIGTERM``,
one that ends while the command still runs (and must not be left a zombie).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a subreaper is Linux's")

# A grandchild in a session of its own, as jupyter_client starts a kernel: it writes its id, then sleeps.
ORPHAN = textwrap.dedent("""
    import subprocess, sys, time
    ignore_term = sys.argv[1] == "ignore-term"
    code = (("import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " if ignore_term else "")
            + "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)")
    subprocess.Popen([sys.executable, "-c", code, sys.argv[2]], start_new_session=True)
    deadline = time.monotonic() + 30
    import os
    while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
        time.sleep(0.05)
    sys.exit(int(sys.argv[3]))
""")


def start_supervisor(command: list[str], grace_s: float, log: Path) -> subprocess.Popen:
    """``supervise(command)`` in a process of its own, in a session of its own (as in a terminal)."""
    code = ("import sys; from coursekit.hub.supervisor import supervise; "
            f"sys.exit(supervise({command!r}, grace_s={grace_s!r}))")
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def read_pid(path: Path, timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written within {timeout_s} s")


@pytest.mark.parametrize("behaviour", ["plain", "ignore-term"])
def test_a_process_the_command_left_in_a_session_of_its_own_is_stopped_and_named(tmp_path: Path,
                                                                                 behaviour: str) -> None:
    pid_file, log = tmp_path / "orphan.pid", tmp_path / "supervisor.log"
    supervisor = start_supervisor([sys.executable, "-c", ORPHAN, behaviour, str(pid_file), "3"], 1.0, log)
    try:
        assert supervisor.wait(timeout=60) == 3, "the command's exit status comes back"
        orphan = read_pid(pid_file)
        assert not alive(orphan), f"the orphan {orphan} outlived the supervisor"
        assert f"stopping process {orphan} the hub left behind" in log.read_text()
    finally:
        if pid_file.exists() and alive(int(pid_file.read_text() or 0)):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_without_the_supervisor_the_same_orphan_survives(tmp_path: Path) -> None:
    """The control: what the hub did before it was supervised (so the test above can fail)."""
    pid_file = tmp_path / "orphan.pid"
    subprocess.run([sys.executable, "-c", ORPHAN, "plain", str(pid_file), "0"], check=True, timeout=60)
    orphan = read_pid(pid_file)
    try:
        assert alive(orphan)
    finally:
        os.kill(orphan, signal.SIGKILL)


@pytest.mark.slow
def test_ctrl_c_reaches_the_command_once_and_its_exit_status_comes_back(tmp_path: Path) -> None:
    count, log = tmp_path / "sigints", tmp_path / "supervisor.log"
    command = textwrap.dedent(f"""
        import signal, sys, time
        def note(signum, frame):
            with open({str(count)!r}, "a") as out:
                out.write("INT\\n")
        signal.signal(signal.SIGINT, note)
        open({str(count)!r}, "a").close()
        time.sleep(3)
        sys.exit(0)
    """)
    supervisor = start_supervisor([sys.executable, "-c", command], 1.0, log)
    deadline = time.monotonic() + 30
    while not count.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(supervisor.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends to the foreground group
    assert supervisor.wait(timeout=60) == 0, log.read_text()
    assert count.read_text() == "INT\n", "the command got Ctrl-C exactly once"


@pytest.mark.slow
def test_an_orphan_that_ends_while_the_command_runs_is_reaped(tmp_path: Path) -> None:
    pid_file, log = tmp_path / "orphan.pid", tmp_path / "supervisor.log"
    command = textwrap.dedent(f"""
        import os, subprocess, sys, time
        middle = subprocess.Popen([sys.executable, "-c",
            "import os, subprocess, sys; "
            "p = subprocess.Popen(['sleep', '0.5'], start_new_session=True); "
            "open({str(pid_file)!r}, 'w').write(str(p.pid))"])
        middle.wait()
        time.sleep(4)
    """)
    supervisor = start_supervisor([sys.executable, "-c", command], 1.0, log)
    orphan = read_pid(pid_file)
    time.sleep(2)  # the orphan ended 0.5 s after it started; the command still runs
    stat = Path(f"/proc/{orphan}/stat")
    state = stat.read_text().rsplit(")", 1)[1].split()[0] if stat.exists() else "gone"
    assert state == "gone", f"the ended orphan {orphan} is left as {state!r} (a zombie nobody reaps)"
    assert supervisor.wait(timeout=60) == 0, log.read_text()


@pytest.mark.slow
def test_a_hang_up_reaches_the_command_as_sigterm_which_jupyterhub_cleans_up_on(tmp_path: Path) -> None:
    """Hub review s45 r4, M1: JupyterHub handles SIGTERM and SIGINT only; a forwarded SIGHUP killed it outright,
    its proxy's and servers' process ids left for the next start to signal."""
    got, log = tmp_path / "signals", tmp_path / "supervisor.log"
    command = textwrap.dedent(f"""
        import signal, sys, time
        def note(signum, frame):
            with open({str(got)!r}, "a") as out:
                out.write(signal.Signals(signum).name + "\\n")
            sys.exit(0)
        signal.signal(signal.SIGTERM, note)
        signal.signal(signal.SIGHUP, note)
        open({str(got)!r}, "a").close()
        time.sleep(30)
    """)
    supervisor = start_supervisor([sys.executable, "-c", command], 1.0, log)
    deadline = time.monotonic() + 30
    while not got.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(supervisor.pid, signal.SIGHUP)  # the terminal hung up
    assert supervisor.wait(timeout=60) == 0, log.read_text()
    assert got.read_text() == "SIGTERM\n"


def test_a_line_that_cannot_be_printed_does_not_stop_the_clean_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub review s45 r4, S1: after a hang-up every print to the terminal fails (EIO); the supervisor's first
    "stopping process" line raised before it stopped anything, and the accounts stayed open."""
    import errno

    from coursekit.hub.supervisor import say_if_possible

    class GoneTerminal:
        def write(self, text: str) -> int:
            raise OSError(errno.EIO, "Input/output error")

        def flush(self) -> None:
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(sys, "stderr", GoneTerminal())
    say_if_possible("stopping process 1 the hub left behind: ...")  # no exception
