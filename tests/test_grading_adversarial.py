"""The adversarial corpus against `coursekit grade`: exact score and outcome for every attack."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from adversarial.corpus import ATTACKS, CONCURRENT
from adversarial.course import ASSIGNMENT, VENV_BIN, make_course, submit, tool_env
from coursekit.grading.driver import GradeOptions, grade_assignment
from coursekit.grading.limits import Limits
from coursekit.grading.sandbox import sandbox_available
from conftest import in_ci

pytestmark = [pytest.mark.slow, pytest.mark.grading, pytest.mark.a1]

# 64 processes, so that the fork bomb meets the limit within its cell's time limit even on a busy machine
# (each sandbox has one CPU, and forking a process that has imported torch is not free).
LIMITS = Limits(timeout_s=3.0, memory_mb=1024, nproc=64, submission_timeout_s=60)
#: the largest autograded notebook a submission may cause (its output is capped at 2,000,000 characters).
MAX_AUTOGRADED_BYTES = 3_000_000


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _need_sandbox() -> None:
    ok, reason = sandbox_available()
    if not ok:
        if in_ci():
            pytest.fail(f"the sandbox is required in CI: {reason}")
        pytest.skip(f"the sandbox is not available here: {reason}")


def _listeners(course: Path) -> list[socket.socket]:
    """A loopback TCP listener and an abstract Unix one on the host, for the socket probe to try."""
    tcp = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX)
    name = f"coursekit-probe-{os.getpid()}"
    unix.bind("\0" + name)
    unix.listen()
    (course / "probe_listeners.json").write_text(json.dumps({"tcp": [tcp.getsockname()[1]], "abstract": name}))
    return [tcp, unix]


class _LiveHTML(HTMLParser):
    """Collects what a browser would run: script elements' text and event-handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        self.handlers += [f"{tag} {name}={value}" for name, value in attrs if name.startswith("on")]

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def _live(html: str) -> list[str]:
    """The student's script and event handlers (marked 'pwned' by the corpus) that would run in ``html``."""
    parser = _LiveHTML()
    parser.feed(html)
    return [code for code in parser.scripts + parser.handlers if "pwned" in code]


def _sandbox_processes() -> list[int]:
    """Processes left running under a sandbox uid (61000 to 61999)."""
    from coursekit.grading.uids import UID_BASE, UID_COUNT

    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and UID_BASE <= os.stat(f"/proc/{entry}").st_uid < UID_BASE + UID_COUNT:
                found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    _need_sandbox()
    import coursekit.losses.nll as nll

    course = make_course(tmp_path_factory.mktemp("course"))
    listeners = _listeners(course)
    protected = [Path(nll.__file__), course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", course / "gradebook.db"]
    before = {p: _digest(p) for p in protected[:2]}
    submitted = {}
    for attack in ATTACKS:
        path = submit(course, attack.student, attack.build(course))
        if attack.timestamp is not None:
            (path.parent / "timestamp.txt").write_bytes(attack.timestamp)
        submitted[attack.student] = (path, _digest(path))
    options = GradeOptions(jobs=2, limits=LIMITS, progress=False)
    try:
        reports = {r.student: r for r in grade_assignment(course, ASSIGNMENT, options)}
    finally:
        for listener in listeners:
            listener.close()
    return {"course": course, "reports": reports, "before": before, "submitted": submitted,
            "left_running": _sandbox_processes()}


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.student for a in ATTACKS])
def test_attack_gets_exact_score_and_outcome(graded: dict, attack) -> None:
    report = graded["reports"][attack.student]
    assert (report.score, report.outcome) == (attack.score, attack.outcome), (attack.what, report)
    assert report.max_score == 10.0
    assert report.sandboxed
    if attack.timestamp is not None:
        assert any("timestamp.txt is not a date" in note for note in report.notes), report.notes


def test_every_attempt_shares_one_time_budget(graded: dict) -> None:
    for report in graded["reports"].values():
        assert report.seconds <= LIMITS.wall_s + 5, report


