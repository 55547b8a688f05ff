"""The instructors' and the students' pages, followed to the letter.

`book/for_instructors.md` ("Settings you may change", "The cycle, step by step")
and `book/for_students.md` are read, their ``bash`` blocks are taken in page
order, and each is run as printed, in a temporary course with its own exchange
and one home per student: only the path of the students' configuration is
substituted (the page writes it to ``/etc/jupyter/nbgrader_config.py`` on a hub
host; here each student's ``~/.jupyter/nbgrader_config.py``, as the page says
for a machine without a hub). The students are real system accounts (`ada`,
`alan`), because nbgrader's exchange names a submission after the account that
made it: the test needs root to create them, is skipped elsewhere (a failure
under ``CI=true``) and deletes them at the end. Between the instructor's steps
the students do
what the students' page says: ada fetches, answers, validates and submits;
alan submits the untouched notebook; grace's notebook arrives in an LMS
download. The regrade cycle the instructors' page describes in prose runs last.

A block the test does not know (a page that gained a command) fails the test,
so that the pages and the tools cannot drift apart unnoticed.
"""

from __future__ import annotations

import csv
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coursekit.hub.shared_python import this_python_to_share
from tests.conftest import in_ci
from tests.assignment_fixtures import WRONG, filled_in, read_notebook, solutions_of, write_notebook

REPO = Path(__file__).resolve().parents[1]
INSTRUCTORS_PAGE = REPO / "book" / "for_instructors.md"
STUDENTS_PAGE = REPO / "book" / "for_students.md"
VENV_BIN = Path(sys.executable).parent
ASSIGNMENT = "a1_sequence_loss"
HUB_STUDENT_CONFIG = "/etc/jupyter/nbgrader_config.py"
# What the students' page shows but this test does not run: installing packages into the test's
# environment and starting a JupyterLab server (the hub test drives JupyterLab).
NOT_RUN = ("python -m pip install", "jupyter lab ")

BASH_BLOCK = re.compile(r"^(?P<indent>[ \t]*)```bash\n(?P<body>.*?)^(?P=indent)```", re.MULTILINE | re.DOTALL)


