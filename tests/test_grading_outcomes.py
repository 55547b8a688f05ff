"""What the feedback says of an answer cell that was skipped on a rerun, whatever IPython syntax the cell uses."""

from __future__ import annotations

import dataclasses

import pytest

from coursekit.grading.outcomes import skipped_answers
from coursekit.grading.sandbox import RawRun
from coursekit.grading.spec import FunctionQuestion
from coursekit.losses import token_nll

pytestmark = [pytest.mark.grading]


@pytest.mark.parametrize("magic", ["", "%%capture cap\n", "%%time\n", "%matplotlib inline\n"])
def test_an_answer_cell_with_a_magic_skipped_on_a_rerun_is_named_in_the_feedback(magic: str) -> None:
    cells = [{"source": "import torch", "metadata": {}},
             {"source": magic + "def token_nll(logits, targets):\n    return logits\n",
              "metadata": {"nbgrader": {"solution": True}}}]
    question = FunctionQuestion("test_token_nll", "token_nll", 3.0, list, token_nll)
    found = skipped_answers(RawRun(skipped_cells=[(1, "memory")]), cells, [question])
    assert found == {"test_token_nll": "your answer cell (cell 1) ran out of memory and was skipped on a rerun, "
                                       "so what it defines was not there"}


def test_a_rerun_that_ran_out_and_kept_earlier_results_says_so() -> None:
    """Grader review r12, R4: when a rerun without a crashed function runs out of its cells' budget, the report
    says that the calls made before the crash kept their results."""
    from coursekit.grading.outcomes import run_notes

    assert ("a rerun ran out of its cells' time budget before it made its hidden calls; the hidden calls made "
            "before the crash kept their results") in run_notes(RawRun(kept_from_earlier="cells", kept_calls=2))
    # Review r15, F1: with no call kept, the note still says that the rerun ran out.
    assert ("a rerun ran out of its cells' time budget before it made its hidden calls"
            in run_notes(RawRun(kept_from_earlier="cells")))
    assert not any("ran out of its cells' time budget" in note for note in run_notes(RawRun()))


def test_a_cell_that_kept_its_memory_and_stayed_is_named_in_the_notes() -> None:
    """Grader review r27, F1: a hoarding cell that stays in the run (nothing after it ran short of memory, no
    attempt left, or no rerun could change a score) is named in the notes; r28, F3 and r29, F2: by what was
    measured only, and a later cell that failed, having started near the limit, is not said to have been far from
    it nor to have run out itself."""
    from coursekit.grading.outcomes import run_notes
    from coursekit.grading.protocol import CellEnd, CellStatus, StepEnd

    freed = CellEnd(1, CellStatus.ERROR, ended=StepEnd.MEMORY_LIMIT)
    held = CellEnd(3, CellStatus.ERROR, ended=StepEnd.MEMORY_LIMIT, memory_held=True)
    starved = CellEnd(5, CellStatus.ERROR, ended=StepEnd.MEMORY_LIMIT, started_near_limit=True)
    notes = run_notes(RawRun(cells=[freed, held, CellEnd(4, CellStatus.OK, started_near_limit=True), starved]))
    assert [note for note in notes if note.startswith("cell ")] == [
        "cell 1 ran out of memory and was not near the limit when it ended; it was not skipped",
        "cell 3 ran out of memory and kept it (near the limit when it ended); it was not skipped",
        "cell 5 failed at the memory limit after cell 3 kept its memory; it was not skipped",
    ], notes
    # r31, F2: a cell that started below the limit shows the hoarder's memory was gone; r30, F3: a cell that
    # started near the limit (a cell that succeeded left memory taken) is not said to have ended far from it.
    cleaned = run_notes(RawRun(cells=[held, CellEnd(4, CellStatus.OK, started_near_limit=True),
                                      dataclasses.replace(starved, started_near_limit=False)]))
    assert [note for note in cleaned if note.startswith("cell 5")] == [
        "cell 5 ran out of memory and was not near the limit when it ended; it was not skipped"], cleaned
    crowded = run_notes(RawRun(cells=[CellEnd(4, CellStatus.OK), starved]))
    assert [note for note in crowded if note.startswith("cell 5")] == [
        "cell 5 failed at the memory limit, which it was already near when it started; it was not skipped"], crowded
    # A hoarder that was left out is named by the skipped-cell note alone.
    left_out = run_notes(RawRun(cells=[freed], skipped_cells=[(3, "memory")]))
    assert [note for note in left_out if "cell 3" in note] == [
        "the process ran out of memory in cell 3; it was skipped on a rerun"], left_out
