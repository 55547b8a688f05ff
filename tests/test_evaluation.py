"""coursekit.evaluation: NLL/perplexity/bits, exact match, BLEU and chrF via sacrebleu."""

from __future__ import annotations

import math

import pytest
import sacrebleu
import torch
import torch.nn.functional as F

from coursekit.data import lm_batch
from coursekit.evaluation import bleu, chrf, evaluate_lm, evaluate_translation, exact_match, lm_scores, translate
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
