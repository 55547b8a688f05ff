"""`coursekit grade` against real services: a Dask scheduler with two workers, and a PostgreSQL gradebook."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from adversarial.corpus import WRONG_TOKEN_NLL
from adversarial.course import ASSIGNMENT, VENV_BIN, make_course, set_answer, solved_notebook, submit
from coursekit.grading.driver import GradeOptions, grade_assignment
from coursekit.grading.limits import Limits
from conftest import require_sandbox, require_system_tool

pytestmark = [pytest.mark.slow, pytest.mark.grading, pytest.mark.a1]

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def dask_cluster():
    port = _free_port()
    dask = str(VENV_BIN / "dask")
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    for _ in range(2):
        processes.append(subprocess.Popen(
            [dask, "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
             "--no-dashboard", "--memory-limit", "0"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        from distributed import Client

        deadline = time.monotonic() + 120
        with Client(f"tcp://127.0.0.1:{port}", timeout=120) as client:
            while len(client.scheduler_info()["workers"]) < 2:
                assert time.monotonic() < deadline, "the two Dask workers did not come up"
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def test_dask_executor_grades_on_two_workers(tmp_path: Path, dask_cluster: str) -> None:
    require_sandbox()
    course = make_course(tmp_path / "course")
    submit(course, "alice", solved_notebook(course))
    submit(course, "bob", set_answer(solved_notebook(course), "answer_token_nll", WRONG_TOKEN_NLL))
    options = GradeOptions(executor=f"dask://{dask_cluster}", limits=Limits(timeout_s=5), progress=False)
    reports = grade_assignment(course, ASSIGNMENT, options)
    assert [(r.student, r.score, r.outcome, r.sandboxed) for r in reports] == [
        ("alice", 10.0, "graded", True), ("bob", 7.0, "graded", True)]
    assert (course / "autograded" / "bob" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
    local = grade_assignment(course, ASSIGNMENT, GradeOptions(force=True, limits=Limits(timeout_s=5), progress=False))
    assert [r.questions for r in local] == [r.questions for r in reports]


@pytest.fixture()
def postgres(tmp_path: Path):
    require_system_tool(str(PG_BIN / "initdb"), "PostgreSQL 15 server binaries (Debian's postgresql package)")
    data = Path(tempfile.mkdtemp(prefix="coursekit-pg-"))
    os.chmod(data, 0o777)
    user = "postgres" if os.geteuid() == 0 else None
    prefix = ["runuser", "-u", user, "--"] if user else []
    port = _free_port()
    subprocess.run(prefix + [str(PG_BIN / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "grader"],
                   check=True, capture_output=True, timeout=120)
    server = subprocess.Popen(prefix + [str(PG_BIN / "postgres"), "-D", str(data / "db"), "-h", "127.0.0.1",
                                        "-p", str(port), "-k", str(data)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import psycopg2

        deadline = time.monotonic() + 60
        while True:
            try:
                connection = psycopg2.connect(host="127.0.0.1", port=port, user="grader", dbname="postgres")
                break
            except psycopg2.OperationalError:
                assert time.monotonic() < deadline, "PostgreSQL did not start"
                time.sleep(0.3)
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE seqloss")
        connection.close()
        # Written as PostgreSQL documents it; the grader supplies the installed driver.
        yield f"postgresql://grader@127.0.0.1:{port}/seqloss"
    finally:
        subprocess.run(prefix + [str(PG_BIN / "pg_ctl"), "-D", str(data / "db"), "stop", "-m", "fast"],
                       capture_output=True, timeout=60)
        server.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


def test_postgresql_gradebook(tmp_path: Path, postgres: str) -> None:
    require_sandbox()
    course = make_course(tmp_path / "course", db_url=postgres)
    assert not (course / "gradebook.db").exists()
    submit(course, "alice", solved_notebook(course))
    submit(course, "bob", set_answer(solved_notebook(course), "answer_token_nll", WRONG_TOKEN_NLL))
    options = GradeOptions(jobs=2, db_url=postgres, limits=Limits(timeout_s=5), progress=False)
    reports = grade_assignment(course, ASSIGNMENT, options)
    assert [(r.student, r.score) for r in reports] == [("alice", 10.0), ("bob", 7.0)]
    from nbgrader.api import Gradebook

    from coursekit.course.config import with_installed_driver

    with Gradebook(with_installed_driver(postgres), "seqloss") as gradebook:
        assert gradebook.find_submission(ASSIGNMENT, "bob").score == 7.0
    assert grade_assignment(course, ASSIGNMENT, options) == []
