"""What the grading report reads: every spec's graded functions and their references, and clear errors."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from adversarial.course import tool_env
from conftest import REPO_ROOT
from coursekit.grading.report import MissingResults, write_report
from coursekit.grading.report.results import graded_functions
from coursekit.grading.spec import FunctionQuestion, load_spec

pytestmark = [pytest.mark.grading]

SPECS = sorted((REPO_ROOT / "assignments" / "autograde").glob("*.py"))


@pytest.mark.parametrize("assignment", [p.stem for p in SPECS])
def test_every_graded_function_of_every_spec_is_found_with_its_reference_and_stub(assignment: str) -> None:
    spec = load_spec(REPO_ROOT / "assignments" / "autograde" / f"{assignment}.py")
    source = json.loads((REPO_ROOT / "assignments" / "source" / assignment / f"{spec.notebook}.ipynb").read_text())
    cells = ["".join(c["source"]) for c in source["cells"] if c["cell_type"] == "code"]
    functions = graded_functions(spec, cells)
    asked = [q for q in spec.questions if hasattr(q, "function")]
    assert [f.grade_id for f in functions] == [q.grade_id for q in asked]
    for function, question in zip(functions, asked):
        assert function.name == (question.student_function or question.function)
        assert function.stub is not None and function.stub.name == function.name, function.name
        if isinstance(question, FunctionQuestion) and question.reference.__module__.startswith("coursekit."):
            assert isinstance(function.reference, ast.FunctionDef)
            assert function.reference.name == question.reference.__name__


def test_a_course_without_results_of_the_assignment_is_named_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.CourseDirectory.course_id = 'demo'\n")
    with pytest.raises(MissingResults, match=r"'a1_sequence_loss'.*coursekit grade a1_sequence_loss"):
        write_report(tmp_path, "a1_sequence_loss")


def _stored_course(root: Path) -> Path:
    """A course with a1's spec and an empty grade-reports/a1_sequence_loss/ (results are stored by the tests)."""
    root.mkdir(exist_ok=True)
    (root / "nbgrader_config.py").write_text("c = get_config()\nc.CourseDirectory.course_id = 'demo'\n")
    (root / "autograde").mkdir()
    (root / "autograde" / "a1_sequence_loss.py").write_text(
        (REPO_ROOT / "assignments" / "autograde" / "a1_sequence_loss.py").read_text())
    stored = root / "grade-reports" / "a1_sequence_loss"
    stored.mkdir(parents=True)
    return stored


def _store(course: Path, student: str, notebook: dict) -> None:
    """Store ``notebook`` as ``student``'s autograded a1 with a full-marks result, as `coursekit grade` leaves them."""
    result = {"student": student, "assignment": "a1_sequence_loss", "score": 10.0, "max_score": 10.0,
              "outcome": "graded", "questions": [{"grade_id": "test_token_nll", "score": 3.0, "max_score": 3.0,
                                                  "outcome": "passed", "messages": []}]}
    (course / "grade-reports" / "a1_sequence_loss" / f"{student}.json").write_text(json.dumps(result))
    folder = course / "autograded" / student / "a1_sequence_loss"
    folder.mkdir(parents=True)
    (folder / "a1_sequence_loss.ipynb").write_text(json.dumps(notebook))


def _solution_padded(lines: int) -> dict:
    """The instructor's a1 notebook with ``lines`` no-op lines at the top of token_nll (none: as it is)."""
    notebook = json.loads((REPO_ROOT / "assignments" / "source" / "a1_sequence_loss" / "a1_sequence_loss.ipynb")
                          .read_text())
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.lstrip().startswith("def token_nll"):
            head, _, rest = source.partition("\n")
            cell["source"] = head + "\n" + "    x = 0\n" * lines + rest
            return notebook
    raise AssertionError("no cell of the a1 source defines token_nll")


def test_a_stored_result_that_is_not_a_report_is_named_in_the_error(tmp_path: Path) -> None:
    stored = _stored_course(tmp_path)
    (stored / "ada.json").write_text('{"student": "ada"}')
    with pytest.raises(ValueError, match=r"ada\.json is not a submission report"):
        write_report(tmp_path, "a1_sequence_loss")


def test_a_report_that_fails_removes_the_previous_page_and_says_so(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from coursekit.cli import main

    stored = _stored_course(tmp_path)
    _store(tmp_path, "ada", _solution_padded(0))
    assert main(["report", "a1_sequence_loss", "--course-dir", str(tmp_path)]) == 0
    assert (stored / "index.html").is_file()
    (stored / "bob.json").write_text('{"student": "bob"}')
    assert main(["report", "a1_sequence_loss", "--course-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "bob.json is not a submission report" in error and "index.html was removed" in error
    assert not (stored / "index.html").exists()
    assert [p.name for p in stored.iterdir() if p.name.startswith(".")] == []


# The peak is VmHWM, this process's own: ru_maxrss would carry the pytest worker's peak across exec,
# and with a worker larger than the report both readings would be the worker's.
_MEASURE = """
import json, sys, time
from pathlib import Path
from coursekit.grading.report import write_report
started = time.process_time()
write_report(Path(sys.argv[1]), "a1_sequence_loss")
with open("/proc/self/status") as status:
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"cpu_s": time.process_time() - started, "peak_kib": peak_kib}))
"""


def _report_cost(course: Path) -> dict[str, float]:
    """CPU seconds of write_report and the peak RSS of the process that ran it (a fresh interpreter)."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(course)], env=tool_env(), capture_output=True,
                          text=True, timeout=600, check=True)
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow
def test_a_padded_answer_of_megabytes_costs_the_report_about_what_a_normal_answer_does(tmp_path: Path) -> None:
    # Before the report bounded its work, the padded student alone cost ~17 s CPU and ~1.2 GiB (review r6
    # finding 5) against about 1 s and 0.4 GiB for the whole report of one normal student: ratios of 10+ and 3.
    # Now the padded cell is read and scanned by one regular expression, never parsed; the bounds leave room for
    # a loaded host's noise (CPU) and for the notebook's JSON and text held while it is read (memory).
    normal, padded = tmp_path / "normal", tmp_path / "padded"
    for course in (normal, padded):
        _stored_course(course)
        _store(course, "ada", _solution_padded(0))
    _store(padded, "pad", _solution_padded(250_000))
    size = (padded / "autograded" / "pad" / "a1_sequence_loss" / "a1_sequence_loss.ipynb").stat().st_size
    assert 2_000_000 < size < 3_000_000
    base, heavy = _report_cost(normal), _report_cost(padded)
    print(f"\nreport of 1 normal answer: {base}; with a {size:,}-byte padded one: {heavy}")
    assert heavy["cpu_s"] < 1.5 * base["cpu_s"] + 0.2, (base, heavy)
    assert heavy["peak_kib"] < 1.15 * base["peak_kib"], (base, heavy)
    html = (padded / "grade-reports" / "a1_sequence_loss" / "index.html").read_text()
    assert "pad</td><td>not compared: its code cell has 2," in html
