"""The grader's kernel runs the magics that run Python as Jupyter does, and refuses every other one visibly.

Grader review r7, finding 1: the kernel's stand-in for ``get_ipython()`` did
nothing, so an honest ``%%time`` or ``%%capture`` answer cell defined nothing
and scored 0 while stock nbgrader (a real IPython kernel) ran it. These run
cells through the real :class:`~coursekit.grading.kernel.Kernel`, in this
process, as the runner's kernel process runs them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coursekit.grading.kernel import Kernel
from coursekit.grading.limits import Limits
from coursekit.grading.protocol import CellReport

#: an answer cell as a student writes it: a graded function.
ANSWER = "def twice(x):\n    return 2 * x\n"


@pytest.fixture()
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kernel:
    """A kernel whose working directory is a fresh temporary folder (``%%writefile`` writes there)."""
    monkeypatch.chdir(tmp_path)
    return Kernel(Limits(timeout_s=5).for_runner(), dedicated_uid=False)


def _run(kernel: Kernel, source: str, index: int = 0) -> CellReport:
    return kernel.run_cell(index, source)


def _ok(kernel: Kernel, source: str, index: int = 0) -> CellReport:
    report = _run(kernel, source, index)
    assert not report.failed, (report.ename, report.evalue, report.traceback)
    return report


def test_a_time_cell_defines_its_function_and_prints_its_times(kernel: Kernel) -> None:
    report = _ok(kernel, "%%time\n" + ANSWER + "print(twice(21))\n")
    assert kernel.namespace["twice"](4) == 8
    assert report.stdout.startswith("42\nCPU times: user ") and "\nWall time: " in report.stdout


def test_a_time_cell_whose_body_raises_fails_with_the_bodys_error_after_what_it_defined(kernel: Kernel) -> None:
    report = _run(kernel, "%%time\n" + ANSWER + "1 / 0\nafter = 1\n")
    assert report.failed and report.ename == "ZeroDivisionError"
    assert "twice" in kernel.namespace and "after" not in kernel.namespace


def test_the_time_line_magic_runs_a_statement_and_returns_an_expressions_value(kernel: Kernel) -> None:
    _ok(kernel, ANSWER + "%time x = twice(5)\ny = %time twice(6)\n")
    assert (kernel.namespace["x"], kernel.namespace["y"]) == (10, 12)


def test_a_capture_cell_runs_its_body_and_discards_its_output(kernel: Kernel) -> None:
    report = _ok(kernel, "%%capture\n" + ANSWER + "print('noisy training loop')\nimport sys\nsys.stderr.write('e')\n")
    assert kernel.namespace["twice"](1) == 2
    assert report.stdout == report.stderr == ""
    assert "sys" in kernel.namespace, "the import in the body binds in the notebook's names"


def test_a_named_capture_binds_ipythons_captured_io_with_the_text(kernel: Kernel) -> None:
    from IPython.utils.capture import CapturedIO

    _ok(kernel, "%%capture log\nprint('step 1')\n")
    report = _ok(kernel, "print(repr(log.stdout))\nlog.show()\n", index=1)
    assert isinstance(kernel.namespace["log"], CapturedIO)
    assert report.stdout == "'step 1\\n'\nstep 1\n"


def test_a_named_capture_keeps_no_more_than_the_notebooks_output_budget() -> None:
    kernel = Kernel(Limits(timeout_s=5, output_total=1000).for_runner(), dedicated_uid=False)
    _ok(kernel, "%%capture log\nprint('x' * 5000)\n")
    assert len(kernel.namespace["log"].stdout) == 1000


def test_capture_keeps_the_streams_it_is_told_not_to_capture(kernel: Kernel) -> None:
    report = _ok(kernel, "%%capture --no-stdout\nprint('shown')\n")
    assert report.stdout == "shown\n"


def test_a_timeit_cell_runs_setup_once_per_repetition_and_its_body_in_a_scope_of_its_own(kernel: Kernel) -> None:
    _ok(kernel, "calls = []\n")
    report = _ok(kernel, "%%timeit -n 3 -r 2 calls.append('setup')\ncalls.append('body')\nlocal_name = 1\n", 1)
    assert kernel.namespace["calls"] == ["setup", "body", "body", "body"] * 2
    assert "local_name" not in kernel.namespace, "IPython's %%timeit runs its body inside a function"
    assert " per loop (mean " in report.stdout and " std. dev. of 2 runs, 3 loops each)" in report.stdout


@pytest.mark.slow
def test_timeit_without_a_loop_count_repeats_seven_times_and_o_returns_the_result(kernel: Kernel) -> None:
    _ok(kernel, ANSWER + "calls = []\ndef slow():\n    import time\n    calls.append(1)\n    time.sleep(0.05)\n")
    _ok(kernel, "result = %timeit -q -o slow()\n", 1)
    result = kernel.namespace["result"]
    # Loops of 1 and 10 calls are tried: 10 take 0.5 s, at least 0.2 s, so 7 repetitions of 10 follow.
    assert (result.loops, result.repeat, len(kernel.namespace["calls"])) == (10, 7, 1 + 10 + 70)


def test_writefile_writes_a_module_the_next_cell_imports(kernel: Kernel, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))  # as the kernel's serve() puts its working directory first
    report = _ok(kernel, "%%writefile helpers.py\n" + ANSWER)
    _ok(kernel, "%%writefile -a helpers.py\nTHREE = 3\n", 1)
    _ok(kernel, "from helpers import twice, THREE\nsix = twice(THREE)\n", 2)
    assert (tmp_path / "helpers.py").read_text() == ANSWER + "THREE = 3\n"
    assert kernel.namespace["six"] == 6 and report.stdout == "Wrote helpers.py\n"


def test_matplotlib_selects_a_backend_that_draws_off_screen(kernel: Kernel) -> None:
    _ok(kernel, "%matplotlib inline\nimport matplotlib\nbackend = matplotlib.get_backend()\n" + ANSWER)
    assert kernel.namespace["backend"].lower() == "agg" and "twice" in kernel.namespace


@pytest.mark.parametrize(("source", "named"), [
    ("%%bash\necho hi\n", "%%bash"),
    ("%%javascript\nalert(1)\n", "%%javascript"),
    ("%run helpers.py\n", "%run"),
    ("%pip install numpy\n", "%pip"),
    ("!ls /\n", "!ls /"),
    ("files = !ls\n", "!ls"),
    ("get_ipython().system('ls')\n", "!ls"),
    ("twice?\n", "%pinfo"),
])
def test_any_other_magic_or_shell_command_fails_its_cell_naming_it(kernel: Kernel, source: str, named: str) -> None:
    report = _run(kernel, source + ANSWER)
    assert report.failed and report.ename == "UnsupportedMagic", report
    assert report.evalue.startswith(f"the grader's kernel does not run {named} (it runs %%time, %%timeit"), report
    assert "twice" not in kernel.namespace


def test_a_magic_inside_a_time_cell_is_run_or_refused_like_one_at_the_top(kernel: Kernel) -> None:
    _ok(kernel, "%%time\n%time x = 1\n" + ANSWER)
    assert kernel.namespace["x"] == 1
    assert _run(kernel, "%%capture\n!ls\n", 1).evalue.startswith("the grader's kernel does not run !ls")


@pytest.mark.slow
def test_a_magics_body_runs_under_the_cells_step_timers() -> None:
    kernel = Kernel(Limits(timeout_s=0.5).for_runner(), dedicated_uid=False)
    for index, source in enumerate(("%%timeit\nwhile True:\n    pass\n", "%%capture\nwhile True:\n    pass\n",
                                    "%time while True: pass\n")):
        report = _run(kernel, source, index)
        assert report.failed and report.ename == "CellTimeout", (source, report)


@pytest.mark.parametrize("line", ["%%writefile\nx\n", "%%writefile a.py b.py\nx\n", "%%capture two names\nx = 1\n",
                                  "%%time x = 1\ny = 2\n", "%timeit -r 0 pass\n"])
def test_a_magic_used_wrongly_fails_its_cell_saying_how_it_is_used(kernel: Kernel, line: str) -> None:
    report = _run(kernel, line)
    assert report.failed and report.ename == "UnsupportedMagic" and " take" in report.evalue, report
