"""Benchmarks of coursekit against the tools people would use instead.

``python -m bench.run_all`` (what ``make bench`` runs) discovers every module
``bench/bench_*.py``; each exposes ``run(*, tiny: bool, out_dir: pathlib.Path) -> str``,
returning a markdown section and saving its plots under ``out_dir``. The
results land in ``bench/RESULTS.md``. ``bench/gpu_check.sh`` is the GPU
counterpart, run by hand on a machine with CUDA.
"""
