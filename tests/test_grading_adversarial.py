"""The adversarial corpus against `coursekit grade`: exact score and outcome for every attack."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import socket
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from adversarial.corpus import (ATTACKS, CONCURRENT, FORGED_LIMITS, IMG_ONERROR, MARKDOWN_LINKS, PRINT_HIDDEN_INPUTS,
                               ROUND3, SCRIPT_IN_ANSWER, VERBOSE_LOG)
from adversarial.course import NBGRADER, ASSIGNMENT, cell_index, make_course, solved_notebook, submit, tool_env
from coursekit.grading.driver import GradeOptions, grade_assignment
from coursekit.grading.limits import Limits
from coursekit.grading.outcomes import _PHASE_OUT_OF_TIME
from coursekit.grading.verdicts import failure_kind
from coursekit.grading.wire import decode_value
from conftest import require_sandbox

pytestmark = [pytest.mark.slow, pytest.mark.grading, pytest.mark.a1]

# 64 processes, so that the fork bomb meets the limit within its cell's time limit even on a busy machine
# (each sandbox has one CPU, and forking a process that has imported torch is not free).
# The hidden calls get a budget of their own, twice the cells' (under an old default of 4 x 3 s, only 5 of
# big_result's 12 results of 53 MB, each refused unread, were made on a busy machine). big_result's calls take
# 20-22 s of it beside other grading; at 60 s a slowdown like the one that cost hog_answer its outcome in CI (its
# writing took more than four times its idle CPU) would run past it. No attack may run out of the calls' budget
# (test_every_submission_keeps_within_its_two_time_budgets checks the notes).
LIMITS = Limits(timeout_s=3.0, memory_mb=1024, nproc=64, submission_timeout_s=60, calls_timeout_s=120)
#: the largest autograded notebook a submission may cause (its output is capped at 2,000,000 characters).
MAX_AUTOGRADED_BYTES = 3_000_000


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listeners(course: Path) -> list[socket.socket]:
    """A loopback TCP listener and an abstract Unix one on the host, for the socket probe to try."""
    tcp = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX)
    name = f"coursekit-probe-{os.getpid()}"
    unix.bind("\0" + name)
    unix.listen()
    (course / "probe_listeners.json").write_text(json.dumps({"tcp": [tcp.getsockname()[1]], "abstract": name}))
    return [tcp, unix]


#: URL schemes a browser runs, as the start of an attribute's value with whitespace and controls removed.
SCRIPT_SCHEMES = ("javascript:", "vbscript:", "data:text/html")


def _runs_as_script(url: str) -> bool:
    return "".join(ch for ch in url if ch.isprintable() and not ch.isspace()).lower().startswith(SCRIPT_SCHEMES)


#: elements whose text MathJax leaves alone (its default ``skipHtmlTags``).
MATHJAX_SKIPS = {"script", "noscript", "style", "textarea", "pre", "code", "annotation", "annotation-xml"}


class _LiveHTML(HTMLParser):
    """Collects what a browser would run: script elements' text, event handlers, script URLs (links, images,
    and MathJax's ``\\href`` in text that MathJax typesets, which it turns into a link)."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.handlers: list[str] = []
        self.urls: list[str] = []
        self._in_script = False
        self._skipped = 0     # open elements whose text MathJax does not typeset

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        self._skipped += tag in MATHJAX_SKIPS
        self.handlers += [f"{tag} {name}={value}" for name, value in attrs if name.startswith("on")]
        self.urls += [f"{tag} {name}={value}" for name, value in attrs if value and _runs_as_script(value)]

    def handle_endtag(self, tag: str) -> None:
        self._skipped -= tag in MATHJAX_SKIPS and self._skipped > 0

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)
        elif "\\href{" in data and not self._skipped:
            self.urls += [data for link in data.split("\\href{")[1:] if _runs_as_script(link)]


def _live(html: str) -> list[str]:
    """The student's scripts, handlers and script URLs (marked 'pwned' by the corpus) that would run in ``html``."""
    parser = _LiveHTML()
    parser.feed(html)
    return [code for code in parser.scripts + parser.handlers + parser.urls if "pwned" in code]


