"""GPU part of benchmark 1: bfloat16 large-vocabulary loss on CUDA (run by ``bench/gpu_check.sh``).

At N = 8192 tokens, H = 2304, V = 256000 (the output layer of a 2B-parameter
open model), forward + backward of

* the plain expression ``F.cross_entropy(hidden @ weight.T, targets)``,
* ``coursekit.losses.chunked_cross_entropy`` at several chunk sizes,
* Liger-Kernel's fused linear cross-entropy and Apple's Cut Cross-Entropy,
  where they are importable,

reporting the extra peak of ``torch.cuda.max_memory_allocated`` over the
inputs (the gradients of ``hidden`` and ``weight`` count, as they must exist
afterwards in every method), the median time over repeated steps measured with
CUDA events, and the largest difference of the loss and of sampled gradient
entries from the plain expression's. Writes ``bench/GPU_RESULTS.md`` and puts
the same section at the end of ``bench/RESULTS.md``.

Usage: ``python -m bench.gpu_chunked [--tiny] [--tests-summary TEXT]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from bench._common import fmt, markdown_table
from coursekit.losses import chunked_cross_entropy

BENCH_DIR = Path(__file__).resolve().parent
SECTION_TITLE = "## GPU: large-vocabulary loss in bfloat16"
GIB = 1024**3
MIB = 1024**2


def _methods() -> list[tuple[str, Callable | None, str]]:
    """``(name, loss(hidden, weight, targets) or None, note)`` for every method to compare."""
    methods: list[tuple[str, Callable | None, str]] = [
        ("plain F.cross_entropy(hidden @ weight.T)", lambda h, w, t: F.cross_entropy(h @ w.T, t), "")
    ]
    # 320 and 384 bracket the largest chunk whose logits fit the 1.3 GiB goal at V = 256000.
    for chunk_size in (128, 256, 320, 384, 512, 1024):
        methods.append((
            f"coursekit chunked, chunk_size={chunk_size}",
            lambda h, w, t, cs=chunk_size: chunked_cross_entropy(h, w, t, chunk_size=cs),
            "",
        ))
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        liger = LigerFusedLinearCrossEntropyLoss()
        methods.append(("Liger-Kernel fused linear CE", lambda h, w, t: liger(w, h, t), ""))
    except Exception as error:  # not installed, or an incompatible version
        methods.append(("Liger-Kernel fused linear CE", None, f"not importable: {type(error).__name__}"))
    try:
        from cut_cross_entropy import linear_cross_entropy

        methods.append(("Cut Cross-Entropy", lambda h, w, t: linear_cross_entropy(h, w, t), ""))
    except Exception as error:
        methods.append(("Cut Cross-Entropy", None, f"not importable: {type(error).__name__}"))
    return methods


def _measure(loss_fn: Callable, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, repeats: int):
    def step() -> torch.Tensor:
        hidden.grad = weight.grad = None
        loss = loss_fn(hidden, weight, targets)
        loss.backward()
        return loss

    step()  # warm-up: kernels, autotuning, cuBLAS workspaces
    hidden.grad = weight.grad = None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    loss = step()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    sample = (
        float(loss),
        hidden.grad[:64].float().clone(),
        weight.grad[targets[:64]].float().clone(),
    )
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        hidden.grad = weight.grad = None
        start.record()
        loss_fn(hidden, weight, targets).backward()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    hidden.grad = weight.grad = None
    return extra, statistics.median(times), sample


def _relative_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


def run(*, tiny: bool, tests_summary: str = "") -> str:
    if not torch.cuda.is_available():
        raise SystemExit("bench.gpu_chunked needs a CUDA GPU (torch.cuda.is_available() is False)")
    n, h, v = (512, 64, 4096) if tiny else (8192, 2304, 256000)
    repeats = 3 if tiny else 10
    device = torch.device("cuda")
    g = torch.Generator(device=device).manual_seed(0)
    hidden = (torch.randn(n, h, generator=g, device=device)).to(torch.bfloat16).requires_grad_(True)
    weight = (torch.randn(v, h, generator=g, device=device) / h**0.5).to(torch.bfloat16).requires_grad_(True)
    targets = torch.randint(0, v, (n,), generator=g, device=device)

    rows, reference, plain_ms, plain_extra = [], None, float("nan"), float("nan")
    for name, loss_fn, note in _methods():
        if loss_fn is None:
            rows.append([name, "-", "-", "-", "-", "-", "-", note])
            continue
        try:
            extra, ms, sample = _measure(loss_fn, hidden, weight, targets, repeats)
        except Exception as error:  # e.g. out of memory, or an API change in a third-party kernel
            torch.cuda.empty_cache()
            rows.append([name, "-", "-", "-", "-", "-", "-", f"failed: {type(error).__name__}: {str(error)[:80]}"])
            continue
        if reference is None:
            reference, plain_ms, plain_extra = sample, ms, extra
        loss_gap = abs(sample[0] - reference[0])
        grad_gap = max(_relative_gap(sample[1], reference[1]), _relative_gap(sample[2], reference[2]))
        goal = ""
        if name.startswith("coursekit"):
            met = extra <= 1.3 * GIB and ms <= 1.5 * plain_ms
            goal = "meets goal" if met else "misses goal"
        rows.append([
            name, fmt(extra / MIB, 0), fmt(extra / plain_extra, 3), fmt(ms, 1), fmt(ms / plain_ms, 2),
            f"{loss_gap:.1e}", f"{grad_gap:.1e}", goal or note,
        ])

    props = torch.cuda.get_device_properties(device)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        SECTION_TITLE + (" (tiny smoke run)" if tiny else ""),
        f"GPU: {props.name} ({props.total_memory / GIB:.0f} GiB), torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}, {now}. Forward + backward, bfloat16, N = {n}, H = {h}, V = {v}; "
        f"extra peak = max_memory_allocated during one step minus the inputs (the gradients of hidden "
        f"and weight count; the weight gradient alone is {v * h * 2 / MIB:.0f} MiB); time = median of "
        f"{repeats} steps (CUDA events). Gaps: |loss - plain loss|, and the largest difference of sampled "
        "gradient entries relative to the plain expression's largest.",
        markdown_table(
            ["method", "extra peak (MiB)", "memory ratio", "time (ms)", "time ratio", "loss gap",
             "grad gap", "goal (<= 1.3 GiB, <= 1.5x) / note"],
            rows,
        ),
    ]
    if tests_summary:
        parts.append(f"Loss tests on CUDA (COURSEKIT_TEST_DEVICE=cuda): {tests_summary}")
    return "\n\n".join(parts)


def write_results(section: str) -> None:
    """Save the section to GPU_RESULTS.md and replace (or append) it at the end of RESULTS.md."""
    (BENCH_DIR / "GPU_RESULTS.md").write_text(section + "\n")
    results = BENCH_DIR / "RESULTS.md"
    existing = results.read_text() if results.exists() else "# Benchmark results\n"
    kept = existing.split("\n" + SECTION_TITLE, 1)[0].rstrip()
    results.write_text(kept + "\n\n" + section + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="GPU bfloat16 large-vocabulary loss benchmark")
    parser.add_argument("--tiny", action="store_true", help="small sizes (does not write the results files)")
    parser.add_argument("--tests-summary", default="", help="the CUDA test run's summary line, to record")
    args = parser.parse_args(argv)
    section = run(tiny=args.tiny, tests_summary=args.tests_summary)
    print(section)
    if not args.tiny:
        write_results(section)


if __name__ == "__main__":
    main()
