"""The hidden regions derived from the specs (coursekit.course.derived_tests) and the test cells' visible part."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from coursekit.course import ASSIGNMENTS
from coursekit.course.derived_tests import derive_course, derive_notebook, derived_source, graded_test_cells, visible_part
from coursekit.grading.hidden_tests import strip_hidden_tests
from coursekit.grading.spec import load_spec

VISIBLE_LINE = re.compile(r'^print\(f?"visible tests of .+ passed"\)$', re.MULTILINE)


def _notebook(repo_root: Path, assignment: str) -> dict:
    return json.loads((repo_root / "assignments" / "source" / assignment / f"{assignment}.ipynb").read_text())


def test_derived_source_replaces_the_hidden_region_and_keeps_the_visible_checks() -> None:
    source = "assert f(1) == 1\nprint('ok')\n\n### BEGIN HIDDEN TESTS\nassert f(2) == 4\n### END HIDDEN TESTS\n"
    derived = derived_source(source, "test_f")
    assert derived.startswith("assert f(1) == 1\nprint('ok')\n### BEGIN HIDDEN TESTS\n")
    assert derived.endswith('_question_points("test_f", globals())\n### END HIDDEN TESTS')
    assert strip_hidden_tests(derived) == ("assert f(1) == 1\nprint('ok')", 1)
    assert derived_source(derived, "test_f") == derived


def test_derive_course_leaves_the_repository_notebooks_unchanged(tmp_path: Path, repo_root: Path) -> None:
    for folder in ("source", "autograde"):
        shutil.copytree(repo_root / "assignments" / folder, tmp_path / folder)
    assert derive_course(tmp_path) == []


def test_derive_notebook_refuses_cells_that_are_not_the_specs_questions(repo_root: Path) -> None:
    notebook = _notebook(repo_root, ASSIGNMENTS[0])
    spec = load_spec(repo_root / "assignments" / "autograde" / f"{ASSIGNMENTS[0]}.py")
    graded_test_cells(notebook)[0]["metadata"]["nbgrader"]["points"] = 99
    with pytest.raises(ValueError, match="grade_ids and points must be the spec's"):
        derive_notebook(notebook, spec)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_test_cell_prints_its_visible_tests_passed_line(repo_root: Path, assignment: str) -> None:
    for cell in graded_test_cells(_notebook(repo_root, assignment)):
        visible = visible_part("".join(cell["source"]))
        assert VISIBLE_LINE.search(visible), f"{cell['metadata']['nbgrader']['grade_id']} prints no visible-tests line"
