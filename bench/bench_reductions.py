"""Benchmark 2: coursekit's token_nll + batch_loss vs PyTorch's fused F.cross_entropy.

At language-model batch shapes (B sequences of T tokens over a vocabulary of V,
about a quarter of the tokens padding), float32 on the CPU, forward only and
forward + backward with respect to the logits:

* ``token_mean``: ``batch_loss(token_nll(logits, targets), mask)`` vs
  ``F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-100)``;
* ``sequence_mean``: ``batch_loss(..., reduction="sequence_mean")`` vs
  ``F.cross_entropy(..., reduction="none")`` followed by the per-sequence means
  written out in PyTorch.

Each case alternates the two sides step by step (ours, PyTorch, PyTorch, ours,
...) after a warm-up step of each, so both see the same load on a shared
machine; the ratio is the median of the per-round ratios.

Run alone: ``python -m bench.bench_reductions [--tiny]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench._common import fmt, markdown_table
from coursekit.losses import batch_loss, token_nll

REAL_SHAPES = ((16, 256, 8192), (8, 512, 32000))
TINY_SHAPES = ((2, 8, 50),)
IGNORE = -100


def _inputs(b: int, t: int, v: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(b, t, v, generator=g).requires_grad_(True)
    lengths = torch.randint(t // 2, t + 1, (b,), generator=g)
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    targets = torch.randint(0, v, (b, t), generator=g).masked_fill(~mask, IGNORE)
    return logits, targets, mask


def _torch_token_mean(logits, targets, mask):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)


def _torch_sequence_mean(logits, targets, mask):
    per_token = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="none"
    ).view(targets.shape)
    return (per_token.sum(1) / mask.sum(1)).mean()


def _ours(reduction: str):
    def loss(logits, targets, mask):
        return batch_loss(token_nll(logits, targets, ignore_index=IGNORE), mask, reduction=reduction)

    return loss


CASES = (
    ("token_mean", _ours("token_mean"), _torch_token_mean),
    ("sequence_mean", _ours("sequence_mean"), _torch_sequence_mean),
)


#: The goal of the issue that made the checks sync-free: at most this many times PyTorch's fused op.
GOAL = 1.15


def _step_seconds(fn, logits, targets, mask, backward: bool) -> float:
    logits.grad = None
    start = time.perf_counter()
    if backward:
        fn(logits, targets, mask).backward()
    else:
        with torch.no_grad():
            fn(logits, targets, mask)
    return time.perf_counter() - start


def _interleaved(ours, reference, logits, targets, mask, backward: bool, repeats: int) -> tuple[float, float, float]:
    """Median seconds of ours and of PyTorch, and the median of the per-round ratios, alternating the order."""
    for fn in (ours, reference):  # warm-up
        _step_seconds(fn, logits, targets, mask, backward)
    ours_s, torch_s = [], []
    for round_index in range(repeats):
        first_ours = round_index % 2 == 0
        for is_ours in (first_ours, not first_ours):
            seconds = _step_seconds(ours if is_ours else reference, logits, targets, mask, backward)
            (ours_s if is_ours else torch_s).append(seconds)
    ratios = [o / t for o, t in zip(ours_s, torch_s)]
    return statistics.median(ours_s), statistics.median(torch_s), statistics.median(ratios)


def run(*, tiny: bool, out_dir: Path) -> str:
    """Time every case and shape; plot the ratios to ``out_dir/reductions.png``."""
    shapes = TINY_SHAPES if tiny else REAL_SHAPES
    repeats = 2 if tiny else 5
    rows, ratios = [], []
    for b, t, v in shapes:
        logits, targets, mask = _inputs(b, t, v)
        for name, ours, reference in CASES:
            torch.testing.assert_close(ours(logits, targets, mask), reference(logits, targets, mask))
            for backward in (False, True):
                ours_s, torch_s, round_ratio = _interleaved(ours, reference, logits, targets, mask, backward, repeats)
                pass_name = "fwd+bwd" if backward else "fwd"
                rows.append([f"{b}x{t}x{v}", name, pass_name, fmt(torch_s * 1e3, 1), fmt(ours_s * 1e3, 1),
                             fmt(round_ratio, 2)])
                ratios.append((f"{b}x{t}x{v}\n{name}\n{pass_name}", round_ratio))
        del logits
    _plot(out_dir / "reductions.png", ratios)
    worst = max(r for _, r in ratios)
    note = (
        f"Worst ratio {worst:.2f}x (goal <= {GOAL}x: {'met' if worst <= GOAL else 'NOT met'})."
        + (" (Tiny sizes: a smoke run, the ratios mean nothing.)" if tiny else "")
    )
    return "\n\n".join([
        "## 2. Reductions: token_nll + batch_loss vs F.cross_entropy",
        "float32, CPU, about a quarter of the tokens padding (ignore_index / mask); "
        f"{repeats} rounds that alternate the two sides after one warm-up step of each; times are medians, "
        "the ratio is the median of the per-round ratios; gradient with respect to the logits. Both sides "
        "are checked to give the same loss before timing.",
        markdown_table(["B x T x V", "reduction", "pass", "PyTorch (ms)", "coursekit (ms)", "ratio"], rows),
        note,
        "![time ratios coursekit / PyTorch](reductions.png)",
    ])


def _plot(path: Path, ratios: list[tuple[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(ratios)), 4))
    ax.bar(range(len(ratios)), [r for _, r in ratios], color="tab:blue")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axhline(GOAL, color="tab:red", linestyle="--", label=f"goal {GOAL}x")
    ax.set_xticks(range(len(ratios)), [label for label, _ in ratios], fontsize=7)
    ax.set_ylabel("time ratio coursekit / PyTorch")
    ax.set_title("token_nll + batch_loss vs F.cross_entropy")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small sizes, runs in seconds")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    print(run(tiny=args.tiny, out_dir=args.out_dir))


if __name__ == "__main__":
    main()
