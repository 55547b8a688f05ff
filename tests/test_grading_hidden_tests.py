"""coursekit.grading.hidden_tests against nbgrader's own ClearHiddenTests and is_grade/is_solution.

The oracle is nbgrader itself: its ``ClearHiddenTests`` preprocessor, the one
``nbgrader generate_assignment`` runs, is applied to every source here, and
``strip_hidden_tests`` must release the same text. Where nbgrader refuses a
source (a region never closed, a region opened inside another) ours must not
raise and must show no line that nbgrader's reading of the instructor's evident
intent would hide. The last test generates a real assignment and checks that
the grader's expected cells and the feedback redaction both give the text that
was released.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from nbconvert.exporters.exporter import ResourcesDict
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from nbgrader.preprocessors import ClearHiddenTests
from nbgrader.utils import is_grade, is_solution
from traitlets.config import PyFileConfigLoader

from coursekit.course import RedactHiddenTests
from coursekit.grading.gradebook import expected_cells, load_course
from coursekit.grading.hidden_tests import HIDDEN_BEGIN, HIDDEN_END, is_autograder_test, strip_hidden_tests
from coursekit.grading.notebook import ExpectedCell
from tests.strategies import cell_sources

TEST_CELL_META = {"grade": True, "solution": False, "locked": True, "points": 1, "grade_id": "test_f", "schema_version": 3}
NOTE = RedactHiddenTests().note

# name: (source, regions ours counts). What is released is nbgrader's to say.
CORPUS: dict[str, tuple[str, int]] = {
    "one region between code": ("a = 1\n### BEGIN HIDDEN TESTS\nsecret()\n### END HIDDEN TESTS\nb = 2", 1),
    # The old feedback stripper dropped these trailing blank lines; nbgrader keeps them.
    "trailing blank lines": ("check()\n\n### BEGIN HIDDEN TESTS\nsecret()\n### END HIDDEN TESTS\n\n", 1),
    # The old feedback stripper kept a stray END line; nbgrader drops it.
    "END without BEGIN": ("a\n### END HIDDEN TESTS\nb", 0),
    # The old feedback stripper only knew "### BEGIN ..."; nbgrader matches the words anywhere in a line.
    "markers inside strings": ('msg = "BEGIN HIDDEN TESTS"\nsecret()\nprint("END HIDDEN TESTS")\nshown()', 1),
    "marker in a comment": ("x = 1  # BEGIN HIDDEN TESTS follow\nsecret()\n# END HIDDEN TESTS\nshown()", 1),
    "markers with leading spaces": ("if True:\n    ### BEGIN HIDDEN TESTS\n    secret()\n    ### END HIDDEN TESTS\n    shown()", 1),
    "CRLF line ends": ("a\r\n### BEGIN HIDDEN TESTS\r\nsecret()\r\n### END HIDDEN TESTS\r\nb\r\n", 1),
    "repeated regions": ("a\n### BEGIN HIDDEN TESTS\ns1\n### END HIDDEN TESTS\nb\n### BEGIN HIDDEN TESTS\ns2\n"
                         "### END HIDDEN TESTS\nc", 2),
    "adjacent regions": ("### BEGIN HIDDEN TESTS\ns1\n### END HIDDEN TESTS\n### BEGIN HIDDEN TESTS\ns2\n"
                         "### END HIDDEN TESTS", 2),
    "both markers on one line": ("# BEGIN HIDDEN TESTS ... END HIDDEN TESTS\nsecret()\n### END HIDDEN TESTS\nshown()", 1),
    "lower-case words are no marker": ("# begin hidden tests\nshown()\n# end hidden tests", 0),
    "empty cell": ("", 0),
    "only hidden": ("### BEGIN HIDDEN TESTS\nsecret()\n### END HIDDEN TESTS", 1),
    "only markers": ("### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS\n", 1),
    "no markers": ("assert f(1) == 1\n", 0),
    # Refused by nbgrader (RuntimeError): ours hides, never raises.
    "nested regions": ("a\n### BEGIN HIDDEN TESTS\ns1\n### BEGIN HIDDEN TESTS\ns2\n### END HIDDEN TESTS\ns3\n"
                       "### END HIDDEN TESTS\nb", 1),
    "BEGIN without END": ("visible()\n### BEGIN HIDDEN TESTS\nsecret()\nmore_secret()", 1),
    "CR-only line ends are one line": ("a\r### BEGIN HIDDEN TESTS\rsecret()\r### END HIDDEN TESTS\rb", 1),
}


def nbgrader_release(source: str) -> str | None:
    """What nbgrader's ClearHiddenTests releases of a test cell's ``source``; None where it refuses it."""
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = dict(TEST_CELL_META)
    try:
        released, _ = ClearHiddenTests().preprocess_cell(cell, ResourcesDict(), 0)
    except RuntimeError:
        return None
    return released.source


def repaired(source: str) -> str:
    """``source`` as an instructor would fix what nbgrader refuses: a BEGIN inside an open region
    dropped (so the first END closes it, as nbgrader reads it), and an open region closed at the end."""
    lines, open_region = [], False
    for line in source.split("\n"):
        if HIDDEN_BEGIN in line:
            if open_region:
                continue
            open_region = True
        elif HIDDEN_END in line:
            open_region = False
        lines.append(line)
    return "\n".join([*lines, "### END HIDDEN TESTS"] if open_region else lines)


def lines_of(text: str) -> list[str]:
    return text.split("\n") if text else []


def is_subsequence(part: list[str], whole: list[str]) -> bool:
    remaining = iter(whole)
    return all(line in remaining for line in part)


def assert_like_nbgrader(source: str) -> None:
    """Ours releases what nbgrader releases; where nbgrader refuses, ours shows a part of its repaired release."""
    ours = strip_hidden_tests(source).released
    theirs = nbgrader_release(source)
    if theirs is not None:
        assert ours == theirs, f"nbgrader releases {theirs!r} of {source!r}, ours {ours!r}"
        return
    repaired_release = nbgrader_release(repaired(source))
    assert repaired_release is not None, f"the repair of {source!r} is still refused by nbgrader"
    assert is_subsequence(lines_of(ours), lines_of(repaired_release)), (
        f"ours shows lines of {source!r} that nbgrader's reading hides: {ours!r} vs {repaired_release!r}")
    assert HIDDEN_BEGIN not in ours and HIDDEN_END not in ours


@pytest.mark.parametrize("name", list(CORPUS))
def test_strip_hidden_tests_releases_what_nbgrader_releases(name: str) -> None:
    source, regions = CORPUS[name]
    assert_like_nbgrader(source)
    assert strip_hidden_tests(source).regions == regions


def test_the_old_strippers_disagreements_are_settled_as_nbgrader_settles_them() -> None:
    trailing, stray, in_string = (CORPUS[name][0] for name in
                                  ("trailing blank lines", "END without BEGIN", "markers inside strings"))
    assert strip_hidden_tests(trailing).released == "check()\n\n\n"
    assert strip_hidden_tests(stray).released == "a\nb"
    assert strip_hidden_tests(in_string).released == "shown()"


def test_sources_nbgrader_refuses_are_hidden_not_raised() -> None:
    assert nbgrader_release(CORPUS["nested regions"][0]) is None
    assert strip_hidden_tests(CORPUS["nested regions"][0]).released == "a\nb", "a nested region hides to its own END"
    assert nbgrader_release(CORPUS["BEGIN without END"][0]) is None
    assert strip_hidden_tests(CORPUS["BEGIN without END"][0]).released == "visible()", "an open region hides the rest"
    assert strip_hidden_tests(CORPUS["CR-only line ends are one line"][0]).released == ""


@settings(max_examples=300, deadline=None)
@given(cell_sources())
def test_strip_hidden_tests_agrees_with_nbgrader_on_random_line_mixes(source: str) -> None:
    assert_like_nbgrader(source)


def test_strip_hidden_tests_follows_configured_markers_and_rejects_bad_arguments() -> None:
    source = "a\n## HIDE\nsecret()\n## SHOW\nb"
    assert strip_hidden_tests(source, "## HIDE", "## SHOW") == ("a\nb", 1)
    nbgrader = ClearHiddenTests(begin_test_delimeter="## HIDE", end_test_delimeter="## SHOW")
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = dict(TEST_CELL_META)
    assert nbgrader.preprocess_cell(cell, ResourcesDict(), 0)[0].source == "a\nb"
    with pytest.raises(TypeError, match="source must be a str, got list"):
        strip_hidden_tests(["a"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="begin and end must be non-empty markers, got ''"):
        strip_hidden_tests("a", "")


NBGRADER_KINDS = {
    "test cell": ("code", {"grade": True, "solution": False}),
    "answer cell with points": ("code", {"grade": True, "solution": True}),
    "answer cell without points": ("code", {"grade": False, "solution": True}),
    "read-only cell": ("code", {"grade": False, "solution": False, "locked": True}),
    "test cell flagged as a task": ("code", {"grade": True, "solution": False, "task": True}),
    "graded written answer": ("markdown", {"grade": True, "solution": True}),
    "graded markdown without answer": ("markdown", {"grade": True, "solution": False}),
    "task cell": ("markdown", {"grade": False, "solution": False, "task": True}),
    "no nbgrader metadata": ("code", None),
}


@pytest.mark.parametrize("kind", list(NBGRADER_KINDS))
def test_is_autograder_test_is_nbgraders_rule_in_both_places(kind: str) -> None:
    cell_type, meta = NBGRADER_KINDS[kind]
    cell = new_code_cell("x = 1") if cell_type == "code" else new_markdown_cell("text")
    if meta is not None:
        cell.metadata["nbgrader"] = {"grade_id": "c", "points": 1, "locked": False, "task": False, **meta}
    nbgraders_rule = bool(is_grade(cell)) and not is_solution(cell) and cell.cell_type == "code"
    assert is_autograder_test(cell) == nbgraders_rule
    assert is_autograder_test(json.loads(json.dumps(cell))) == nbgraders_rule, "plain JSON, as the grader reads it"
    if meta is not None:
        expected = ExpectedCell(name="c", cell_type=cell_type, source="", locked=False, grade=bool(meta["grade"]),
                                solution=bool(meta["solution"]), task=bool(meta.get("task")), points=1.0)
        assert expected.autograder_test == nbgraders_rule


def test_is_autograder_test_treats_malformed_metadata_as_an_ordinary_cell() -> None:
    assert not is_autograder_test({"cell_type": "code", "metadata": "grade"})
    assert not is_autograder_test({"cell_type": "code", "metadata": {"nbgrader": ["grade"]}})


def test_redaction_shows_the_released_text_of_every_cell_and_notes_the_cut() -> None:
    cells = [new_code_cell(CORPUS[name][0]) for name in ("trailing blank lines", "END without BEGIN", "no markers")]
    cells.append(new_markdown_cell("Explain.\n<!-- BEGIN HIDDEN TESTS -->\nmodel answer\n<!-- END HIDDEN TESTS -->"))
    for cell in cells:
        cell.metadata["nbgrader"] = dict(TEST_CELL_META)
    processed, _ = RedactHiddenTests().preprocess(new_notebook(cells=cells), ResourcesDict())
    assert [cell.source for cell in processed.cells] == [
        "check()\n\n\n" + NOTE,
        "a\nb",  # the stray END goes, as in the release, but no region was cut: no note
        "assert f(1) == 1\n",
        "Explain.\n" + NOTE,
    ]


def test_redaction_hides_what_nbgrader_would_refuse_and_goes_on() -> None:
    cells = [new_code_cell(CORPUS[name][0]) for name in ("nested regions", "BEGIN without END")]
    processed, _ = RedactHiddenTests().preprocess(new_notebook(cells=cells), ResourcesDict())
    assert [cell.source for cell in processed.cells] == ["a\nb\n" + NOTE, "visible()\n" + NOTE]


COURSE_CONFIG = """c = get_config()
c.CourseDirectory.course_id = "hidden_tests_demo"
c.CourseDirectory.db_url = "sqlite:///{db}"
"""


@pytest.mark.slow
@pytest.mark.grading
def test_grader_and_feedback_both_show_what_generate_assignment_released(tmp_path: Path) -> None:
    tricky = [CORPUS[name][0] for name in ("trailing blank lines", "markers inside strings", "CRLF line ends",
                                           "repeated regions", "markers with leading spaces", "only hidden")]
    answer = new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION")
    answer.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False, "grade_id": "answer_f",
                                   "schema_version": 3}
    cells = [answer]
    for index, source in enumerate(tricky):
        cell = new_code_cell(source)
        cell.metadata["nbgrader"] = {**TEST_CELL_META, "grade_id": f"test_{index}"}
        cells.append(cell)
    notebook = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                  "language": "python"}})
    (tmp_path / "nbgrader_config.py").write_text(COURSE_CONFIG.format(db=tmp_path / "gradebook.db"), encoding="utf-8")
    (tmp_path / "source" / "demo").mkdir(parents=True)
    (tmp_path / "source" / "demo" / "demo.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "demo"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    released = json.loads((tmp_path / "release" / "demo" / "demo.ipynb").read_text(encoding="utf-8"))
    released_tests = {cell["metadata"]["nbgrader"]["grade_id"]: "".join(cell["source"])
                      for cell in released["cells"] if is_autograder_test(cell)}
    assert len(released_tests) == len(tricky)
    assert released_tests["test_0"].endswith("\n\n"), "nbgrader keeps the blank lines after a region"

    expected = {cell.name: cell for cell in expected_cells(load_course(tmp_path), "demo")["demo"]}
    assert {name for name, cell in expected.items() if cell.autograder_test} == set(released_tests)
    assert {name: expected[name].source for name in released_tests} == released_tests

    processed, _ = RedactHiddenTests().preprocess(notebook, ResourcesDict())
    for cell in processed.cells[1:]:
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        shown = cell.source.removesuffix(NOTE)
        assert shown.rstrip("\n") == released_tests[grade_id].rstrip("\n"), grade_id
        assert "secret" not in cell.source and "s1" not in cell.source, grade_id


def test_the_grader_reads_the_markers_the_course_gives_clear_hidden_tests(tmp_path: Path) -> None:
    config = COURSE_CONFIG.format(db=tmp_path / "gradebook.db")
    (tmp_path / "nbgrader_config.py").write_text(config, encoding="utf-8")
    assert load_course(tmp_path).hidden_markers == (HIDDEN_BEGIN, HIDDEN_END)
    config += 'c.ClearHiddenTests.begin_test_delimeter = "## HIDE"\nc.ClearHiddenTests.end_test_delimeter = "## SHOW"\n'
    (tmp_path / "nbgrader_config.py").write_text(config, encoding="utf-8")
    assert load_course(tmp_path).hidden_markers == ("## HIDE", "## SHOW")
    feedback = RedactHiddenTests(config=PyFileConfigLoader("nbgrader_config.py", path=str(tmp_path)).load_config())
    assert (feedback.begin_test_delimeter, feedback.end_test_delimeter) == ("## HIDE", "## SHOW")
