"""Benchmark: the tiny models' training time and the quality they reach.

One recipe per row, each trained from scratch on one CPU thread
(``torch.set_num_threads(1)``), timed by wall clock:

* language models on the toy language: the validation per-token NLL against the
  language's exact entropy floor (goal: RNN and Transformer within 10 %);
* the number translator: exact match in distribution (goal >= 95 %) and out of
  distribution (longer inputs), BLEU and chrF;
* sequence-level distillation (Kim & Rush 2016): a student trained on the
  teacher's beam outputs vs the same student trained on the data alone, on the
  clean task and on a copy whose training targets are 30 % noisy.

Tiny mode (a smoke run, < 20 s) trains the GRU and Transformer LMs, the
translator and the clean-data students for one epoch each, so its quality
numbers are far from the goals by design. Run alone:
``python -m bench.bench_models [--tiny]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench._common import fmt, markdown_table
from coursekit import recipes
from coursekit.evaluation import evaluate_lm, evaluate_translation
from coursekit.models import sequence_kd_pairs

NOISE = 0.3


def _timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run(*, tiny: bool, out_dir: Path) -> str:
    """Train every recipe, return a markdown section and save ``models.png`` into ``out_dir``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(tiny=tiny, out_dir=out_dir)
    finally:
        torch.set_num_threads(threads)


