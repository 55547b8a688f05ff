"""Train the shipped teacher checkpoints: ``python -m coursekit.models.pretrain [--out-dir DIR]``.

Writes ``lm_teacher.pt`` (a GRU language model of the toy language) and
``translator_teacher.pt`` (the number translator) into
``coursekit/models/checkpoints/`` by default. Training is deterministic on CPU
with one thread, so a rerun on the same machine reproduces the shipped weights.
Another CPU's floating-point kernels round differently, and training carries the
difference on: between two machines the language model's weights ended 1.8e-4
apart and the translator's 0.33, with the same validation metrics (NLL 1.659239
against 1.659240, exact match 0.9933 both). So what a rerun must reproduce is
the teachers' quality, to :data:`VALID_NLL_TOLERANCE` and
:data:`EXACT_MATCH_TOLERANCE`, which the test suite checks. Total time: well
under 60 s on one core.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from coursekit.models.checkpoints import CHECKPOINT_DIR, save_checkpoint

#: largest difference in validation NLL (nats per token) between a rerun's language model and the shipped one
VALID_NLL_TOLERANCE = 1e-4
#: largest difference in validation exact match between a rerun's translator and the shipped one (3 of 300)
EXACT_MATCH_TOLERANCE = 0.01
CHECKPOINTS = ("lm_teacher", "translator_teacher")


def pretrain(out_dir: Path = CHECKPOINT_DIR, *, names: Sequence[str] = CHECKPOINTS,
             seed: int = 0) -> dict[str, Path]:
    """Train and save the named teacher checkpoints; returns their paths."""
    from coursekit import recipes

    unknown = [n for n in names if n not in CHECKPOINTS]
    if unknown:
        raise ValueError(f"names must be among {list(CHECKPOINTS)}, got {unknown}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    written: dict[str, Path] = {}
    try:
        if "lm_teacher" in names:
            data = recipes.lm_data(seed)
            model, history = recipes.train_rnn_lm(seed=seed, cell="gru", size="teacher", progress=False)
            written["lm_teacher"] = save_checkpoint(model, Path(out_dir) / "lm_teacher.pt", metadata={
                "recipe": "train_rnn_lm", "seed": seed, "vocab": data.vocab.to_dict(),
                "valid_nll": history.valid[-1], "true_entropy": data.entropy})
        if "translator_teacher" in names:
            tdata = recipes.translation_data(seed)
            model, history = recipes.train_translator(seed=seed, size="teacher", progress=False)
            written["translator_teacher"] = save_checkpoint(model, Path(out_dir) / "translator_teacher.pt", metadata={
                "recipe": "train_translator", "seed": seed, "src_vocab": tdata.src_vocab.to_dict(),
                "tgt_vocab": tdata.tgt_vocab.to_dict(), "valid_exact_match": history.valid[-1]})
    finally:
        torch.set_num_threads(threads)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=CHECKPOINT_DIR)
    parser.add_argument("--only", choices=CHECKPOINTS, action="append", help="train only this checkpoint")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    for name, path in pretrain(args.out_dir, names=args.only or CHECKPOINTS).items():
        print(f"{name}: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    print(f"total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
