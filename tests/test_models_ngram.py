"""coursekit.models.ngram: add-k probabilities by hand, normalisation, fitting lowers the loss."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coursekit.data import BOS_ID, EOS_ID
from coursekit.models import NGramLM
from tests.strategies import id_sentences

pytestmark = pytest.mark.models


def test_bigram_probabilities_match_hand_counts():
    # sentences "4 5", "4 4": bigrams (bos,4)x2, (4,5), (5,eos), (4,4), (4,eos); V = 6, k = 0.5
    model = NGramLM(6, order=2, k=0.5).fit([[4, 5], [4, 4]])
    assert model.prob([], 4) == pytest.approx((2 + 0.5) / (2 + 3))
    assert model.prob([4], 5) == pytest.approx((1 + 0.5) / (3 + 3))
    assert model.prob([4], EOS_ID) == pytest.approx((1 + 0.5) / (3 + 3))
    assert model.prob([5], 4) == pytest.approx(0.5 / (1 + 3))
    expected = math.log(2.5 / 5) + math.log(1.5 / 6) + math.log(1.5 / 4)
    assert model.sentence_log_prob([4, 5]) == pytest.approx(expected)


@settings(max_examples=40, deadline=None)
@given(id_sentences(vocab_size=9), st.integers(1, 4), st.sampled_from([0.01, 0.5, 2.0]),
       st.lists(st.integers(4, 8), max_size=5))
def test_next_token_distribution_sums_to_one(sentences, order, k, history):
    model = NGramLM(9, order=order, k=k).fit(sentences)
    probs = model.next_token_probs(history)
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-12)
    assert bool((probs > 0).all())
    assert [model.prob(history, v) for v in range(9)] == pytest.approx(probs.tolist())


def test_fitting_lowers_the_loss_below_uniform():
    sentences = [[4, 5, 6], [4, 5, 7], [4, 5, 6]] * 5
    model = NGramLM(8, order=3, k=0.1).fit(sentences)
    total, count = model.token_nll(sentences)
    assert total / count < math.log(8) / 4
    assert count == sum(len(s) + 1 for s in sentences)


def test_start_context_ignores_explicit_bos():
    model = NGramLM(6).fit([[4, 5]])
    assert torch.equal(model.next_token_probs([BOS_ID]), model.next_token_probs([]))


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: NGramLM(1), "vocab_size"),
        (lambda: NGramLM(6, order=0), "order"),
        (lambda: NGramLM(6, k=0.0), "k"),
        (lambda: NGramLM(6).fit([]), "sentences"),
        (lambda: NGramLM(6).fit([[9]]), "sentences"),
        (lambda: NGramLM(6).fit([[4]]).prob([4], 6), "token"),
    ],
)
def test_bad_arguments_raise_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call()
