"""The grading report on a generated class of 45 submissions, graded once by the real `coursekit grade`.

The report's numbers are checked against the gradebook (nbgrader's API) and the
stored JSON results, computed here without the report's code; the page is
opened from file:// in headless Chromium, where every request is recorded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from statistics import mean

import pytest

from adversarial.course import VENV_BIN, make_course, tool_env
from conftest import require_sandbox
from html_tables import tables as _tables
from report_class import ASSIGNMENT, PLANTED, submit_class

pytestmark = [pytest.mark.slow, pytest.mark.grading, pytest.mark.a1]

QUESTIONS = ["test_token_nll", "test_sequence_loss", "test_perplexity", "test_fox", "test_mc_classification"]


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The class, graded once by `coursekit grade` (two jobs, 3 s per cell), with the time it took."""
    require_sandbox()
    course = make_course(tmp_path_factory.mktemp("report-class"))
    class_ = submit_class(course)
    started = time.monotonic()
    done = subprocess.run([str(VENV_BIN / "coursekit"), "grade", ASSIGNMENT, "--jobs", "2", "--timeout", "3",
                           "--no-progress"], cwd=course, env=tool_env(), capture_output=True, text=True, timeout=1500)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    page = course / "grade-reports" / ASSIGNMENT / "index.html"
    stored = {p.stem: json.loads(p.read_text()) for p in page.parent.glob("*.json")}
    print(f"\ngraded {len(class_)} submissions in {seconds:.1f} s; report {page.stat().st_size} bytes")
    return {"course": course, "class": class_, "kinds": {s.student: s.kind for s in class_}, "page": page,
            "html": page.read_text(encoding="utf-8"), "stored": stored, "stdout": done.stdout, "seconds": seconds}


@pytest.fixture(scope="module")
def gradebook(graded_class: dict) -> dict[str, dict[str, float]]:
    """Student -> grade_id -> auto score, read from nbgrader's gradebook."""
    from nbgrader.api import Gradebook

    from coursekit.grading.gradebook import load_course

    settings = load_course(graded_class["course"])
    scores: dict[str, dict[str, float]] = {}
    with Gradebook(settings.db_url, settings.course_id) as book:
        for submission in book.assignment_submissions(ASSIGNMENT):
            for notebook in submission.notebooks:
                scores[submission.student_id] = {g.name: g.auto_score for g in notebook.grades
                                                 if g.name in QUESTIONS}
    return scores


def _students_of(kinds: dict[str, str], kind: str) -> set[str]:
    return {student for student, k in kinds.items() if k == kind}


def test_grade_writes_the_report_for_a_class_of_forty(graded_class: dict) -> None:
    assert len(graded_class["class"]) >= 40
    assert graded_class["page"].is_file()
    assert "class report: index.html" in graded_class["stdout"]
    assert set(graded_class["stored"]) == set(graded_class["kinds"])


def test_report_scores_match_the_gradebook(graded_class: dict, gradebook: dict) -> None:
    rows = {row[0]: row for row in _tables(graded_class["html"]).tables["students"]}
    assert set(rows) == set(gradebook)
    for student, cells in gradebook.items():
        assert float(rows[student][1]) == pytest.approx(sum(cells.values()), abs=1e-9), student
        assert rows[student][3] == graded_class["stored"][student]["outcome"]
        assert float(rows[student][4]) == pytest.approx(graded_class["stored"][student]["seconds"], abs=0.051)


def test_histogram_counts_every_total_score(graded_class: dict, gradebook: dict) -> None:
    totals = [sum(cells.values()) for cells in gradebook.values()]
    counts = [0] * 10
    for total in totals:
        counts[9 if total >= 10.0 else int(total)] += 1    # a1 has 10 points: bins [0, 1), ..., [9, 10]
    table = _tables(graded_class["html"]).tables["histogram"]
    assert [row[0] for row in table][:2] == ["[0, 1)", "[1, 2)"] and table[-1][0] == "[9, 10]"
    assert [int(row[1]) for row in table] == counts


