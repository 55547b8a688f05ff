"""The executors: one job that fails in the grader's own code never stops the jobs after it."""

from __future__ import annotations

import pytest

from coursekit.grading.executors import LocalExecutor
from coursekit.grading.limits import Limits
from coursekit.grading.package_view import plan_view
from coursekit.grading.protocol import CellStatus
from coursekit.grading.sandbox import Job, RawRun
from conftest import require_sandbox

pytestmark = [pytest.mark.slow, pytest.mark.grading]


def _job(cell: dict) -> Job:
    return Job(files={}, cells=[cell], calls=[], adapters=[], view=plan_view(set(), []))


def test_a_job_that_raises_in_the_grader_is_handed_back_and_the_others_run() -> None:
    """Grader review r3, finding 1: ``future.result()`` raised out of the executor and ended the batch.

    A NaN in a cell cannot be encoded for the runner, so ``run_submission`` raises in the grader's own process.
    """
    require_sandbox()
    broken = _job({"index": 0, "source": "x = 1", "weight": float("nan")})
    fine = _job({"index": 0, "source": "print('ran')"})
    results: dict[str, RawRun | Exception] = {}
    LocalExecutor(1).run([("aa_broken", broken), ("zz_fine", fine)], Limits(timeout_s=5.0), None,
                         results.__setitem__)
    assert isinstance(results["aa_broken"], ValueError), results["aa_broken"]
    run = results["zz_fine"]
    assert isinstance(run, RawRun) and run.finished
    assert [(cell.status, cell.stdout) for cell in run.cells] == [(CellStatus.OK, "ran\n")]
