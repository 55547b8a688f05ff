"""coursekit.evaluation: NLL/perplexity/bits, exact match, BLEU and chrF via sacrebleu."""

from __future__ import annotations

import math

import pytest
import sacrebleu
import torch
import torch.nn.functional as F

from coursekit.data import lm_batch
from coursekit.evaluation import (
    bleu,
    chrf,
    evaluate_lm,
    evaluate_translation,
    exact_match,
    lm_scores,
    paired_bootstrap,
    translate,
)
from coursekit.models import RNNLM, load_checkpoint, shipped_checkpoint
from coursekit.recipes import translation_data
from coursekit.train import seeded

pytestmark = pytest.mark.models


def test_hand_values_of_nll_perplexity_and_bits():
    scores = lm_scores(6 * math.log(2), 3)  # probabilities 1/2, 1/4, 1/8
    assert scores.nll == pytest.approx(1.386294, abs=1e-6)
    assert scores.perplexity == pytest.approx(4.0)
    assert scores.bits_per_token == pytest.approx(2.0)


def test_uniform_model_has_nll_log_v():
    model = RNNLM(10, embed_dim=3, hidden_size=4)
    with torch.no_grad():
        model.out.weight.zero_()
        model.out.bias.zero_()
    scores = evaluate_lm(model, [[4, 5], [6], []], batch_size=2)
    assert scores.nll == pytest.approx(math.log(10)) and scores.perplexity == pytest.approx(10.0)
    assert scores.num_tokens == 3 + 2 + 1


def test_evaluate_lm_matches_pytorch_cross_entropy_over_real_tokens():
    with seeded(0):
        model = RNNLM(9, embed_dim=4, hidden_size=5)
    sentences = [[4, 5, 6, 7], [8], [4, 4, 5]]
    expected_total, count = 0.0, 0
    for sentence in sentences:  # one unpadded sentence at a time: nothing to mask
        batch = lm_batch([sentence])
        with torch.no_grad():
            logits, _ = model(batch.inputs)
        expected_total += float(F.cross_entropy(logits[0].double(), batch.targets[0], reduction="sum"))
        count += len(sentence) + 1
    scores = evaluate_lm(model, sentences, batch_size=2)
    assert scores.nll == pytest.approx(expected_total / count, rel=1e-6)


def test_exact_match_bleu_and_chrf():
    refs = ["3 1 2", "4 0 0 5", "7"]
    assert exact_match(refs, refs) == 1.0
    assert exact_match(["3 1 2 ", "4 0 5", "8"], refs) == pytest.approx(1 / 3)
    assert bleu(refs, refs) == pytest.approx(100.0)
    assert chrf(refs, refs) == pytest.approx(100.0)
    hyps = ["3 1 2", "4 0 5 5", "1"]
    assert 0 < bleu(hyps, refs) < 100
    assert bleu(hyps, refs) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert chrf(hyps, refs) == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)


def test_translation_scores_of_the_shipped_teacher():
    model, _ = load_checkpoint(shipped_checkpoint("translator_teacher"))
    data = translation_data(0)
    pairs = data.task.test[:40]
    scores = evaluate_translation(model, pairs, data.src_vocab, data.tgt_vocab)
    assert scores.exact_match >= 0.95 and scores.bleu > 90
    beamed = translate(model, [s for s, _ in pairs], data.src_vocab, data.tgt_vocab, beam_size=3)
    assert exact_match(beamed, [r for _, r in pairs]) >= 0.95


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: exact_match([], []), "references"),
        (lambda: bleu(["a"], ["a", "b"]), "hypotheses"),
        (lambda: chrf([], []), "references"),
        (lambda: lm_scores(1.0, 0), "num_tokens"),
        (lambda: evaluate_lm(RNNLM(5), []), "sentences"),
    ],
)
def test_bad_arguments_raise_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# --- paired bootstrap (Koehn, 2004) ---------------------------------------------------------


def test_bootstrap_of_a_system_against_itself_never_finds_it_better():
    scores = [1.0, 0.0, 1.0, 1.0, 0.0]
    result = paired_bootstrap(scores, scores, num_resamples=200)
    assert result.difference == 0 and result.p_value == 1.0 and result.interval == (0.0, 0.0)


def test_bootstrap_of_a_system_better_on_every_sentence_has_p_value_zero():
    result = paired_bootstrap([1.0] * 30, [0.0] * 30, num_resamples=200)
    assert result.difference == 1.0 and result.p_value == 0.0 and result.interval == (1.0, 1.0)