def test_shared_files_and_submissions_are_never_modified(graded: dict) -> None:
    for path, digest in graded["before"].items():
        assert _digest(path) == digest, path
    for path, digest in graded["submitted"].values():
        assert _digest(path) == digest, path


def test_no_sandbox_process_outlives_the_batch(graded: dict) -> None:
    assert graded["left_running"] == []


def test_gradebook_holds_the_reported_scores(graded: dict) -> None:
    from nbgrader.api import Gradebook

    from coursekit.grading.gradebook import load_course

    course = load_course(graded["course"])
    with Gradebook(course.db_url, course.course_id) as gradebook:
        for attack in ATTACKS:
            submission = gradebook.find_submission(ASSIGNMENT, attack.student)
            assert submission.score == pytest.approx(attack.score), attack.student
            assert submission.max_score == 12.0  # 10 autograded + 2 for the written answer


def test_autograded_notebooks_never_show_hidden_tests_or_inputs(graded: dict) -> None:
    autograded = graded["course"] / "autograded"
    for attack in ATTACKS:
        path = autograded / attack.student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        text = path.read_text()
        notebook = json.loads(text)
        assert "HIDDEN TESTS" not in text and "_compare(" not in text and "not the per-sample metric" not in text
        assert path.stat().st_size < MAX_AUTOGRADED_BYTES, (attack.student, path.stat().st_size)
        outputs = [json.dumps(o) for cell in notebook["cells"] for o in cell.get("outputs", [])]
        # What a cell printed never holds a hidden call: its id, its arguments' encoding or its cotangent.
        assert not any("test_token_nll#" in o or "cotangent" in o or "'t': 'array'" in o for o in outputs), (
            attack.student)
        verdicts = [o for o in outputs if "coursekit grade:" in o]
        assert len(verdicts) == 5, attack.student


def test_student_html_is_escaped_in_the_autograded_notebook(graded: dict) -> None:
    autograded = graded["course"] / "autograded"
    notebook = json.loads((autograded / "html_in_markdown" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    sources = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] in ("markdown", "raw")]
    assert any("pwned" in source for source in sources), "the student's text is kept, as text"
    for source in sources:
        assert _live(source) == [], source


def test_student_html_is_escaped_in_the_feedback(graded: dict) -> None:
    course = graded["course"]
    done = subprocess.run([str(VENV_BIN / "nbgrader"), "generate_feedback", ASSIGNMENT, "--student",
                           "html_in_markdown", "--force"], cwd=course, env=tool_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    html = (course / "feedback" / "html_in_markdown" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "My answer." in html and "coursekit grade: 3 / 3 points" in html
    assert _live(html) == []


def test_reports_are_written_for_every_student(graded: dict) -> None:
    reports = graded["course"] / "grade-reports" / ASSIGNMENT
    for attack in ATTACKS:
        data = json.loads((reports / f"{attack.student}.json").read_text())
        assert data["score"] == attack.score and data["outcome"] == attack.outcome
        assert {q["grade_id"] for q in data["questions"]} == {
            "test_token_nll", "test_sequence_loss", "test_perplexity", "test_fox", "test_mc_classification"}


@pytest.fixture(scope="module")
def graded_together(tmp_path_factory: pytest.TempPathFactory) -> dict:
    _need_sandbox()
    course = make_course(tmp_path_factory.mktemp("together"))
    for attack in CONCURRENT:
        submit(course, attack.student, attack.build(course))
    options = GradeOptions(jobs=2, limits=Limits(timeout_s=5.0), progress=False)
    return {r.student: r for r in grade_assignment(course, ASSIGNMENT, options)}


@pytest.mark.parametrize("attack", CONCURRENT, ids=[a.student for a in CONCURRENT])
def test_one_sandbox_cannot_take_another_ones_cpu(graded_together: dict, attack) -> None:
    report = graded_together[attack.student]
    assert (report.score, report.outcome) == (attack.score, attack.outcome), (attack.what, report)
