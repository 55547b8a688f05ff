"""Smoke runs of the benchmarks at tiny size, so that the benchmark code cannot rot.

No assertion on time: benchmarks are not tests. What is checked is that every
module runs, returns a markdown section with a table, saves a plot, and that
``bench.run_all`` writes a results file with the machine header.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run_all import discover, main

pytestmark = pytest.mark.bench

REPO_ROOT = Path(__file__).resolve().parents[1]
# Their tiny runs still build a book, run nbgrader, train the recipes or start a fresh
# Python per configuration; reductions (in-process, about a second) stays in the fast loop.
SLOW_BENCHMARKS = ("bench.bench_book", "bench.bench_chunked", "bench.bench_grading", "bench.bench_models")


def test_discovery_finds_the_loss_benchmarks() -> None:
    modules = discover()
    assert "bench.bench_chunked" in modules and "bench.bench_reductions" in modules
    assert modules == sorted(modules)


@pytest.mark.parametrize(
    "module_name", [pytest.param(m, marks=pytest.mark.slow) if m in SLOW_BENCHMARKS else m for m in discover()])
def test_benchmark_runs_at_tiny_size(module_name: str, tmp_path: Path) -> None:
    module = importlib.import_module(module_name)
    section = module.run(tiny=True, out_dir=tmp_path)
    assert section.startswith("## "), section[:200]
    table_rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(table_rows) >= 3, "a section needs a table: header, separator and at least one row"
    pngs = list(tmp_path.glob("*.png"))
    assert pngs and all(p.stat().st_size > 1000 for p in pngs)


def test_run_all_writes_results_with_a_machine_header(tmp_path: Path) -> None:
    status = main(["--tiny", "--only", "reductions", "--out-dir", str(tmp_path)])
    assert status == 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.startswith("# Benchmark results (tiny smoke run)")
    for field in ("- date:", "- CPUs:", "- torch ", "- machine:"):
        assert field in text
    assert "## 2. Reductions" in text and "| B x T x V |" in text
    assert (tmp_path / "reductions.png").exists()


def test_run_all_reports_an_unknown_benchmark_name(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--tiny", "--only", "no-such-benchmark", "--out-dir", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "no benchmark module matches" in result.stderr
    assert not (tmp_path / "RESULTS.md").exists()
