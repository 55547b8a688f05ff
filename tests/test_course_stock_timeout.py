"""A hidden block that nbgrader interrupts at its cell timeout stops at once (students' page review, stop 41).

nbgrader's ``Execute`` interrupts the kernel when a cell outruns ``Execute.timeout`` and then gives the
cell nbclient's ``iopub_timeout`` (4 s) to end; a cell still running after that made nbgrader abandon
the whole submission ("There was an error processing assignment"), because the hidden block counted the
``KeyboardInterrupt`` as one failed case and went on with the others.
"""

from __future__ import annotations

import nbformat
import pytest
from nbgrader.preprocessors import Execute

from coursekit.course.hidden_score import INTERRUPTED

pytestmark = pytest.mark.slow

#: the question, prepared in a cell without a time limit (importing torch can take seconds on a busy machine).
SETUP_CELL = '''import time
import numpy as np
from coursekit.course.hidden_score import call_ends
from coursekit.grading.spec import AssignmentSpec, Case, FunctionQuestion, prepare_calls

def _cases(rng):
    return [Case((np.arange(3.0) + i,)) for i in range(6)]

def _reference(x):
    return x

QUESTION = FunctionQuestion("test_slow", "slow", 1, _cases, _reference)
calls = prepare_calls(AssignmentSpec("demo", "demo", 1, (QUESTION,)), course="seqloss", student="ada",
                      secret=bytes(range(32)))["test_slow"]

def slow(x):
    time.sleep(3)
    return x
'''
#: the hidden block: six cases of 3 s each, 18 s in all, far past the cell's 4 s.
SLOW_CELL = '''call_ends(calls, {"slow": slow})
print("the hidden block ran to its end")
'''
CELL_TIMEOUT_S = 4


def test_a_cell_interrupted_at_nbgraders_timeout_ends_with_an_error_and_the_notebook_goes_on(tmp_path) -> None:
    cells = [nbformat.v4.new_code_cell(SETUP_CELL), nbformat.v4.new_code_cell(SLOW_CELL),
             nbformat.v4.new_code_cell("print('the next cell ran')")]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    # The course's settings (coursekit.course.config: interrupt_on_timeout), with a short timeout for the slow cell.
    execute = Execute(interrupt_on_timeout=True,
                      timeout_func=lambda cell: CELL_TIMEOUT_S if cell.source == SLOW_CELL else None)
    # Before the fix, nbclient raised CellTimeoutError here: the block ran on past iopub_timeout.
    execute.preprocess(notebook, {"metadata": {"path": str(tmp_path)}})
    assert not [o for o in notebook.cells[0].outputs if o.output_type == "error"], notebook.cells[0].outputs
    slow_outputs, next_outputs = notebook.cells[1].outputs, notebook.cells[2].outputs
    errors = [o for o in slow_outputs if o.output_type == "error"]
    assert errors and errors[0].ename == "KeyboardInterrupt", slow_outputs
    assert INTERRUPTED in errors[0].evalue, slow_outputs
    assert not any("ran to its end" in o.get("text", "") for o in slow_outputs), slow_outputs
    assert [o.get("text") for o in next_outputs] == ["the next cell ran\n"], next_outputs