def sections(page: Path) -> dict[str, str]:
    """The page's level-2 sections by title (the text before the first one under "")."""
    parts = re.split(r"^## +(.+)$", page.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {"": parts[0], **{title.strip(): body for title, body in zip(parts[1::2], parts[2::2])}}


def bash_blocks(text: str) -> list[str]:
    """Each ``bash`` fenced block of a markdown text: its lines stripped, without comment and blank lines."""
    blocks = []
    for match in BASH_BLOCK.finditer(text):
        lines = [line.strip() for line in match["body"].splitlines()]
        lines = [line for line in lines if line and not line.startswith("#")]
        blocks.append("\n".join(lines))
    return blocks


def test_bash_blocks_are_found_in_lists_and_at_the_margin() -> None:
    text = "Intro\n\n```bash\nnbgrader a\n```\n\n* item\n\n  ```bash\n  nbgrader b   # why\n  # only a comment\n\n  nbgrader c\n  ```\n"
    assert bash_blocks(text) == ["nbgrader a", "nbgrader b   # why\nnbgrader c"]


@dataclass
class Course:
    root: Path
    exchange: Path
    homes: dict[str, Path]
    env: dict[str, str]

    def instructor(self, block: str) -> subprocess.CompletedProcess[str]:
        return _bash(block, cwd=self.root, env=self.env)

    def student(self, name: str, block: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        # The student's own account: their uid, home and login name, none of the instructor's settings.
        env = {k: v for k, v in self.env.items() if not k.startswith("COURSEKIT_")}
        env.update(HOME=str(self.homes[name]), USER=name, LOGNAME=name)
        return _bash(block, cwd=cwd or self.homes[name], env=env, user=name)

    def scores(self, student: str) -> dict[str, tuple[float | None, float | None, float, bool]]:
        from nbgrader.api import Gradebook

        with Gradebook(self.env["COURSEKIT_DB_URL"]) as gradebook:
            notebook = gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
            return {g.name: (g.auto_score, g.manual_score, g.max_score, g.needs_manual_grade) for g in notebook.grades}


def _as_user(user: str, command: list[str]) -> list[str]:
    """``command`` run as ``user``, in the mount namespace ``make hub`` uses where that is needed.

    On this machine Python lives under root's private home (``/root/.pyenv``), which another
    account cannot enter; :mod:`coursekit.hub.shared_python` opens just that installation to
    them, for this one command, as it does for the hub's single-user servers.
    """
    as_user = ["setpriv", f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--clear-groups", *command]
    share = this_python_to_share()
    return as_user if share is None else share.command(as_user)


def _bash(block: str, *, cwd: Path, env: dict[str, str], user: str | None = None) -> subprocess.CompletedProcess[str]:
    command = ["bash", "-euo", "pipefail", "-c", block]
    result = subprocess.run(command if user is None else _as_user(user, command), cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, f"$ {block}\n(in {cwd}) failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


STUDENT_ACCOUNTS = ("ada", "alan")


@pytest.fixture()
def student_accounts() -> Iterator[tuple[str, ...]]:
    """System accounts for the exchange students, created for the test and deleted after it."""
    if os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("useradd", "unshare", "setpriv")):
        reason = "the students' system accounts need root, useradd, unshare and setpriv"
        if in_ci():
            pytest.fail(f"{reason} (required under CI=true)")
        pytest.skip(reason)
    created = []
    try:
        for name in STUDENT_ACCOUNTS:
            try:
                pwd.getpwnam(name)
                pytest.fail(f"a system account {name!r} exists already; the test will not use or remove it")
            except KeyError:
                pass
            subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/bash", name], check=True, capture_output=True)
            created.append(name)
        yield STUDENT_ACCOUNTS
    finally:
        for name in created:
            subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture()
def course(student_accounts: tuple[str, ...]) -> Iterator[Course]:
    # A private temporary directory (pytest prunes its own base directories between sessions).
    with tempfile.TemporaryDirectory(prefix="coursekit-pages-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)  # the students' accounts reach their homes and the exchange through it
        root = base / "assignments"
        root.mkdir()
        for name in ("nbgrader_config.py", "roster.csv"):
            shutil.copy2(REPO / "assignments" / name, root / name)
        for folder in ("source", "autograde"):
            shutil.copytree(REPO / "assignments" / folder, root / folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        exchange = base / "exchange"
        exchange.mkdir()
        exchange.chmod(0o1777)  # as the page asks: world-writable (nbgrader makes inbound/outbound below it)
        env = {k: v for k, v in os.environ.items() if not k.startswith("COURSEKIT_")}
        env["PATH"] = str(VENV_BIN) + os.pathsep + env.get("PATH", "")
        env["COURSEKIT_EXCHANGE"] = str(exchange)
        env["COURSEKIT_DB_URL"] = f"sqlite:///{root / 'gradebook.db'}"
        homes = {name: base / "home" / name for name in student_accounts}
        for name, home in homes.items():
            (home / ".jupyter").mkdir(parents=True)
            account = pwd.getpwnam(name)
            for path in (home, home / ".jupyter"):
                os.chown(path, account.pw_uid, account.pw_gid)
        yield Course(root=root, exchange=exchange, homes=homes, env=env)


def _students_blocks() -> dict[str, str]:
    """The students' page's commands, by nbgrader subcommand (the ones this test runs)."""
    runnable = {}
    for block in bash_blocks(STUDENTS_PAGE.read_text(encoding="utf-8")):
        lines = [line for line in block.splitlines() if not line.startswith(NOT_RUN)]
        if not lines:
            continue
        assert len(lines) == 1 and lines[0].startswith("nbgrader "), f"a students' page command this test does not know: {block!r}"
        runnable[lines[0].split()[1]] = lines[0]
    assert set(runnable) == {"fetch_assignment", "validate", "submit", "fetch_feedback"}, sorted(runnable)
    return runnable


def _answered(course: Course, notebook: dict, wrong: bool = False) -> dict:
    answers = solutions_of(read_notebook(course.root / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"))
    if wrong:
        cell, code, _ = WRONG[ASSIGNMENT]
        answers[cell] = code
    answered = filled_in(notebook, answers)
    for cell in answered["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "written_sum_vs_mean":
            cell["source"] = "The sum grows with the length of a sequence; the mean does not."
    return answered


@pytest.mark.slow
@pytest.mark.assignments
@pytest.mark.a1
def test_the_instructors_and_students_pages_work_as_printed(course: Course) -> None:
    students = _students_blocks()
    instructors = sections(INSTRUCTORS_PAGE)
    settings = bash_blocks(instructors["Settings you may change"])
    assert len(settings) == 1 and HUB_STUDENT_CONFIG in settings[0], settings
    for home in course.homes.values():
        course.instructor(settings[0].replace(HUB_STUDENT_CONFIG, str(home / ".jupyter" / "nbgrader_config.py")))

    done: list[str] = []
    for block in bash_blocks(instructors["The cycle, step by step"]):
        result = course.instructor(block)
        done.append(block.split()[1])
        if block.startswith("nbgrader release_assignment"):
            _students_fetch_and_submit(course, students)
        elif block.startswith("nbgrader collect"):
            _lms_download_arrives(course)
        elif block.startswith("nbgrader autograde"):
            # The page explains these warnings: one per test cell with hidden tests, per submission.
            warned = re.findall(r"Attribute 'checksum' for cell (\w+) has changed!", result.stdout + result.stderr)
            hidden = _cells_with_hidden_tests(course)
            assert sorted(warned) == sorted(hidden * 3), (warned, hidden)
            assert len(hidden) == 5 and "five per A1 notebook" in " ".join(instructors["The cycle, step by step"].split())
            auto = {name: sum(s[0] or 0 for n, s in course.scores(name).items() if n.startswith("test_"))
                    for name in ("ada", "alan", "grace")}
            assert auto == {"ada": 10.0, "alan": 0.0, "grace": 10.0}, auto
        elif block.startswith("coursekit mark"):
            assert result.stdout.strip() == f"ada {ASSIGNMENT} written_sum_vs_mean: 1.5 / 2; total 11.5 / 12", result.stdout
        elif "nbgrader release_feedback" in block:
            log = result.stdout + result.stderr
            assert "Releasing feedback for student 'ada'" in log and "Releasing feedback for student 'alan'" in log, log
            assert "grace" in log.split("Not released through the exchange", 1)[1].splitlines()[0], log
            _students_read_feedback(course, students)
        elif block.startswith("nbgrader export"):
            _check_export(course.root / "grades.csv")
    assert done == ["db", "generate_assignment", "release_assignment", "collect", "zip_collect", "autograde", "mark",
                    "generate_feedback", "export"], f"the cycle's commands changed: {done}"
    _regrade(course, instructors["The cycle, step by step"])


def _cells_with_hidden_tests(course: Course) -> list[str]:
    source = read_notebook(course.root / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    return [cell["metadata"]["nbgrader"]["grade_id"] for cell in source["cells"]
            if "### BEGIN HIDDEN TESTS" in "".join(cell["source"])]


def _students_fetch_and_submit(course: Course, students: dict[str, str]) -> None:
    for name in ("ada", "alan"):
        course.student(name, students["fetch_assignment"])
        folder = course.homes[name] / ASSIGNMENT
        notebook = folder / f"{ASSIGNMENT}.ipynb"
        assert notebook.is_file(), f"fetch_assignment made no {notebook}"
        if name == "ada":
            write_notebook(_answered(course, read_notebook(notebook)), notebook)
            validated = course.student(name, students["validate"], cwd=folder)
            assert "Success! Your notebook passes all the tests." in validated.stdout, validated.stdout
        course.student(name, students["submit"])


def _lms_download_arrives(course: Course) -> None:
    """grace uploaded to the learning platform; the instructor puts the download where the page says."""
    release = read_notebook(course.root / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    archive = course.root / "downloaded" / ASSIGNMENT / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "submissions.zip", "w") as download:
        download.writestr(f"grace_48213_904811_{ASSIGNMENT}.ipynb", json.dumps(_answered(course, release), indent=1))


def _students_read_feedback(course: Course, students: dict[str, str]) -> None:
    for name, expected in (("ada", "11.5"), ("alan", "0.0")):
        course.student(name, students["fetch_feedback"])
        pages = sorted((course.homes[name] / ASSIGNMENT / "feedback").glob(f"*/{ASSIGNMENT}.html"))
        assert len(pages) == 1, f"{name} fetched no feedback"
        html = pages[0].read_text(encoding="utf-8")
        assert f"Score: {expected} / 12.0" in html or f"{expected} / 12" in html, f"{name}'s feedback shows no score {expected}"
        assert "BEGIN HIDDEN TESTS" not in html and "compare_with_reference" not in html, f"{name}'s feedback shows hidden tests"


def _check_export(grades: Path) -> None:
    rows = {row["student_id"]: row for row in csv.DictReader(grades.open(encoding="utf-8")) if row["assignment"] == ASSIGNMENT}
    assert set(rows) == {"ada", "alan", "grace"}, sorted(rows)
    ada = rows["ada"]
    assert (float(ada["score"]), float(ada["tests_score"]), float(ada["written_score"]), int(ada["cells_to_grade"])) == (11.5, 10.0, 1.5, 0)
    assert int(rows["grace"]["cells_to_grade"]) == 1, "grace's written answer has no mark yet"


def _regrade(course: Course, cycle: str) -> None:
    """The page's regrade paragraph: ada resubmits; collect --update, grade again, hand marks kept and flagged."""
    prose = " ".join(cycle.split())
    commands = [f"nbgrader collect --update {ASSIGNMENT}", f"nbgrader autograde {ASSIGNMENT}",
                f"coursekit grade {ASSIGNMENT}"]
    assert "without `--force`" in prose, "the regrade paragraph no longer says to regrade without --force"
    for command in commands:
        assert f"`{command}`" in prose, f"the regrade paragraph no longer says `{command}`"
    folder = course.homes["ada"] / ASSIGNMENT
    notebook = folder / f"{ASSIGNMENT}.ipynb"
    write_notebook(_answered(course, read_notebook(notebook), wrong=True), notebook)
    course.student("ada", f"nbgrader submit {ASSIGNMENT}")
    course.instructor(commands[0])
    submitted = read_notebook(course.root / "submitted" / "ada" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    wrong_cell, wrong_code, lost_cell = WRONG[ASSIGNMENT]
    assert any(wrong_code.strip() in "".join(cell["source"]) for cell in submitted["cells"]), "collect --update kept the old submission"
    for resubmission, command in enumerate(commands[1:]):
        if resubmission:  # each grader regrades, without --force, a submission newer than its graded copy
            course.student("ada", f"nbgrader submit {ASSIGNMENT}")
            course.instructor(commands[0])
        course.instructor(command)
        if command.startswith("coursekit"):
            assert (course.root / "grade-reports" / ASSIGNMENT / "ada.json").is_file(), "coursekit grade skipped ada"
        scores = course.scores("ada")
        auto, manual, maximum, flagged = scores[lost_cell]
        # Both graders score the question from its spec (here 0: the wrong token_nll fails a visible check).
        assert auto is not None and auto < maximum, f"after `{command}` ada's {lost_cell} keeps {auto} of {maximum}"
        auto, manual, _, flagged = scores["written_sum_vs_mean"]
        assert (manual, flagged) == (1.5, True), f"after `{command}` the hand mark is {manual}, flagged {flagged}"