def test_question_table_matches_the_gradebook(graded_class: dict, gradebook: dict) -> None:
    table = {row[0]: row for row in _tables(graded_class["html"]).tables["questions"]}
    assert list(table) == QUESTIONS
    for question in QUESTIONS:
        scores = [cells[question] for cells in gradebook.values()]
        points = float(table[question][1])
        full = sum(score == points for score in scores)
        none = sum(score == 0 for score in scores)
        assert float(table[question][2]) == pytest.approx(mean(scores), abs=5e-4), question
        assert float(table[question][3].rstrip("%")) == pytest.approx(100 * full / len(scores), abs=0.051), question
        assert [int(c) for c in table[question][4:7]] == [full, len(scores) - full - none, none], question


def test_outcomes_list_every_student_by_outcome(graded_class: dict) -> None:
    table = {row[0]: row for row in _tables(graded_class["html"]).tables["outcomes"]}
    by_outcome: dict[str, set[str]] = {}
    for student, stored in graded_class["stored"].items():
        by_outcome.setdefault(stored["outcome"], set()).add(student)
    assert set(table) == set(by_outcome)
    for outcome, students in by_outcome.items():
        assert int(table[outcome][1]) == len(students)
        assert set(table[outcome][2].split(", ")) == students
    kinds = graded_class["kinds"]
    assert by_outcome["uses_reference"] == _students_of(kinds, "uses_reference")
    assert by_outcome["timeout"] == _students_of(kinds, "timeout")
    assert by_outcome["tampered_cells"] == {"tampered"}
    assert "crash_kernel" in by_outcome["kernel_died"]
    assert by_outcome["missing_notebook"] == {"renamed"}


def test_a_notebook_handed_in_under_another_name_is_named_with_the_expected_one(graded_class: dict) -> None:
    stored = graded_class["stored"]["renamed"]
    assert (stored["outcome"], stored["score"]) == ("missing_notebook", 0.0)
    assert stored["notes"][0].startswith(f"no {ASSIGNMENT}.ipynb in the submission; found {ASSIGNMENT}-Copy1.ipynb: "
                                         f"rename it to {ASSIGNMENT}.ipynb and regrade with --force")
    assert "stock nbgrader autograde does not grade it either" in stored["notes"][0]


def test_common_failures_group_the_students_with_one_bug(graded_class: dict) -> None:
    rows = _tables(graded_class["html"]).tables["failures"]
    kinds = graded_class["kinds"]
    wrong_gradient = {s for s in _students_of(kinds, "wrong_gradient") if "token_nll" in s}
    matching = [row for row in rows if row[0] == "test_token_nll" and "gradient" in row[2]]
    assert any(set(row[3].split(", ")) >= wrong_gradient for row in matching), rows
    for row in rows:
        students = int(row[1])
        assert row[2].startswith(f"{students} student{'' if students == 1 else 's'}: ")
        assert students == len(row[3].split(", "))
    counts = [int(row[1]) for row in rows]
    assert counts == sorted(counts, reverse=True)


def test_near_copies_are_paired_and_no_one_else_is_linked_to_them(graded_class: dict) -> None:
    rows = _tables(graded_class["html"]).tables["copies-token_nll"]
    groups = [set(row[2].split(", ")) for row in rows]
    assert {"copy_a", "copy_b"} in groups
    pair = next(row for row in rows if set(row[2].split(", ")) == {"copy_a", "copy_b"})
    assert float(pair[1]) == 1.0
    untouched = _students_of(graded_class["kinds"], "untouched")
    assert not any(group & untouched for group in groups)


def test_answer_pasted_from_the_reference_is_flagged_for_review_only(graded_class: dict, gradebook: dict) -> None:
    rows = _tables(graded_class["html"]).tables["reference-perplexity"]
    levels = {student: row for row in rows for student in row[2].split(", ")}
    assert float(levels["book_copy_perplexity"][0]) == 1.0 and levels["book_copy_perplexity"][3] == "review"
    assert all((row[3] == "review") == (float(row[0]) >= 0.9) and int(row[1]) == len(row[2].split(", "))
               for row in rows)
    assert gradebook["book_copy_perplexity"]["test_perplexity"] == 1.0     # a flag, never a score change
    assert not set(levels) & _students_of(graded_class["kinds"], "untouched")
    assert [float(row[0]) for row in rows] == sorted((float(row[0]) for row in rows), reverse=True)


