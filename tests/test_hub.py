"""``make hub`` end to end: one assignment's whole cycle on a real JupyterHub, driven in headless Chromium.

The hub is ``python -m coursekit.hub`` (what ``make hub`` runs) on a free loopback
port, with its own folder in /tmp and the real system accounts ``instructor`` and
``student1`` to ``student3`` (so the test needs root). People act through the
screens the course pages describe:

1. ``instructor`` logs in, opens *Nbgrader → Formgrader*, generates and releases the assignment;
2. ``student1`` fetches it in *Nbgrader → Assignment List*, writes the answers into the
   notebook through the Jupyter server's contents API (the API JupyterLab itself saves
   with), opens it, runs it from a fresh kernel, saves and submits; ``student2``
   fetches and submits the untouched notebook; ``student3`` does nothing;
3. ``instructor`` collects in the Formgrader, grades with ``coursekit grade`` (run as the
   instructor's user in the course folder, as from a terminal; a subprocess here), sees
   the scores in the Formgrader's submission list, marks the written answer by hand,
   generates and releases feedback, and opens ``grade-reports/<assignment>/index.html``;
4. ``student1`` fetches the feedback in the Assignments tab and reads their score and no
   hidden test; ``student2`` reads a zero.

Where this Python lies under a folder other users cannot enter (root's pyenv under
``/root``), the hub runs in a private mount namespace that opens just the interpreter's
installation to them (see ``python_shared_with_users``); ``make hub`` itself refuses to
start there and says why.

On failure every open page is photographed into the test's temporary folder (the
failure's notes say where). The hub, the proxy, every user's process, the accounts
and their homes, and the hub's folder are removed afterwards, by process id.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO_ROOT, in_ci
from coursekit.course.config import course_id
from coursekit.hub.accounts import ACCOUNTS, INSTRUCTOR, account_exists, remove_account
from coursekit.hub.machine import first_closed_to_others, free_loopback_port, port_in_use, runtime_closed_to_others
from tests.assignment_fixtures import filled_in, read_notebook, solutions_of

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ASSIGNMENT = "a1_sequence_loss"
SOURCE = REPO_ROOT / "assignments" / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
PROXY = REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
WRITTEN_CELL = "written_sum_vs_mean"
WRITTEN_ANSWER = "The sum grows with the length of the sequence; the mean hides how long it was."
WRITTEN_MARK = 1.5
WRITTEN_COMMENT = "Right about the length; say what the mean hides."
HIDDEN_REGION = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.DOTALL)
#: how long a single-user server may take to start (JupyterLab and its extensions) on a loaded machine.
SPAWN_MS = 180_000
#: the longest a UI action waits (nbgrader's generate, collect and feedback run in the request).
ACTION_MS = 120_000


def skip_unless(ok: bool, reason: str) -> None:
    """Skip with ``reason`` unless ``ok``; under CI=true a skip is a failure."""
    if not ok:
        if in_ci():
            pytest.fail(reason + " (CI=true: a skip is a failure)")
        pytest.skip(reason)


#: run by ``sh -c`` in a private mount namespace: $1 the Python installation, $2 a spare mount point,
#: $3 the folder other users cannot enter; then the command.
_SHARE_PYTHON = ('set -e; mount --bind "$1" "$2"; mount -t tmpfs -o mode=755 tmpfs "$3"; mkdir -p "$1"; '
                 'mount --bind "$2" "$1"; shift 3; exec "$@"')


def python_shared_with_users(spare: Path) -> list[str]:
    """A command prefix under which every user can run this Python; empty when they already can.

    Where the interpreter lies under a folder that other users cannot enter (root's pyenv
    under ``/root``: ``make hub`` refuses to start there, naming the folder), the hub runs in a
    private mount namespace in which that folder is an empty one all may enter, holding only
    the interpreter's installation; the grader's sandbox reaches the interpreter the same way.
    Nothing outside the hub's own processes sees it.
    """
    installation = Path(sys.base_prefix).resolve()
    closed = first_closed_to_others(installation) or first_closed_to_others(Path(sys.executable).resolve())
    if closed is None:
        return []
    hidden = [str(p) for p in (Path(sys.prefix).resolve(), REPO_ROOT) if p.is_relative_to(closed)]
    skip_unless(not hidden, f"other users cannot enter {closed}, which holds {hidden}: clone the course elsewhere")
    skip_unless(installation.is_relative_to(closed), runtime_closed_to_others() or "")
    spare.mkdir()
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _SHARE_PYTHON, "sh",
            str(installation), str(spare), str(closed)]


def points_of(notebook: dict) -> tuple[float, float]:
    """(all points, points of the written answer) of the instructor's notebook, from its nbgrader metadata."""
    total = written = 0.0
    for cell in notebook["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("grade"):
            total += float(meta["points"])
            if meta.get("grade_id") == WRITTEN_CELL:
                written = float(meta["points"])
    return total, written


def hidden_test_lines(notebook: dict) -> set[str]:
    """The distinctive lines of the hidden tests (what no feedback may show)."""
    lines = set()
    for cell in notebook["cells"]:
        for region in HIDDEN_REGION.findall("".join(cell["source"])):
            lines |= {line.strip() for line in region.splitlines() if len(line.strip()) >= 24}
    return lines


@dataclass
class Hub:
    """A running hub: its address, the password of every account, its folder, how to enter its mount namespace."""

    url: str
    password: str
    folder: Path
    log: Path
    enter: list[str]
    pages: dict = field(default_factory=dict)

    @property
    def course(self) -> Path:
        """The instructor's copy of the course."""
        return Path(pwd.getpwnam(INSTRUCTOR).pw_dir) / course_id()


def _stop(pid: int, grace_s: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _proxy_pid(folder: Path) -> int | None:
    pid_file = folder / "proxy.pid"
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"configurable-http-proxy" in cmdline else None


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    """``python -m coursekit.hub`` on a free port, with a folder of its own; everything removed afterwards."""
    skip_unless(os.geteuid() == 0, "the hub test creates system users (instructor, student1..3): it must run as root")
    if not PROXY.is_file():
        pytest.fail("configurable-http-proxy is missing under node_modules: run `npm ci` (make test runs it)")
    existing = [name for name in ACCOUNTS if account_exists(name)]
    if existing:
        pytest.fail(f"the accounts {existing} exist already (an earlier `make hub`?): this test creates and deletes "
                    "them, so remove them first with `userdel -r`")
    folder = Path(tempfile.mkdtemp(prefix="coursekit-hub-", dir="/tmp"))
    prefix = python_shared_with_users(folder.parent / f"{folder.name}.python")
    port = free_loopback_port()
    password = "hub-test-" + os.urandom(6).hex()
    log = folder.parent / f"{folder.name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURSEKIT_")}
    env["HUB_PASSWORD"] = password
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "coursekit.hub", "--port", str(port), "--dir", str(folder),
             "--proxy", str(PROXY)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    running = None
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"the hub stopped with status {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/hub/api", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the hub did not answer on {url} within 120 s:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        # the hub's mount namespace, where the users' processes run (the same as ours without a prefix)
        running = Hub(url, password, folder, log, ["nsenter", f"--target={process.pid}", "--mount", "--"])
        yield running
    finally:
        for page in running.pages.values() if running else ():
            try:
                page.context.close()
            except Exception:  # already closed with another page of the same person
                pass
        _stop(process.pid, grace_s=30)
        process.wait(timeout=10)
        proxy = _proxy_pid(folder)
        if proxy is not None:
            _stop(proxy, grace_s=5)
        for name in ACCOUNTS:
            remove_account(name)
        shutil.rmtree(folder, ignore_errors=True)
        log.unlink(missing_ok=True)
        if prefix:
            (folder.parent / f"{folder.name}.python").rmdir()
    assert not port_in_use(port), f"something still listens on the hub's port {port}"


