"""Small helpers shared by the benchmark modules: timing, subprocess workers, tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _status_mib(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss_mib() -> float:
    """Reset this process's resident-set-size high-water mark to the present RSS; return that RSS in MiB.

    Linux only (``/proc/self/clear_refs``, value 5). Measuring from the present
    RSS after a reset, not from an earlier high-water mark, counts every page a
    step touches, also those that reuse memory freed before the step (a
    temporary made while building the inputs, a warm-up's buffers).
    """
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
        clear_refs.write("5")
    return _status_mib("VmRSS")


def peak_rss_since_reset_mib() -> float:
    """The resident-set-size high-water mark (``VmHWM``) since :func:`reset_peak_rss_mib`, in MiB."""
    return _status_mib("VmHWM")


def run_worker(module: str, config: dict, timeout: float = 900) -> dict:
    """Run ``python -m <module> --worker '<json config>'`` in a fresh process; return its JSON answer.

    The worker prints one JSON object on its last line of stdout. A fresh process
    per configuration keeps one measurement's memory high-water mark from
    leaking into the next.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-m", module, "--worker", json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"worker {module} {config} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or nan when the denominator is not positive
    (a tiny smoke run can measure 0 MiB: below the resolution of the RSS counter)."""
    return numerator / denominator if denominator > 0 else float("nan")


def fmt(value: float, digits: int = 2) -> str:
    """A number with ``digits`` decimals, or ``-`` for nan."""
    return "-" if value != value else f"{value:.{digits}f}"
