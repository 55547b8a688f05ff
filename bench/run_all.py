"""Run every benchmark and write ``bench/RESULTS.md``: ``python -m bench.run_all [--tiny]``.

Discovers the modules ``bench/bench_*.py`` (in name order); each exposes
``run(*, tiny: bool, out_dir: pathlib.Path) -> str`` returning a markdown
section and saving its plots under ``out_dir``. The results file starts with a
header describing the machine (CPU count, torch version, date), then every
section; the GPU section written by ``bench/gpu_check.sh`` (``GPU_RESULTS.md``),
if present, is appended as it stands. A benchmark that fails gets a section
with its error and makes the exit status 1, but does not stop the others.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def discover() -> list[str]:
    """Names of the benchmark modules, ``bench.bench_*``, sorted."""
    return [f"bench.{path.stem}" for path in sorted(BENCH_DIR.glob("bench_*.py"))]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_header(tiny: bool) -> str:
    """The results file's header: when, where and with what the numbers were measured."""
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results" + (" (tiny smoke run)" if tiny else ""),
        "",
        "Written by `make bench` (`python -m bench.run_all`). The machines are shared and noisy: "
        "read the ratios, measured side by side in one run, rather than the absolute times.",
        "",
        f"- date: {now}",
        f"- machine: {platform.node()} ({platform.platform()}), {_cpu_model()}",
        f"- CPUs: {os.cpu_count()} ({usable} usable), torch threads: {torch.get_num_threads()}",
        f"- torch {torch.__version__}, Python {platform.python_version()}",
    ]
    return "\n".join(lines)


def run_benchmarks(modules: list[str], *, tiny: bool, out_dir: Path) -> tuple[list[str], bool]:
    """Run each module's ``run``; return the sections and whether all succeeded."""
    sections, ok = [], True
    for name in modules:
        start = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(name)
            section = module.run(tiny=tiny, out_dir=out_dir).strip()
        except Exception:  # one broken benchmark must not hide the others' numbers
            ok = False
            section = f"## {name}: FAILED\n\n```\n{traceback.format_exc()}```"
        elapsed = time.perf_counter() - start
        section += f"\n\n_{name} took {elapsed:.0f} s._"
        print(section + "\n", flush=True)
        sections.append(section)
    return sections, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks and write RESULTS.md.")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke run in seconds")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only benchmarks whose module name contains NAME (repeatable)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where RESULTS.md and the plots go (default: bench/; with --tiny, bench/out/, which git ignores)")
    args = parser.parse_args(argv)
    out_dir = args.out_dir or (BENCH_DIR / "out" if args.tiny else BENCH_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)

    modules = [m for m in discover() if not args.only or any(part in m for part in args.only)]
    if not modules:
        print(f"no benchmark module matches {args.only}; found {discover()}", file=sys.stderr)
        return 2
    sections, ok = run_benchmarks(modules, tiny=args.tiny, out_dir=out_dir)
    gpu = BENCH_DIR / "GPU_RESULTS.md"
    if gpu.exists() and not args.tiny:
        sections.append(gpu.read_text().strip())
    results = out_dir / "RESULTS.md"
    results.write_text(machine_header(args.tiny) + "\n\n" + "\n\n".join(sections) + "\n")
    print(f"[bench] wrote {results}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