@contextmanager
def step(name: str, hub: Hub, out: Path) -> Iterator[None]:
    """Run one step of the cycle; on failure photograph every open page into ``out`` and say so."""
    try:
        yield
    except BaseException as error:
        out.mkdir(parents=True, exist_ok=True)
        for who, page in hub.pages.items():
            try:
                page.screenshot(path=str(out / f"{name}-{who}.png"), full_page=True)
            except Exception as screenshot_error:  # a closed page must not hide the real failure
                error.add_note(f"no screenshot of {who}: {screenshot_error}")
        error.add_note(f"step {name!r} failed; screenshots in {out}; hub log:\n{hub.log.read_text()[-3000:]}")
        raise


def log_in(chromium, hub: Hub, user: str):
    """A fresh browser context logged in as ``user``, on JupyterLab once the user's server has started."""
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(ACTION_MS)
    page = context.new_page()
    hub.pages[user] = page
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.password)
    page.click("#login_submit")
    page.wait_for_url(re.compile(rf"/user/{user}/lab"), timeout=SPAWN_MS)
    menu_bar_item(page, "Nbgrader").wait_for(timeout=SPAWN_MS)
    return page


def menu_bar_item(page, menu: str):
    """The entry ``menu`` of JupyterLab's menu bar."""
    return page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(menu)}$"))