def _run(*, tiny: bool, out_dir: Path) -> str:
    lm_epochs, mt_epochs, beam = (1, 1, 1) if tiny else (6, 6, 4)
    data = recipes.lm_data(0)
    floor = data.entropy
    language = data.corpus.language
    sample_floor = -sum(language.log_prob(s) for s in data.corpus.valid) / sum(len(s) + 1 for s in data.corpus.valid)
    curves: dict[str, list[float]] = {}

    lm_rows = []
    (ngram, ngram_scores), seconds = _timed(lambda: recipes.train_ngram_lm(order=2))
    lm_rows.append(["bigram, add-k 0.01", fmt(seconds, 1), fmt(ngram_scores.nll, 3), fmt(floor, 3),
                    f"{100 * (ngram_scores.nll / floor - 1):+.1f} %"])
    lm_recipes = {
        "GRU LM": lambda: recipes.train_rnn_lm(seed=0, cell="gru", epochs=lm_epochs, progress=False),
        "LSTM LM": lambda: recipes.train_rnn_lm(seed=0, cell="lstm", epochs=lm_epochs, progress=False),
        "Elman LM": lambda: recipes.train_rnn_lm(seed=0, cell="elman", epochs=lm_epochs, progress=False),
        "Transformer LM": lambda: recipes.train_transformer_lm(seed=0, epochs=lm_epochs, progress=False),
    }
    if tiny:
        lm_recipes = {k: lm_recipes[k] for k in ("GRU LM", "Transformer LM")}
    for name, recipe in lm_recipes.items():
        (model, history), seconds = _timed(recipe)
        nll = evaluate_lm(model, data.valid).nll
        curves[name] = history.valid
        lm_rows.append([name, fmt(seconds, 1), fmt(nll, 3), fmt(floor, 3), f"{100 * (nll / floor - 1):+.1f} %"])

    mt = recipes.translation_data(0)
    (teacher, teacher_history), teacher_seconds = _timed(
        lambda: recipes.train_translator(seed=0, size="teacher", epochs=mt_epochs, progress=False))
    curves["translator (valid exact match)"] = teacher_history.valid

    def scores(model, task_data) -> list[str]:  # type: ignore[no-untyped-def]
        test = evaluate_translation(model, task_data.task.test, task_data.src_vocab, task_data.tgt_vocab)
        ood = evaluate_translation(model, task_data.task.ood, task_data.src_vocab, task_data.tgt_vocab)
        return [f"{100 * test.exact_match:.1f} %", f"{100 * ood.exact_match:.1f} %", fmt(test.bleu, 1),
                fmt(test.chrf, 1), fmt(ood.bleu, 1)]

    mt_rows = [["teacher (GRU+attention, hidden 64)", fmt(teacher_seconds, 1), *scores(teacher, mt)]]

    kd_rows, kd_notes = [], []
    clean = recipes.translation_data(0)
    for noise in (0.0,) if tiny else (0.0, NOISE):
        noisy = recipes.translation_data(0, noise)
        if noise == 0.0:
            kd_teacher = teacher
        else:
            (kd_teacher, _), seconds = _timed(lambda: recipes.train_translator(
                seed=0, size="teacher", epochs=mt_epochs, target_noise=noise, progress=False))
            kd_rows.append([f"{noise:.0%}", "teacher", "-", fmt(seconds, 1), *scores(kd_teacher, noisy)])
        (student, _), seconds = _timed(lambda: recipes.train_translator(
            seed=0, size="student", epochs=mt_epochs, target_noise=noise, progress=False))
        kd_rows.append([f"{noise:.0%}", "student, data only", "-", fmt(seconds, 1), *scores(student, noisy)])
        kd_pairs, decode_seconds = _timed(lambda: sequence_kd_pairs(
            kd_teacher, [s for s, _ in noisy.train], beam_size=beam))
        (distilled, _), seconds = _timed(lambda: recipes.train_translator(
            seed=0, size="student", epochs=mt_epochs, pairs=kd_pairs, target_noise=noise, progress=False))
        kd_rows.append([f"{noise:.0%}", f"student, seq-KD (teacher beam {beam})", fmt(decode_seconds, 1),
                        fmt(seconds, 1), *scores(distilled, noisy)])
        n = len(kd_pairs)
        # compare as text: each noise level has its own target vocabulary
        kd_texts = [noisy.tgt_vocab.decode(tgt) for _, tgt in kd_pairs]
        data_texts = [tgt for _, tgt in noisy.task.train]
        truth = [tgt for _, tgt in clean.task.train]
        differ = sum(a != b for a, b in zip(kd_texts, data_texts))
        wrong_data = sum(a != b for a, b in zip(data_texts, truth))
        wrong_kd = sum(a != b for a, b in zip(kd_texts, truth))
        kd_notes.append(f"- {noise:.0%} noise: the teacher's outputs differ from the training references on "
                        f"{differ} of {n} sources; wrong targets (vs the true digits): {wrong_data} in the data, "
                        f"{wrong_kd} in the seq-KD data.")

    out_dir.mkdir(parents=True, exist_ok=True)
    _plot(out_dir / "models.png", curves, floor)
    mode = "tiny smoke run: 1 epoch per recipe, quality goals not expected" if tiny else \
        f"{lm_epochs} epochs per LM, {mt_epochs} per translator"
    parts = [
        "## Tiny models: training time and quality",
        "",
        f"One CPU thread, seed 0 ({mode}). Time is wall clock for the whole recipe (data batching, training, "
        "per-epoch validation); goals: each recipe <= 30 s, LMs within 10 % of the entropy floor, "
        "translation >= 95 % exact match in distribution.",
        "",
        "### Language models on the toy language (validation, nats per token, `<eos>` counted)",
        "",
        markdown_table(["recipe", "train s", "valid NLL", "entropy floor", "gap"], lm_rows),
        "",
        f"The true language itself scores {sample_floor:.4f} nats per token on this validation set "
        f"(its exact log-probabilities), against the expected floor {floor:.4f}.",
        "",
        "### Number words -> digits (greedy decoding)",
        "",
        markdown_table(["model", "train s", "test EM", "OOD EM", "test BLEU", "test chrF", "OOD BLEU"], mt_rows),
        "",
        "### Sequence-level distillation: student (hidden 16) on teacher outputs vs on the data",
        "",
        "`KD data s` is the one-off cost of decoding the teacher's outputs for every training source; "
        "`train s` is the student's training. Seq-KD can only help where the teacher's outputs differ "
        "from the references: on the clean task they almost never do, so the two students see nearly the "
        "same data; with noisy training references the teacher's outputs are cleaner than the data.",
        "",
        markdown_table(["train noise", "model", "KD data s", "train s", "test EM", "OOD EM", "test BLEU",
                        "test chrF", "OOD BLEU"], kd_rows),
        "",
        *kd_notes,
        "",
        "![validation curves](models.png)",
    ]
    return "\n".join(parts)


def _plot(path: Path, curves: dict[str, list[float]], floor: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, values in curves.items():
        axis = right if "translator" in name else left
        axis.plot(range(1, len(values) + 1), values, marker="o", label=name)
    left.axhline(floor, color="black", linestyle="--", label="entropy floor")
    left.axhline(1.1 * floor, color="grey", linestyle=":", label="floor + 10 %")
    left.set_xlabel("epoch")
    left.set_ylabel("validation NLL (nats / token)")
    left.set_title("Toy-language LMs")
    left.legend(fontsize=8)
    right.set_xlabel("epoch")
    right.set_ylabel("validation exact match")
    right.set_title("Number translator (teacher)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="one epoch per recipe, runs in seconds")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    print(run(tiny=args.tiny, out_dir=args.out_dir))


if __name__ == "__main__":
    main()
