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

Then Ctrl-C: the hub's process group gets SIGINT, as from a terminal, and the test checks
that the hub, its proxy and every user's server have stopped, and that no mount is left.

The hub is started exactly as ``make hub`` starts it. Where this Python lies under a folder
other users cannot enter (root's pyenv under ``/root``), it runs itself in a private mount
namespace that opens just the interpreter's installation to them
(:mod:`coursekit.hub.shared_python`); the instructor's ``coursekit grade`` enters that
namespace, as a terminal in the instructor's JupyterLab would be in it.

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
from coursekit.hub.accounts import ACCOUNTS, INSTRUCTOR, account_exists, processes_of, remove_account
from coursekit.hub.machine import free_loopback_port, port_in_use
from coursekit.hub.shared_python import ClosedToOthersError, SharedPython, this_python_to_share
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
    """A running hub: its address, the password of every account, its folder, its process, how it shares Python."""

    url: str
    password: str
    folder: Path
    log: Path
    process: subprocess.Popen
    share: SharedPython | None
    mounts_before: set[str]
    pages: dict = field(default_factory=dict)

    @property
    def course(self) -> Path:
        """The instructor's copy of the course."""
        return Path(pwd.getpwnam(INSTRUCTOR).pw_dir) / course_id()

    @property
    def enter(self) -> list[str]:
        """The command prefix that runs in the hub's mount namespace, where the users' processes run."""
        return ["nsenter", f"--target={self.process.pid}", "--mount", "--"]


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


def _process_table() -> dict[int, tuple[int, str]]:
    """Every process: its parent's id and its mount namespace (read from ``/proc``)."""
    table = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            table[int(proc.name)] = (parent, os.readlink(proc / "ns" / "mnt"))
        except (OSError, IndexError, ValueError):  # the process ended while we were reading
            continue
    return table


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "(ended)"


def descendants(pid: int) -> set[int]:
    """The processes started by ``pid``, and by them, and so on (the proxy, the users' servers, their kernels)."""
    children: dict[int, list[int]] = {}
    for child, (parent, _) in _process_table().items():
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def in_namespace(namespace: str) -> set[int]:
    """The processes in the mount namespace ``namespace`` (as ``/proc/PID/ns/mnt`` names it)."""
    return {pid for pid, (_, mnt) in _process_table().items() if mnt == namespace}


def mount_points(pid: int | str = "self") -> set[str]:
    """The mount points process ``pid`` sees (by default this one's: the machine's, outside any private namespace)."""
    return {line.split()[4] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()}


def wait_until(condition, timeout_s: float) -> bool:
    """Poll ``condition`` every 0.2 s until it is true or ``timeout_s`` has passed; its last value."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    """``python -m coursekit.hub`` as ``make hub`` runs it, on a free port with a folder of its own.

    Whatever the tests leave running is stopped afterwards (Ctrl-C, then by process id), and
    the accounts, their homes and the hub's folder are removed.
    """
    skip_unless(os.geteuid() == 0, "the hub test creates system users (instructor, student1..3): it must run as root")
    if not PROXY.is_file():
        pytest.fail("configurable-http-proxy is missing under node_modules: run `npm ci` (make test runs it)")
    try:
        share = this_python_to_share()
    except ClosedToOthersError as error:
        skip_unless(False, f"make hub refuses to start from this clone: {error}")
    existing = [name for name in ACCOUNTS if account_exists(name)]
    if existing:
        pytest.fail(f"the accounts {existing} exist already (an earlier `make hub`?): this test creates and deletes "
                    "them, so remove them first with `userdel -r`")
    folder = Path(tempfile.mkdtemp(prefix="coursekit-hub-", dir="/tmp"))
    port = free_loopback_port()
    password = "hub-test-" + os.urandom(6).hex()
    log = folder.parent / f"{folder.name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURSEKIT_")}
    env["HUB_PASSWORD"] = password
    mounts_before = mount_points()
    with open(log, "wb") as out:
        # the Makefile's command, plus a folder of the test's own; a session of its own, as in a terminal
        process = subprocess.Popen(
            [sys.executable, "-m", "coursekit.hub", "--port", str(port), "--proxy", str(PROXY), "--dir", str(folder)],
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
        running = Hub(url, password, folder, log, process, share, mounts_before)
        yield running
    finally:
        for page in running.pages.values() if running else ():
            try:
                page.context.close()
            except Exception:  # already closed with another page of the same person
                pass
        if process.poll() is None:
            left = descendants(process.pid)
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _stop(process.pid, grace_s=5)
                process.wait(timeout=10)
            for pid in left:
                _stop(pid, grace_s=5)
        proxy = _proxy_pid(folder)
        if proxy is not None:
            _stop(proxy, grace_s=5)
        for name in ACCOUNTS:
            remove_account(name)
        shutil.rmtree(folder, ignore_errors=True)
        log.unlink(missing_ok=True)
    assert not port_in_use(port), f"something still listens on the hub's port {port}"
    assert not [name for name in ACCOUNTS if account_exists(name)], "the hub's accounts are removed"


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
        # The server writes a notebook in place (keeping a backup, not through a rename): a read while
        # JupyterLab's save is under way can find it empty, so read once the save has been answered.
        with student1.expect_response(lambda r: r.request.method == "PUT"
                                      and r.url.split("?")[0].endswith(f"/api/contents/{path}")) as saving:
            open_from_menu(student1, "File", "Save Notebook")
        assert saving.value.ok, f"JupyterLab could not save the notebook: {saving.value.status}"
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



def test_ctrl_c_stops_the_hub_its_proxy_and_every_server_and_leaves_no_mount(hub: Hub, chromium) -> None:
    log_in(chromium, hub, "student3")  # so that a server surely runs, whichever tests ran before
    started = hub.log.read_text().splitlines()
    if hub.share is not None:
        assert started[0] == hub.share.describe(), "the hub says in its first line that it shares the Python"
        assert str(hub.share.closed) in mount_points(hub.process.pid), "and it does, in its own namespace"
    else:
        assert "private mount namespace" not in hub.log.read_text()
    namespace = os.readlink(f"/proc/{hub.process.pid}/ns/mnt")
    running = descendants(hub.process.pid)
    assert _proxy_pid(hub.folder) in running, "the proxy runs under the hub"
    servers = {pid for name in ACCOUNTS for pid in processes_of(name)}
    assert set(processes_of("student3")) and servers <= running, "every user's server runs under the hub"

    os.killpg(hub.process.pid, signal.SIGINT)  # what Ctrl-C in the hub's terminal sends
    hub.process.wait(timeout=60)
    assert wait_until(lambda: not running & set(_process_table()), 30), \
        f"processes the hub started outlive it: {sorted(running & set(_process_table()))}"
    left = {name: {pid: _command_line(pid) for pid in processes_of(name)} for name in ACCOUNTS}
    assert left == {name: {} for name in ACCOUNTS}, \
        f"the accounts' processes outlive the hub:\n{left}\nthe hub's log ends:\n{hub.log.read_text()[-3000:]}"
    if hub.share is not None:
        assert in_namespace(namespace) == set(), "nothing is left in the hub's mount namespace, so it is gone"
    assert not (mount_points() - hub.mounts_before), "no mount is left on the machine"
    assert not port_in_use(int(hub.url.rsplit(":", 1)[1])), "nothing listens on the hub's port"
    status = {name: subprocess.run(["passwd", "--status", name], capture_output=True, text=True).stdout.split()[1]
              for name in ACCOUNTS}
    assert status == {name: "L" for name in ACCOUNTS}, f"the accounts are locked once the hub stops: {status}"
    shadow = {line.split(":")[0]: line.split(":")[7] for line in Path("/etc/shadow").read_text().splitlines()}
    assert {name: shadow[name] for name in ACCOUNTS} == {name: "1" for name in ACCOUNTS}, \
        "and expired, so that PAM refuses them whatever the way in (an SSH key, cron)"