def menu_entry(page, item: str):
    """The visible entry labelled ``item`` of the open menu (the label, without its shortcut)."""
    return page.locator(".lm-Menu .lm-Menu-item:not(.lm-mod-hidden) .lm-Menu-itemLabel",
                        has_text=re.compile(f"^{re.escape(item)}$"))


def open_menu(page, menu: str, attempts: int = 5) -> None:
    """Open ``menu`` of JupyterLab's menu bar.

    While JupyterLab is still restoring its layout, a new tab can take the focus and close a menu
    opened a moment before; so the menu is opened again until it stays open.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(attempts):
        menu_bar_item(page, menu).click()
        try:
            page.locator(".lm-MenuBar-menu").wait_for(state="visible", timeout=3000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"the menu {menu!r} did not stay open after {attempts} clicks")


def open_from_menu(page, menu: str, item: str) -> None:
    """Click ``menu`` in JupyterLab's menu bar, then its entry ``item``."""
    open_menu(page, menu)
    menu_entry(page, item).click()


def formgrader_action(frame, row, cell: str) -> None:
    """Click the icon in column ``cell`` of a Formgrader row and close the success dialog (fail on an error)."""
    row.locator(f"td.{cell} a").click()
    dialog = frame.locator("#success-modal, #error-modal")
    dialog.wait_for(timeout=ACTION_MS)
    if frame.locator("#error-modal").count():
        raise AssertionError(f"the Formgrader's {cell} failed: {frame.locator('#error-modal').inner_text()}")
    frame.locator("#success-modal .modal-footer button").click()
    frame.locator("#success-modal").wait_for(state="detached")


def contents(page, user: str, path: str, notebook: dict | None = None) -> dict:
    """GET (or, with ``notebook``, PUT) ``path`` through the Jupyter server's contents API, from the page."""
    reply = page.evaluate(
        """async ([url, notebook]) => {
            const xsrf = (document.cookie.split("; ").find(c => c.startsWith("_xsrf=")) || "").slice(6);
            const init = {method: notebook ? "PUT" : "GET", headers: {"X-XSRFToken": xsrf}};
            if (notebook) {
                init.headers["Content-Type"] = "application/json";
                init.body = JSON.stringify({type: "notebook", format: "json", content: notebook});
            }
            const response = await fetch(url, init);
            return {status: response.status, text: await response.text()};
        }""",
        [f"/user/{user}/api/contents/{path}" + ("" if notebook else "?content=1"), notebook],
    )
    assert reply["status"] in (200, 201), f"contents API {path}: {reply['status']} {reply['text'][:500]}"
    return json.loads(reply["text"])


def wait_for_saved_run(page, user: str, path: str, timeout_s: float = 60) -> dict:
    """The notebook as saved on the server, once every code cell in it has run (saving takes a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        notebook = contents(page, user, path)["content"]
        code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
        if all(cell["execution_count"] for cell in code):
            return notebook
        assert time.monotonic() < deadline, f"{path} was not saved with every cell run within {timeout_s} s"
        time.sleep(1)


def assignment_row(page, list_id: str):
    """The row of the assignment in one of the Assignments tab's lists."""
    return page.locator(f"#{list_id} .list_item", has_text=ASSIGNMENT).first