def _rendered(cell: dict) -> str:
    """A markdown or raw cell as nbconvert puts it into a page (markdown rendered, raw HTML as it is)."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    source = "".join(cell["source"])
    return markdown2html_mistune(source) if cell["cell_type"] == "markdown" else source


def _leased(uid: int) -> bool:
    """Whether a grader holds the lease on ``uid`` now (another test's grader on the other xdist worker)."""
    from coursekit.grading.uids import UID_LOCK_DIR

    try:
        handle = open(UID_LOCK_DIR / f"{uid}.lock", "a+")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _sandbox_processes() -> list[int]:
    """Processes left running under a sandbox uid (61000 to 61999) that no running grader leases.

    A grader releases a uid only after killing what runs as it, so a process under an unleased uid
    outlived its batch; one under a leased uid belongs to a grading run still going (the suite runs
    other graders in parallel).
    """
    from coursekit.grading.uids import UID_BASE, UID_COUNT

    found = []
    for entry in os.listdir("/proc"):
        try:
            uid = os.stat(f"/proc/{entry}").st_uid if entry.isdigit() else -1
        except OSError:
            continue
        if UID_BASE <= uid < UID_BASE + UID_COUNT and not _leased(uid):
            found.append(int(entry))
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    require_sandbox()
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
    printed = _printed(graded["course"], attack.student)
    outcomes = _expected_outcomes(attack, printed)
    assert report.score == attack.score and report.outcome in outcomes, (attack.what, outcomes, report, printed)
    assert report.max_score == 10.0
    assert report.sandboxed
    if attack.timestamp is not None:
        assert any("timestamp.txt is not a date" in note for note in report.notes), report.notes


def _expected_outcomes(attack, printed: str) -> tuple[str, ...]:
    """The outcomes ``attack`` may get: its own, or those of the first of its ``unreached`` patterns that what it
    printed matches (its cell fell short of the limit)."""
    for pattern, outcomes in attack.unreached:
        if re.search(pattern, printed, re.MULTILINE):
            return outcomes
    return (attack.outcome,)


def _printed(course: Path, student: str, chars: int = 2000) -> str:
    """The end of what the cells of ``student``'s autograded notebook printed: what an attack saw, for a failure's message."""
    path = course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    if not path.exists():
        return f"no autograded notebook at {path}"
    cells = json.loads(path.read_text())["cells"]
    text = "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []) if o.get("output_type") == "stream")
    return text[-chars:]


def test_an_exception_named_like_a_limit_buys_no_second_attempt(graded: dict) -> None:
    """Grader review r2, finding 9: only the runner's measurements send a cell to a rerun; a real hog still is."""
    for student in FORGED_LIMITS:
        report = graded["reports"][student]
        assert not any("rerun" in note for note in report.notes), (student, report.notes)
        assert any(note.startswith("restored: ") for note in report.notes), (student, report.notes)
    hog = graded["reports"]["memory_bomb"]
    assert any("ran out of memory in cell" in note and "skipped on a rerun" in note for note in hog.notes), hog.notes


def test_results_far_larger_than_the_reference_are_refused_and_never_kept(graded: dict) -> None:
    """Grader review r2, finding 8: the answer is 10^7 floats, a 53 MB report."""
    by_id = {q["grade_id"]: q for q in graded["reports"]["big_result"].questions}
    question = by_id["test_perplexity"]
    assert question["score"] == 0.0 and question["passed"] == 0, question
    assert re.match(r"(\d+) of \1 hidden checks of the function: result too large", question["messages"][0]), question


def test_every_submission_keeps_within_its_two_time_budgets(graded: dict) -> None:
    """Every attempt shares the calls' budget, and the cells' until a graded call crashes or stalls; a rerun without
    that function gets the cells' budget afresh, at most MAX_RESTARTS times (review r11, F3), so no submission takes
    more than worst_wall_s, and one with no crashed or stalled call no more than the two budgets' sum."""
    calls_ran_out = _PHASE_OUT_OF_TIME["calls"].split("(")[0]
    for report in graded["reports"].values():
        assert report.seconds <= LIMITS.worst_wall_s + 5, report
        if not any(line.endswith("it was not called again") for line in report.notes):
            assert report.seconds <= LIMITS.total_wall_s + 5, report
        # No attack is meant to come near the calls' budget (see LIMITS): one that ran out of it ran far past its time.
        assert not any(line.startswith(calls_ran_out) for line in report.notes), report


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


def test_the_hidden_input_probe_finds_a_hidden_call_wherever_it_is_held(capsys: pytest.CaptureFixture[str]) -> None:
    """The probe can fail: in a process that holds the calls (here, a Calls in a local), it finds them."""
    from coursekit.grading.protocol import Calls
    from coursekit.grading.wire import encode_value

    held = Calls([], [{"id": "test_token_nll" + "#0", "kind": "function", "name": "token_nll", "tensors": True,
                       "args": [encode_value(np.zeros(2))], "kwargs": {}, "banned": []}])
    exec(compile(PRINT_HIDDEN_INPUTS, "<probe>", "exec"), {"__name__": "probe"})
    printed = capsys.readouterr().out
    assert held.calls and "found 0 " not in printed
    assert all(kind in printed for kind in ("Calls", "call dict", "encoded array", "call id in a string"))


def test_the_hidden_input_probe_finds_nothing_while_the_cells_run(graded: dict) -> None:
    notebook = json.loads((graded["course"] / "autograded" / "print_hidden_inputs" / ASSIGNMENT /
                           f"{ASSIGNMENT}.ipynb").read_text())
    printed = "".join(o.get("text", "") for cell in notebook["cells"] for o in cell.get("outputs", []))
    assert "found 0 hidden things" in printed, printed[:2000]


def test_forged_hits_and_exception_names_never_reach_a_page_or_a_report(graded: dict) -> None:
    """Grader review r1, findings 2 and 12: what a graded function writes into its report stays in the sandbox."""
    course = graded["course"]
    by_id = {q["grade_id"]: q for q in graded["reports"]["forged_hits"].questions}
    messages = by_id["test_token_nll"]["messages"]
    kinds = [failure_kind(m) for m in messages]
    assert [kind.split(",")[0] for kind in kinds] == ["malformed result", "raised an exception of its own class"], (
        messages)
    # The exception's message reaches the instructor's report only, short and with every digit masked: the class
    # name, the hidden numbers and the call ids it spells out stay in the sandbox (grader review r4, finding 1).
    raised = by_id["test_token_nll"]["raised"]
    assert not any("LEAK_" in m for m in messages), messages
    assert any("LEAK_" in r for r in raised) and not any(re.search(r"LEAK_-?[0-9]", r) for r in raised), raised
    pages = {
        "autograded notebook": (course / "autograded" / "forged_hits" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text(),
        "grade report": (course / "grade-reports" / ASSIGNMENT / "forged_hits.json").read_text(),
        "feedback": _feedback(course, "forged_hits"),
    }
    for name, text in pages.items():
        assert not re.search(r"LEAK_-?[0-9]|test_token_nll#|test_token_nlln[0-9]", text), name


def _hidden_calls(student: str, grade_id: str) -> list:
    """The student's hidden calls of one question, drawn with the suite's grading secret as the grader draws them."""
    from coursekit.grading.spec import load_spec, prepare_calls
    from conftest import GRADING_SECRET, REPO_ROOT

    spec = load_spec(REPO_ROOT / "assignments" / "autograde" / f"{ASSIGNMENT}.py")
    return prepare_calls(spec, course="seqloss", student=student, secret=GRADING_SECRET)[grade_id]


def _pages(course: Path, student: str) -> dict[str, str]:
    """What the student sees: the autograded notebook and the feedback page made from it."""
    return {
        "autograded notebook": (course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text(),
        "feedback": _feedback(course, student),
    }


def _messages(graded: dict, student: str, grade_id: str) -> dict:
    return next(q for q in graded["reports"][student].questions if q["grade_id"] == grade_id)


def test_letters_for_digits_reach_only_the_instructor(graded: dict) -> None:
    """Grader review r4, finding 1: an exception's message spells the hidden logits in letters."""
    question = _messages(graded, "letters_for_digits", "test_token_nll")
    example = "token_nll(logits float32 (2, 3, 6), targets int64 (2, 3))"
    assert question["messages"] == [
        "15 of 15 hidden checks of the function: raised ValueError, including logits of size 1000 and an "
        f"ignore_index of -1; e.g. {example}"]
    letters = str.maketrans("0123456789", "ABCDEFGHIJ")
    spelt = []
    for call in _hidden_calls("letters_for_digits", "test_token_nll"):
        logits = decode_value(call.call["args"][0])
        spelt.append("/".join(f"{v:.4g}" for v in logits.flatten()[:3].tolist()).translate(letters))
    # The probe can fail: the instructor's report holds the labelled case's spelling, as the student wrote it.
    [said] = question["raised"]
    assert said.startswith(f"{example}: ValueError: shape (C, D, G) L") and any(s in said for s in spelt), said
    for name, text in _pages(graded["course"], "letters_for_digits").items():
        assert not any(s in text for s in spelt), name


def test_a_returned_value_is_shown_by_its_class_only(graded: dict) -> None:
    """Grader review r4, finding 1: the answer returns the largest hidden token loss at [0]."""
    question = _messages(graded, "returned_value", "test_sequence_loss")
    [call] = [c for c in _hidden_calls("returned_value", "test_sequence_loss")
              if c.description.label == "the default reduction"]
    token_losses, mask = (decode_value(a) for a in call.call["args"])
    expected, leaked = token_losses[0][mask[0]].sum(), np.nan_to_num(token_losses, nan=0.0).max()
    assert question["messages"] == [
        "17 of 24 hidden checks of the function: wrong values, including the default reduction; e.g. "
        "sequence_loss(token_losses float64 (3, 4), mask bool (3, 4)): first at [0]: "
        f"expected {expected:.4g}, got a {'larger' if leaked > expected else 'smaller'} value"]
    assert question["raised"] == []


def test_a_returned_shape_is_shown_by_its_number_of_dimensions_only(graded: dict) -> None:
    """Grader review r4, finding 1: a zero-size result whose dimensions are hidden logits times 100."""
    question = _messages(graded, "shape_leak", "test_token_nll")
    assert question["messages"] == [
        "15 of 15 hidden checks of the function: wrong shape, including logits of size 1000 and an ignore_index of "
        "-1; e.g. token_nll(logits float32 (2, 3, 6), targets int64 (2, 3)): expected shape (2, 3), got 4 dimensions"]
    shapes = []
    for call in _hidden_calls("shape_leak", "test_token_nll"):
        logits = decode_value(call.call["args"][0])
        shapes.append(", ".join(str(round(abs(x) * 100) % 10**6) for x in logits.flatten()[:3].tolist()) + ", 0)")
    for name, text in _pages(graded["course"], "shape_leak").items():
        assert not any(s in text for s in shapes), name


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


#: the corpus's submissions whose markdown holds HTML or links that would run: tags (review of issue 15, finding
#: 8), markdown links, images, reference definitions, autolinks and MathJax's \href (grader review r1, finding 4).
HTML_ATTACKS = ["html_in_markdown", "links_in_markdown"]


def test_the_live_html_detector_sees_every_route_the_corpus_takes() -> None:
    """The check below can fail: unescaped, each attack's cells hold a live script."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    for text in (SCRIPT_IN_ANSWER, IMG_ONERROR, *MARKDOWN_LINKS):
        assert _live(markdown2html_mistune(text)) != [], text
    assert _live(markdown2html_mistune("[the paper](https://arxiv.org) pwned")) == []
    assert _live(markdown2html_mistune("```\n" + MARKDOWN_LINKS[-1] + "```\n")) == [], "MathJax skips code"


@pytest.mark.parametrize("student", HTML_ATTACKS)
def test_student_html_is_escaped_in_the_autograded_notebook(graded: dict, student: str) -> None:
    autograded = graded["course"] / "autograded"
    notebook = json.loads((autograded / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    cells = [cell for cell in notebook["cells"] if cell["cell_type"] in ("markdown", "raw")]
    assert any("pwned" in "".join(cell["source"]) for cell in cells), "the student's text is kept, as text"
    for cell in cells:
        assert _live(_rendered(cell)) == [], cell["source"]


@pytest.mark.parametrize("student", HTML_ATTACKS)
def test_student_html_is_escaped_in_the_feedback(graded: dict, student: str) -> None:
    course = graded["course"]
    html = _feedback(course, student)
    assert "coursekit grade: 3 / 3 points" in html
    assert "pwned" in html, "the student's text is kept, as text"
    assert _live(html) == []


def _feedback(course: Path, student: str) -> str:
    """The student's feedback page, as ``nbgrader generate_feedback`` writes it with the course's config."""
    done = subprocess.run([*NBGRADER, "generate_feedback", ASSIGNMENT, "--student",
                           student, "--force"], cwd=course, env=tool_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return (course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()


def test_reports_are_written_for_every_student(graded: dict) -> None:
    reports = graded["course"] / "grade-reports" / ASSIGNMENT
    for attack in ATTACKS:
        data = json.loads((reports / f"{attack.student}.json").read_text())
        outcomes = _expected_outcomes(attack, _printed(graded["course"], attack.student))
        assert data["score"] == attack.score and data["outcome"] in outcomes, (attack.student, attack.score, outcomes, data["score"], data["outcome"])
        assert {q["grade_id"] for q in data["questions"]} == {
            "test_token_nll", "test_sequence_loss", "test_perplexity", "test_fox", "test_mc_classification"}


@pytest.fixture(scope="module")
def graded_together(tmp_path_factory: pytest.TempPathFactory) -> dict:
    require_sandbox()
    course = make_course(tmp_path_factory.mktemp("together"))
    for attack in CONCURRENT:
        submit(course, attack.student, attack.build(course))
    options = GradeOptions(jobs=2, limits=Limits(timeout_s=5.0), progress=False)
    return {r.student: r for r in grade_assignment(course, ASSIGNMENT, options)}


@pytest.mark.parametrize("attack", CONCURRENT, ids=[a.student for a in CONCURRENT])
def test_one_sandbox_cannot_take_another_ones_cpu(graded_together: dict, attack) -> None:
    report = graded_together[attack.student]
    assert (report.score, report.outcome) == (attack.score, attack.outcome), (attack.what, report)


@pytest.fixture(scope="module")
def graded_in_order(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Grader review round 3's batch, one submission at a time: an aa_* that stops the run leaves the rest ungraded."""
    import io

    require_sandbox()
    course = make_course(tmp_path_factory.mktemp("round3"))
    for attack in ROUND3:
        submit(course, attack.student, attack.build(course))
    # The grader's own failure: a file where aa_unwritable's autograded folder must go.
    (course / "autograded").mkdir()
    (course / "autograded" / "aa_unwritable").write_text("in the way")
    log = io.StringIO()
    options = GradeOptions(jobs=1, limits=LIMITS, progress=False)
    reports = {r.student: r for r in grade_assignment(course, ASSIGNMENT, options, log=log)}
    return {"course": course, "reports": reports, "log": log.getvalue()}


@pytest.mark.parametrize("attack", ROUND3, ids=[a.student for a in ROUND3])
def test_no_submission_stops_the_batch_and_each_gets_its_exact_score(graded_in_order: dict, attack) -> None:
    report = graded_in_order["reports"][attack.student]
    assert (report.score, report.outcome) == (attack.score, attack.outcome), (attack.what, report)
    stored = json.loads((graded_in_order["course"] / "grade-reports" / ASSIGNMENT / f"{attack.student}.json")
                        .read_text())
    assert (stored["score"], stored["outcome"]) == (attack.score, attack.outcome)


def test_a_submission_the_grader_fails_on_is_reported_and_tried_again_next_time(graded_in_order: dict) -> None:
    from coursekit.grading import gradebook as gb

    report = graded_in_order["reports"]["aa_unwritable"]
    assert report.notes == ["the grader failed on this submission (FileExistsError; the traceback is in the grader's "
                            "log); no grade was recorded, and the next `coursekit grade` tries it again"]
    assert "ERROR: the grader failed on aa_unwritable's submission" in graded_in_order["log"]
    assert "FileExistsError" in graded_in_order["log"]
    course = gb.load_course(graded_in_order["course"])
    tests = ["test_token_nll", "test_sequence_loss", "test_perplexity", "test_fox", "test_mc_classification"]
    graded = gb.graded_students(course, ASSIGNMENT, ASSIGNMENT, tests)
    assert "aa_unwritable" not in graded and "zz_after" in graded


def test_the_notes_say_what_happened_to_honest_work(graded_in_order: dict) -> None:
    reports = graded_in_order["reports"]
    pasted = cell_index(solved_notebook(graded_in_order["course"]), "answer_token_nll") + 1
    assert reports["pasted_answer"].notes == [
        f"cell {pasted} is a copy of answer cell 'answer_token_nll' (pasted in Jupyter?); it ran as a plain cell"]
    assert any(note.startswith("output truncated: cell(s) ") for note in reports["verbose"].notes), reports["verbose"]
    assert reports["zz_after"].notes == []


def test_the_truncated_log_shows_the_marker_in_the_autograded_notebook(graded_in_order: dict) -> None:
    path = graded_in_order["course"] / "autograded" / "verbose" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    cells = json.loads(path.read_text())["cells"]
    logging = next(c for c in cells if "".join(c["source"]) == VERBOSE_LOG)
    text = "".join("".join(output.get("text", "")) for output in logging["outputs"])
    assert text.endswith("\n[output truncated]\n") and len(text) <= LIMITS.output_cell
    assert "OutputLimitExceeded" not in path.read_text()


def test_an_answer_cell_whose_memory_came_back_keeps_its_place_and_says_so(graded: dict) -> None:
    """Grader review r4, finding 2: only a cell that keeps the memory is skipped; the other one is noted."""
    answer = cell_index(solved_notebook(graded["course"]), "answer_token_nll")
    freed = graded["reports"]["hog_answer"]
    assert freed.notes == [f"cell {answer} ran out of memory and was not near the limit when it ended; it was not "
                           "skipped"]
    kept = graded["reports"]["hog_answer_kept"]
    assert f"the process ran out of memory in cell {answer}; it was skipped on a rerun" in kept.notes, kept.notes
    by_id = {q["grade_id"]: q for q in kept.questions}
    assert by_id["test_token_nll"]["messages"][0] == (
        f"your answer cell (cell {answer}) ran out of memory and was skipped on a rerun, so what it defines was "
        "not there"), by_id["test_token_nll"]
    # Grader review r28, F2: with nothing after it starved, the hoarding answer cell stays and keeps its points.
    stayed = graded["reports"]["hog_answer_starved_nothing"]
    assert stayed.notes == [f"cell {answer} ran out of memory and kept it (near the limit when it ended); it was not "
                            "skipped"], stayed.notes
    # r31, F2: a cell freed the hoarder's memory, so a later cell that ran out did so on its own.
    freed_later = graded["reports"]["hog_answer_freed"]
    assert freed_later.notes == [
        f"cell {answer} ran out of memory and kept it (near the limit when it ended); it was not skipped",
        f"cell {answer + 2} ran out of memory and was not near the limit when it ended; it was not skipped",
    ], freed_later.notes


def test_a_repeated_cell_id_gets_a_fresh_one_with_a_note(graded: dict) -> None:
    """Grader review r4, finding 7: an editor that pastes a cell with its id is not tampering."""
    answer = cell_index(solved_notebook(graded["course"]), "answer_token_nll")
    assert graded["reports"]["paste_same_id"].notes == [
        f"cell {answer + 1} repeated the id 'answer_token_nll' of an earlier cell (pasted in an editor?); it was "
        "given a fresh id",
        f"cell {answer + 1} is a copy of answer cell 'answer_token_nll' (pasted in Jupyter?); it ran as a plain cell"]
    assert graded["reports"]["plain_dup_id"].notes == [
        f"cell {answer + 2} repeated the id 'same-id' of an earlier cell (pasted in an editor?); it was given a "
        "fresh id"]
    autograded = graded["course"] / "autograded" / "plain_dup_id" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    ids = [cell.get("id") for cell in json.loads(autograded.read_text())["cells"]]
    assert len(ids) == len(set(ids)), ids