def test_answers_the_report_cannot_compare_are_graded_and_listed_with_why(graded_class: dict,
                                                                       gradebook: dict) -> None:
    # `coursekit grade` exited 0 (the fixture checks it) with both in the class: the report no longer raises.
    rows = {row[0]: row[1] for row in _tables(graded_class["html"]).tables["not-compared-token_nll"]}
    assert set(rows) == _students_of(graded_class["kinds"], "not_compared") == {"long_sum", "padded"}
    assert rows["long_sum"] == "not compared: the function cannot be normalised (RecursionError)"
    assert rows["padded"].startswith("not compared: its code cell has ") and "over the 200,000" in rows["padded"]
    for student in rows:
        assert gradebook[student]["test_token_nll"] == 3.0, student
    compared = {name for row in _tables(graded_class["html"]).tables["reference-token_nll"]
                for name in row[2].split(", ")}
    assert not compared & set(rows)


def test_student_html_stays_text(graded_class: dict) -> None:
    html = graded_class["html"]
    assert _tables(html).live == []
    assert "&lt;script&gt;document.title" in html        # the planted timestamp, quoted in a note
    assert PLANTED not in html


def test_report_holds_no_hidden_test_source_or_inputs(graded_class: dict) -> None:
    html = graded_class["html"]
    source = (graded_class["course"] / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    hidden = [line.strip() for cell in json.loads(source)["cells"] for line in "".join(cell["source"]).splitlines()
              if "assert" in line and len(line.strip()) > 30]
    assert hidden and not [line for line in hidden if line in html]
    assert "BEGIN HIDDEN" not in html and "SEED" not in html


def test_report_command_regenerates_the_same_page_without_grading(graded_class: dict) -> None:
    course, page = graded_class["course"], graded_class["page"]
    gradebook_file = course / "gradebook.db"
    before = gradebook_file.stat().st_mtime_ns
    page.unlink()
    started = time.monotonic()
    done = subprocess.run([str(VENV_BIN / "coursekit"), "report", ASSIGNMENT, "--course-dir", str(course)],
                          env=tool_env(), capture_output=True, text=True, timeout=300)
    print(f"\n`coursekit report` took {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stderr
    assert page.read_text(encoding="utf-8") == graded_class["html"]
    assert gradebook_file.stat().st_mtime_ns == before


def test_report_command_names_a_missing_assignment_or_course(graded_class: dict, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from coursekit.cli import main

    assert main(["report", "a9_nothing", "--course-dir", str(graded_class["course"])]) == 2
    assert "'a9_nothing'" in capsys.readouterr().err
    assert main(["report", ASSIGNMENT, "--course-dir", str(tmp_path / "no-course")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("coursekit report: ") and "no-course does not exist" in error


@pytest.mark.browser
def test_report_opens_offline_with_every_image_loaded_and_described(graded_class: dict, tmp_path: Path,
                                                                    chromium) -> None:
    # The worker's one Chromium (conftest.py): Playwright's synchronous API runs one instance per process, and a
    # worker that ran the book's browser tests before this one still holds it.
    copy = tmp_path / "mailed" / "index.html"     # as an instructor would open it, away from the course
    copy.parent.mkdir()
    shutil.copy(graded_class["page"], copy)
    url = copy.as_uri()
    requests: list[str] = []
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.on("request", lambda request: requests.append(request.url))
        errors: list[str] = []
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.goto(url, wait_until="load")
        images = page.eval_on_selector_all(
            "img", "imgs => imgs.map(i => ({complete: i.complete, width: i.naturalWidth, "
                   "alt: (i.getAttribute('alt') || '').trim()}))")
        title = page.title()
    finally:
        context.close()
    assert len(images) == 3
    assert all(image["complete"] and image["width"] > 0 and len(image["alt"]) > 20 for image in images), images
    assert [r for r in requests if not r.startswith("data:")] == [url]
    assert errors == [] and title == f"Grading report: {ASSIGNMENT}"