def fetch_assignment(page) -> None:
    open_from_menu(page, "Nbgrader", "Assignment List")
    assignment_row(page, "released_assignments_list").get_by_role("button", name="Fetch", exact=True).click()
    assignment_row(page, "fetched_assignments_list").wait_for()


def submit_assignment(page) -> None:
    open_from_menu(page, "Nbgrader", "Assignment List")
    assignment_row(page, "fetched_assignments_list").get_by_role("button", name="Submit", exact=True).click()
    assignment_row(page, "submitted_assignments_list").wait_for()


def read_feedback(page, user: str, hub: Hub) -> str:
    """Fetch the feedback in the Assignments tab, open the HTML it brings, and return the page's text."""
    open_from_menu(page, "Nbgrader", "Assignment List")
    page.locator("#refresh_assignments_list").click()
    page.get_by_role("button", name="Fetch Feedback", exact=True).first.click()
    page.get_by_text("(view feedback)").first.wait_for()
    folder = contents(page, user, f"{ASSIGNMENT}/feedback")
    (stamp,) = [item["name"] for item in folder["content"] if item["type"] == "directory"]
    feedback = page.context.new_page()
    hub.pages[f"{user}-feedback"] = feedback
    feedback.goto(f"{hub.url}/user/{user}/files/{ASSIGNMENT}/feedback/{stamp}/{ASSIGNMENT}.html")
    return feedback.locator("body").inner_text()


