"""Benchmark 1: large-vocabulary loss, chunked_cross_entropy vs the plain expression.

Forward + backward of ``F.cross_entropy(hidden @ weight.T, targets)`` against
``coursekit.losses.chunked_cross_entropy(hidden, weight, targets)``, float32 on
the CPU. Memory: every configuration runs in a fresh process, which resets its
resident-set-size high-water mark once the inputs exist (Linux
``/proc/self/clear_refs``) and reports the mark reached during one step minus
the resident set it had at the reset (so the inputs are not counted, their
gradients are). Measuring from the present resident set, not from an earlier
high-water mark, counts the pages a step reuses from memory freed before it
(the temporaries of building the inputs). The warm-up step that loads the
kernels before the reset runs on small detached copies, so that it leaves no
full-size gradient behind.
Every worker runs on the same fixed number of threads (``THREADS``), because
the allocator's high-water mark depends on it.
Time: one more process per vocabulary size alternates the two methods
(plain, chunked, chunked, plain, ...) after a warm-up step of each, so both
see the same machine load; the time ratio is the median of the per-round
ratios, which a shared, noisy machine disturbs far less than absolute times.

Run alone: ``python -m bench.bench_chunked [--tiny]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path

from bench._common import fmt, markdown_table, ratio, run_worker

MODULE = "bench.bench_chunked"
THREADS = 2
MEMORY_GOAL = 0.05  # issue 13: chunked extra peak / plain extra peak at V = 32768
# The goal was set when this benchmark undercounted the chunked peak (0.046 then, 0.076 measured
# soundly at chunk_size 1024). Above some chunk size (about 600 rows here) no implementation can
# meet it, because the gradients it returns plus one chunk of logits already take more; so the
# report says at which chunk sizes it is met, and how far above that floor each chunk size is.
TIME_GOAL = 1.3
REAL = {"n": 8192, "h": 512, "vocabs": (8192, 32768, 65536), "chunk_size": 1024,
        "curve_vocab": 32768, "curve_chunks": (256, 1024, 4096)}
TINY = {"n": 256, "h": 16, "vocabs": (2048,), "chunk_size": 64, "curve_vocab": 2048, "curve_chunks": (16, 64)}  # 3 workers


def _timed_step(method: str, hidden, weight, targets, chunk_size: int) -> tuple[float, float]:
    """One forward + backward of ``method`` ("plain" or "chunked"); returns (seconds, loss)."""
    import torch.nn.functional as F

    from coursekit.losses import chunked_cross_entropy

    hidden.grad = weight.grad = None
    start = time.perf_counter()
    if method == "plain":
        loss = F.cross_entropy(hidden @ weight.T, targets)
    else:
        loss = chunked_cross_entropy(hidden, weight, targets, chunk_size=chunk_size)
    loss.backward()
    return time.perf_counter() - start, float(loss.detach())


def worker(config: dict) -> dict:
    """One measurement, in this (fresh) process: the extra peak RSS of one step, then timed steps."""
    import torch

    from bench._common import peak_rss_since_reset_mib, reset_peak_rss_mib

    torch.set_num_threads(THREADS)
    n, h, v = config["n"], config["h"], config["v"]
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, h, generator=g).requires_grad_(True)
    weight = (torch.randn(v, h, generator=g) / h**0.5).requires_grad_(True)
    targets = torch.randint(0, v, (n,), generator=g)
    method, chunk_size = config["method"], config["chunk_size"]
    if method == "interleaved":
        return _interleaved(hidden, weight, targets, config)
    if method == "sweep":
        return _sweep(hidden, weight, targets, config)
    # Load the kernels and thread pools before the baseline, on a few rows and classes,
    # copied so that their backward does not allocate the full hidden.grad and weight.grad.
    _timed_step(method, hidden[:4].detach().clone().requires_grad_(True),
                weight[:8].detach().clone().requires_grad_(True), targets[:4] % 8, chunk_size)
    gc.collect()
    baseline = reset_peak_rss_mib()
    first, loss = _timed_step(method, hidden, weight, targets, chunk_size)
    extra = peak_rss_since_reset_mib() - baseline
    times = [_timed_step(method, hidden, weight, targets, chunk_size)[0] for _ in range(config["repeats"])]
    return {"extra_mib": extra, "median_s": statistics.median(times) if times else first, "loss": loss}


def _interleaved(hidden, weight, targets, config: dict) -> dict:
    """Alternate timed plain and chunked steps; per-round ratios chunked / plain."""
    def timed(method: str) -> float:
        return _timed_step(method, hidden, weight, targets, config["chunk_size"])[0]

    timed("plain")
    timed("chunked")
    plain, chunked = [], []
    for round_index in range(config["repeats"]):
        order = ("plain", "chunked") if round_index % 2 == 0 else ("chunked", "plain")
        for method in order:
            (plain if method == "plain" else chunked).append(timed(method))
    ratios = [c / p for p, c in zip(plain, chunked)]
    return {"plain_s": statistics.median(plain), "chunked_s": statistics.median(chunked),
            "ratio": statistics.median(ratios), "ratios": ratios}


def _sweep(hidden, weight, targets, config: dict) -> dict:
    """Median step time of chunked_cross_entropy for each chunk size, the sizes taken in rotating order."""
    sizes = list(config["chunks"])
    times: dict[int, list[float]] = {size: [] for size in sizes}
    for round_index in range(config["repeats"] + 1):
        for position in range(len(sizes)):
            size = sizes[(position + round_index) % len(sizes)]
            seconds, _loss = _timed_step("chunked", hidden, weight, targets, size)
            if round_index:  # round 0 warms up
                times[size].append(seconds)
    return {str(size): statistics.median(values) for size, values in times.items()}


def _measure(method: str, n: int, h: int, v: int, chunk_size: int, repeats: int) -> dict:
    config = {"method": method, "n": n, "h": h, "v": v, "chunk_size": chunk_size, "repeats": repeats}
    return run_worker(MODULE, config)


def run(*, tiny: bool, out_dir: Path) -> str:
    """Measure, plot to ``out_dir/chunked_cross_entropy.png``, return the markdown section."""
    p = TINY if tiny else REAL
    n, h = p["n"], p["h"]
    main_rows, by_vocab = [], {}
    timings = {}
    for v in p["vocabs"]:
        plain = _measure("plain", n, h, v, p["chunk_size"], 0)
        chunked = _measure("chunked", n, h, v, p["chunk_size"], 0)
        rounds = 1 if tiny else 5 if v <= 8192 else 3 if v <= 32768 else 2
        timing = _measure("interleaved", n, h, v, p["chunk_size"], rounds)
        plain["median_s"], chunked["median_s"] = timing["plain_s"], timing["chunked_s"]
        by_vocab[v], timings[v] = (plain, chunked), timing
        main_rows.append([
            v, fmt(plain["extra_mib"], 0), fmt(chunked["extra_mib"], 0),
            fmt(ratio(chunked["extra_mib"], plain["extra_mib"]), 3),
            fmt(plain["median_s"] * 1e3, 0), fmt(chunked["median_s"] * 1e3, 0),
            fmt(timing["ratio"], 2), " ".join(f"{r:.2f}" for r in timing["ratios"]),
            f"{abs(plain['loss'] - chunked['loss']):.1e}",
        ])

    curve_v, reference_chunk = p["curve_vocab"], p["chunk_size"]
    sweep = run_worker(MODULE, {"method": "sweep", "n": n, "h": h, "v": curve_v, "chunk_size": reference_chunk,
                                "chunks": list(p["curve_chunks"]), "repeats": 1 if tiny else 2})
    curve = []
    for chunk_size in p["curve_chunks"]:
        if chunk_size == reference_chunk and curve_v in by_vocab:
            point = dict(by_vocab[curve_v][1])
        else:
            point = _measure("chunked", n, h, curve_v, chunk_size, 0)
        point["median_s"] = sweep[str(chunk_size)]
        curve.append((chunk_size, point))
    curve_plain = by_vocab[curve_v][0] if curve_v in by_vocab else None
    # Time against the plain expression through the chunk size both runs share:
    # (t_chunk / t_reference_chunk, same sweep process) x (reference / plain, interleaved run).
    chain = timings[curve_v]["ratio"] / sweep[str(reference_chunk)] if curve_v in timings else None
    curve_rows = [
        [cs, fmt(r["extra_mib"], 0), fmt(_floor_mib(n, h, curve_v, cs), 0),
         fmt(r["extra_mib"] - _floor_mib(n, h, curve_v, cs), 0), fmt(r["median_s"] * 1e3, 0),
         fmt(ratio(r["extra_mib"], curve_plain["extra_mib"]), 3) if curve_plain else "-",
         fmt(ratio(_floor_mib(n, h, curve_v, cs), curve_plain["extra_mib"]), 3) if curve_plain else "-",
         fmt(r["median_s"] * chain, 2) if chain else "-"]
        for cs, r in curve
    ]
    _plot(out_dir / "chunked_cross_entropy.png", by_vocab, curve, n, h, p["curve_vocab"])

    goal_v = 32768 if 32768 in by_vocab else p["vocabs"][-1]
    plain_g, chunked_g = by_vocab[goal_v]
    memory_ratio = ratio(chunked_g["extra_mib"], plain_g["extra_mib"])
    time_ratio = timings[goal_v]["ratio"]
    floor = _floor_mib(n, h, goal_v, p["chunk_size"])
    above_floor = chunked_g["extra_mib"] - floor
    met_at = [cs for cs, r in curve
              if curve_plain and curve_v == goal_v and ratio(r["extra_mib"], curve_plain["extra_mib"]) <= MEMORY_GOAL]
    verdict = (
        f"At V = {goal_v}: chunked peak memory is {memory_ratio:.3f} of the plain expression's at chunk_size = "
        f"{p['chunk_size']}, time {time_ratio:.2f}x (goal <= {TIME_GOAL}x: "
        f"{'met' if time_ratio <= TIME_GOAL else 'NOT met'}). "
        f"The chunked step cannot go below the gradients it returns plus one chunk of logits: "
        f"(V + N) x H + chunk_size x V floats = {floor:.0f} MiB here, a ratio of "
        f"{ratio(floor, plain_g['extra_mib']):.3f}. The memory goal (ratio <= {MEMORY_GOAL}) is met at chunk_size "
        f"{', '.join(str(cs) for cs in met_at) if met_at else 'none of those measured'} (table below). "
        f"At chunk_size = {p['chunk_size']} the step is {above_floor:.0f} MiB above that floor."
    )
    if tiny:
        verdict += " (Tiny sizes: a smoke run, the ratios mean nothing.)"
    return "\n\n".join([
        "## 1. Large-vocabulary loss: chunked_cross_entropy vs F.cross_entropy(hidden @ weight.T)",
        f"Forward + backward, float32, CPU ({THREADS} threads), N = {n} tokens, H = {h}, "
        f"chunk_size = {p['chunk_size']}. "
        "Extra peak = RSS high-water mark during one step minus the RSS with the inputs allocated, "
        "the mark reset just before the step "
        "(fresh process per configuration). Times: medians of steps that alternate the two methods in one "
        "process; time ratio = median of the per-round ratios (listed).",
        markdown_table(
            ["V", "plain extra peak (MiB)", "chunked extra peak (MiB)", "memory ratio",
             "plain time (ms)", "chunked time (ms)", "time ratio", "per-round ratios", "loss difference"],
            main_rows,
        ),
        verdict,
        f"Memory vs chunk size at V = {p['curve_vocab']} (ratios against the plain expression; times from one "
        "process that rotates through the chunk sizes, and the time ratio chained through chunk_size = "
        f"{p['chunk_size']}'s interleaved ratio above):",
        markdown_table(["chunk_size", "extra peak (MiB)", "floor (MiB)", "above floor (MiB)", "time (ms)",
                        "memory ratio", "floor ratio", "time ratio"], curve_rows),
        "Smaller chunks hold fewer logits (chunk_size x V floats) but multiply smaller matrices; "
        "the weight gradient (V x H) is a floor that every method pays.",
        "![peak memory vs vocabulary size, and memory and time vs chunk size](chunked_cross_entropy.png)",
    ])


def _floor_mib(n: int, h: int, v: int, chunk_size: int) -> float:
    """MiB of the weight and hidden gradients plus one chunk of float32 logits."""
    return ((v + n) * h + min(chunk_size, n) * v) * 4 / 2**20


def _plot(path: Path, by_vocab: dict, curve: list, n: int, h: int, curve_vocab: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    vocabs = sorted(by_vocab)
    peaks = {method: [by_vocab[v][index]["extra_mib"] for v in vocabs] for index, method in enumerate(("plain", "chunked"))}
    left.plot(vocabs, peaks["plain"], "o-", label="plain F.cross_entropy")
    left.plot(vocabs, peaks["chunked"], "s-", label="chunked_cross_entropy")
    left.set_xscale("log", base=2)
    # A tiny smoke run can measure 0 MiB (below the RSS counter's resolution), which a log axis cannot show.
    if min(peaks["plain"] + peaks["chunked"]) > 0:
        left.set_yscale("log")
    left.set_xlabel("vocabulary size V")
    left.set_ylabel("extra peak RSS (MiB)")
    left.set_title(f"forward+backward, N={n}, H={h}")
    left.legend()
    sizes = [cs for cs, _ in curve]
    right.plot(sizes, [r["extra_mib"] for _, r in curve], "s-", color="tab:orange")
    right.set_xscale("log", base=2)
    right.set_xlabel("chunk_size (rows)")
    right.set_ylabel("extra peak RSS (MiB)", color="tab:orange")
    twin = right.twinx()
    twin.plot(sizes, [r["median_s"] * 1e3 for _, r in curve], "o--", color="tab:blue")
    twin.set_ylabel("time (ms)", color="tab:blue")
    right.set_title(f"chunked, V={curve_vocab}: memory and time vs chunk size")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small sizes, runs in seconds")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    print(run(tiny=args.tiny, out_dir=args.out_dir))


if __name__ == "__main__":
    main()