def test_bootstrap_matches_a_direct_count_over_the_same_resampled_indices():
    a = [1.0, 1.0, 0.0, 1.0, 0.5, 0.0, 1.0, 0.25]
    b = [0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.5, 0.25]
    result = paired_bootstrap(a, b, num_resamples=500, seed=7, confidence=0.9)
    indices = torch.randint(0, len(a), (500, len(a)), generator=torch.Generator().manual_seed(7)).tolist()
    diffs = sorted(sum(a[j] - b[j] for j in row) / len(a) for row in indices)
    assert result.p_value == pytest.approx(sum(d <= 1e-12 for d in diffs) / 500)
    assert result.difference == pytest.approx((sum(a) - sum(b)) / len(a))
    # torch.quantile interpolates linearly between order statistics
    def quantile(q: float) -> float:
        position = q * (len(diffs) - 1)
        lower = math.floor(position)
        return diffs[lower] + (position - lower) * (diffs[min(lower + 1, len(diffs) - 1)] - diffs[lower])
    assert result.interval == pytest.approx((quantile(0.05), quantile(0.95)))


def test_bootstrap_drawn_in_chunks_equals_one_draw_of_every_resample(monkeypatch):
    """The resamples are drawn a chunk at a time (memory stays bounded); the result must be the one a single
    draw of all I x n indices gives, chunk boundaries falling inside the resamples included."""
    import coursekit.evaluation as evaluation

    generator = torch.Generator().manual_seed(11)
    a = (torch.rand(23, generator=generator) < 0.6).double().tolist()
    b = (torch.rand(23, generator=generator) < 0.5).double().tolist()
    indices = torch.randint(0, 23, (1000, 23), generator=torch.Generator().manual_seed(5))
    resampled = (torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64))[indices].mean(dim=1)
    expected_p = float((resampled <= 0).double().mean())
    expected_interval = torch.quantile(resampled, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    for chunk in (23 * 1000, 23 * 7, 50, 1):  # one chunk; 7 rows; 2 rows; a row per chunk
        monkeypatch.setattr(evaluation, "BOOTSTRAP_CHUNK_ELEMENTS", chunk)
        result = paired_bootstrap(a, b, num_resamples=1000, seed=5)
        assert result.p_value == expected_p and list(result.interval) == expected_interval, chunk

def test_swapping_the_systems_gives_p_values_that_sum_to_one_plus_the_share_of_ties():
    a = [1.0] * 12 + [0.0] * 8 + [1.0] * 5
    b = [1.0] * 12 + [1.0] * 3 + [0.0] * 10
    forward = paired_bootstrap(a, b, num_resamples=2000, seed=3)
    backward = paired_bootstrap(b, a, num_resamples=2000, seed=3)
    indices = torch.randint(0, len(a), (2000, len(a)), generator=torch.Generator().manual_seed(3))
    d = torch.tensor(a) - torch.tensor(b)
    ties = float((d[indices].sum(dim=1) == 0).double().mean())
    assert forward.p_value + backward.p_value == pytest.approx(1 + ties)
    assert forward.difference == pytest.approx(-backward.difference)


def test_a_larger_advantage_gives_a_smaller_p_value():
    base = [1.0] * 50 + [0.0] * 50
    p_values = []
    for gained in (2, 5, 10):
        better = [1.0] * (50 + gained) + [0.0] * (50 - gained)
        p_values.append(paired_bootstrap(better, base, num_resamples=2000, seed=0).p_value)
    assert p_values[0] > p_values[1] > p_values[2]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"scores_a": [], "scores_b": []}, ValueError, r"scores_a must hold at least one score"),
        ({"scores_a": [1.0], "scores_b": [1.0, 0.0]}, ValueError, r"scores_b must have one score per sentence"),
        ({"scores_a": [1.0], "scores_b": [float("nan")]}, ValueError, r"finite"),
        ({"num_resamples": 0}, ValueError, r"num_resamples"),
        ({"seed": -1}, ValueError, r"seed"),
        ({"confidence": 1.0}, ValueError, r"confidence must lie in \(0, 1\)"),
        ({"confidence": 0.0}, ValueError, r"confidence"),
    ],
)
def test_paired_bootstrap_rejects_bad_arguments_naming_them(kwargs, error, message):
    arguments = {"scores_a": [1.0, 0.0], "scores_b": [0.0, 0.0]} | kwargs
    with pytest.raises(error, match=message):
        paired_bootstrap(arguments.pop("scores_a"), arguments.pop("scores_b"), **arguments)