def test_one_assignment_goes_round_the_hub_in_the_browser(hub: Hub, chromium, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=ACTION_MS)
    source = read_notebook(SOURCE)
    total, written = points_of(source)
    auto = total - written
    shots = tmp_path / "screenshots"

    with step("1-instructor-releases", hub, shots):
        instructor = log_in(chromium, hub, INSTRUCTOR)
        open_from_menu(instructor, "Nbgrader", "Formgrader")
        formgrader = instructor.locator("#formgrader iframe").element_handle().content_frame()
        manage_assignments = f"{hub.url}/user/{INSTRUCTOR}/formgrader/manage_assignments"
        row = formgrader.locator("tr", has_text=ASSIGNMENT)
        formgrader_action(formgrader, row, "assign")
        formgrader_action(formgrader, row, "release")
        expect(row.locator("td.status")).to_have_text("released")

    with step("2-students-submit", hub, shots):
        student1 = log_in(chromium, hub, "student1")
        open_menu(student1, "Nbgrader")
        expect(menu_entry(student1, "Assignment List")).to_be_visible()
        assert menu_entry(student1, "Formgrader").count() == 0, "students have no Formgrader"
        student1.keyboard.press("Escape")
        assert student1.request.get(f"{hub.url}/user/student1/formgrader").status == 404
        fetch_assignment(student1)
        path = f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
        released = contents(student1, "student1", path)["content"]
        answers = {**solutions_of(source), WRITTEN_CELL: WRITTEN_ANSWER}
        contents(student1, "student1", path, filled_in(released, answers))
        student1.goto(f"{hub.url}/user/student1/lab/tree/{path}")
        student1.locator(".jp-Notebook").wait_for()
        # JupyterLab asks to confirm a restart only once the kernel is up (before, it just starts one).
        expect(student1.locator("#jp-main-statusbar")).to_contain_text("Idle")
        open_from_menu(student1, "Kernel", "Restart Kernel and Run All Cells…")
        student1.locator(".jp-Dialog-button.jp-mod-warn").click()
        code_cells = sum(cell["cell_type"] == "code" for cell in released["cells"])
        ran = [re.compile(r"\[\d+\]")] * code_cells
        expect(student1.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt")).to_have_text(ran, timeout=ACTION_MS)
        open_from_menu(student1, "File", "Save Notebook")
        saved = wait_for_saved_run(student1, "student1", path)
        errors = [o for cell in saved["cells"] if cell["cell_type"] == "code" for o in cell["outputs"]
                  if o["output_type"] == "error"]
        assert errors == [], "no cell of the filled-in notebook failed"
        submit_assignment(student1)

        student2 = log_in(chromium, hub, "student2")
        fetch_assignment(student2)
        submit_assignment(student2)

    with step("3-instructor-grades", hub, shots):
        instructor.bring_to_front()
        formgrader.goto(manage_assignments)
        formgrader_action(formgrader, row, "collect")
        assert sorted(p.name for p in (hub.course / "submitted").iterdir()) == ["student1", "student2"]
        grading = subprocess.run(
            [*hub.enter, "runuser", "-u", INSTRUCTOR, "--", "env", "-i", f"--chdir={hub.course}",
             f"HOME={hub.course.parent}", f"USER={INSTRUCTOR}",
             f"PATH={Path(sys.executable).parent}:/usr/bin:/bin", f"COURSEKIT_EXCHANGE={hub.folder / 'exchange'}",
             "coursekit", "grade", ASSIGNMENT],
            capture_output=True, text=True, timeout=600,
        )
        assert grading.returncode == 0, grading.stdout[-3000:] + grading.stderr[-3000:]
        assert "the grader is not root" in grading.stdout + grading.stderr, "it says it runs unsandboxed"

        formgrader.goto(manage_assignments)
        row.locator("td.num-submissions a").click()
        submissions = {who: formgrader.locator("tr", has_text=who) for who in ("student1", "student2")}
        expect(submissions["student1"].locator("td.score")).to_have_text(f"{auto:g} / {total:g}")
        expect(submissions["student1"].locator("td.status")).to_have_text("needs manual grading")
        expect(submissions["student2"].locator("td.score")).to_have_text(f"0 / {total:g}")
        assert formgrader.locator("tr", has_text="student3").count() == 0

        submissions["student1"].locator("td.student-name a").click()
        formgrader.get_by_role("link", name=ASSIGNMENT, exact=True).click()
        # the page renders the grades (an automatic score as the box's placeholder) once it has loaded
        # them, overwriting what was typed before
        expect(formgrader.locator("input.score#test_token_nll")).to_have_attribute("placeholder", re.compile(r"\d"))
        for field_, value, api in ((f"input.score#{WRITTEN_CELL}", str(WRITTEN_MARK), "/formgrader/api/grade/"),
                                   (f"textarea#{WRITTEN_CELL}-comment", WRITTEN_COMMENT, "/formgrader/api/comment/")):
            box = formgrader.locator(field_)
            box.fill(value)
            with instructor.expect_response(lambda r, api=api: api in r.url and r.request.method == "PUT") as saved:
                box.press("Tab")  # the Formgrader saves a field when it loses the focus
            assert saved.value.ok, f"the Formgrader did not save {field_}: {saved.value.status}"

        formgrader.goto(manage_assignments)
        row.locator("td.num-submissions a").click()
        expect(submissions["student1"].locator("td.status")).to_have_text("graded")
        expect(submissions["student1"].locator("td.score")).to_have_text(f"{auto + WRITTEN_MARK:g} / {total:g}")
        formgrader.goto(manage_assignments)
        formgrader_action(formgrader, row, "generate-feedback")
        formgrader_action(formgrader, row, "release-feedback")

        report = instructor.context.new_page()
        hub.pages["instructor-report"] = report
        report.goto(f"{hub.url}/user/{INSTRUCTOR}/files/seqloss/grade-reports/{ASSIGNMENT}/index.html")
        expect(report.locator("body")).to_contain_text("student1")
        expect(report.locator("body")).to_contain_text("student2")

    with step("4-students-read-feedback", hub, shots):
        student1.bring_to_front()
        first = read_feedback(student1, "student1", hub)
        assert f"{ASSIGNMENT} (Score: {total - written + WRITTEN_MARK:.1f} / {total:.1f})" in first
        assert WRITTEN_COMMENT in first
        assert "HIDDEN TESTS" not in first
        leaked = [line for line in hidden_test_lines(source) if line in first]
        assert leaked == [], "hidden tests in the feedback"
        student2.bring_to_front()
        second = read_feedback(student2, "student2", hub)
        assert f"{ASSIGNMENT} (Score: 0.0 / {total:.1f})" in second
