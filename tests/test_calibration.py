"""coursekit.calibration: reliability bins and ECE against a direct loop, temperature fit against a grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coursekit.calibration import expected_calibration_error, fit_temperature, reliability_bins, top_label
from tests.strategies import generator

pytestmark = pytest.mark.models


def _ece_loop(confidence: list[float], correct: list[bool], num_bins: int, binning: str) -> float:
    """The ECE by its definition, with plain Python lists."""
    n = len(confidence)
    if binning == "width":
        members = [[i for i, c in enumerate(confidence)
                    if (j == 0 and c <= 1 / num_bins) or (j / num_bins < c <= (j + 1) / num_bins)]
                   for j in range(num_bins)]
    else:
        order = sorted(range(n), key=lambda i: (confidence[i], i))
        members = [[order[r] for r in range(n) if r * num_bins // n == j] for j in range(num_bins)]
    total = 0.0
    for chosen in members:
        if chosen:
            conf = sum(confidence[i] for i in chosen) / len(chosen)
            acc = sum(correct[i] for i in chosen) / len(chosen)
            total += len(chosen) / n * abs(acc - conf)
    return total


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(1, 12), st.sampled_from(["width", "mass"]), st.integers(0, 10**6))
def test_ece_and_bins_match_the_definition(n, num_bins, binning, seed):
    g = generator(seed)
    # multiples of 1/40 put confidences exactly on bin edges, a case the definition settles
    confidence = (torch.randint(0, 41, (n,), generator=g).double() / 40)
    correct = torch.rand(n, generator=g, dtype=torch.float64) < 0.6
    got = expected_calibration_error(confidence, correct, num_bins=num_bins, binning=binning)
    assert got == pytest.approx(_ece_loop(confidence.tolist(), correct.tolist(), num_bins, binning), abs=1e-12)
    bins = reliability_bins(confidence, correct, num_bins=num_bins, binning=binning)
    assert int(bins.count.sum()) == n and bool((bins.count > 0).all())
    assert bool((bins.confidence[1:] >= bins.confidence[:-1]).all())
    if binning == "mass":
        assert int(bins.count.max()) - int(bins.count.min()) <= 1


def test_labels_drawn_from_the_confidence_give_a_small_ece_that_grows_with_the_bins():
    g = generator(0)
    confidence = 0.3 + 0.7 * torch.rand(200_000, generator=g, dtype=torch.float64)
    correct = torch.rand(200_000, generator=g, dtype=torch.float64) < confidence  # calibrated by construction
    assert expected_calibration_error(confidence, correct, num_bins=10) < 0.005
    small = confidence[:500], correct[:500]
    # with few predictions per bin the estimate is biased upwards: more bins, larger ECE
    assert expected_calibration_error(*small, num_bins=100) > expected_calibration_error(*small, num_bins=5)


def test_top_label_ignores_the_temperature_for_correctness_and_matches_softmax():
    logits = torch.randn(4, 7, 5, generator=generator(1))
    targets = torch.randint(0, 5, (4, 7), generator=generator(2))
    confidence, correct = top_label(logits, targets)
    hot, correct_hot = top_label(logits, targets, temperature=3.0)
    torch.testing.assert_close(confidence, torch.softmax(logits, -1).max(-1).values.flatten())
    assert torch.equal(correct, correct_hot) and bool((hot < confidence).all())
    assert torch.equal(correct, (logits.argmax(-1) == targets).flatten())


def test_fit_temperature_finds_the_grid_minimum_and_recovers_a_known_temperature():
    g = generator(3)
    base = 2.0 * torch.randn(20_000, 6, generator=g, dtype=torch.float64)
    targets = torch.multinomial(torch.softmax(base, -1), 1, generator=g).squeeze(1)
    tau = fit_temperature(3.0 * base, targets)  # the data follow softmax(base) = softmax(3 base / 3)
    assert tau == pytest.approx(3.0, rel=0.03)

    def nll(t: float) -> float:
        return float(torch.nn.functional.cross_entropy(3.0 * base / t, targets))

    grid = np.linspace(2.0, 4.0, 401)
    best = grid[int(np.argmin([nll(t) for t in grid]))]
    assert tau == pytest.approx(best, abs=0.006)
    assert nll(tau) <= min(nll(tau * 0.99), nll(tau * 1.01))


def test_fit_temperature_hand_value_and_range_ends():
    logits = torch.tensor([[4.0, 0.0], [4.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    assert fit_temperature(logits, torch.tensor([0, 0, 1, 1])) == pytest.approx(4 / math.log(3), rel=1e-5)
    # always right: sharper is always better, so the fit stops at the low end of the range
    assert fit_temperature(logits, torch.tensor([0, 0, 0, 1]), low=0.5) == 0.5
    # right half the time on two classes at any temperature: the uniform end (the high end) wins
    assert fit_temperature(torch.tensor([[4.0, 0.0], [4.0, 0.0]]), torch.tensor([0, 1]), high=7.0) == 7.0


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        (lambda: expected_calibration_error(torch.tensor([0.5, 1.2]), torch.tensor([True, False])),
         ValueError, "confidence"),
        (lambda: expected_calibration_error(torch.tensor([0.5, float("nan")]), torch.tensor([True, False])),
         ValueError, "confidence must lie in .0, 1., got nan"),
        (lambda: expected_calibration_error(torch.tensor([0.5]), torch.tensor([1])), TypeError, "correct"),
        (lambda: expected_calibration_error(torch.tensor([0.5]), torch.tensor([True]), num_bins=0),
         ValueError, "num_bins"),
        (lambda: reliability_bins(torch.tensor([0.5]), torch.tensor([True]), binning="quantile"),
         ValueError, "binning"),
        (lambda: reliability_bins(torch.tensor([]), torch.tensor([], dtype=torch.bool)), ValueError, "confidence"),
        (lambda: fit_temperature(torch.zeros(2, 3), torch.tensor([0, 3])), ValueError, "targets"),
        (lambda: fit_temperature(torch.zeros(2, 3), torch.tensor([0, 1]), low=2.0, high=1.0), ValueError, "high"),
        (lambda: top_label(torch.zeros(2, 3), torch.tensor([0, 1]), temperature=0.0), ValueError, "temperature"),
    ],
)
def test_bad_arguments_raise_naming_them(call, error, name):
    with pytest.raises(error, match=name):
        call()
