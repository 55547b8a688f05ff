"""The instructor's ``nbgrader validate`` passes every source notebook (students' page review, stop 41).

A2's first hidden block prepared every question's cases, and the reference's own warnings (a fully masked
row of causal_lm_loss) went to the cell's standard error: ``nbgrader validate`` failed A2's solution, and the
warnings, which name a hidden case, reached the students' feedback.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from adversarial.course import NBGRADER, make_course, tool_env
from coursekit.course import ASSIGNMENTS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_nbgrader_validate_passes_the_solution_and_prints_nothing_of_the_hidden_cases(
        tmp_path: Path, assignment: str) -> None:
    course = make_course(tmp_path / "course", assignment=assignment)
    source = course / "source" / assignment / f"{assignment}.ipynb"
    done = subprocess.run([*NBGRADER, "validate", str(source)], cwd=course, env=tool_env(),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and "Success! Your notebook passes all the tests." in done.stdout, (
        done.stdout[-3000:], done.stderr[-3000:])
    assert "Warning" not in done.stdout, done.stdout[-3000:]
