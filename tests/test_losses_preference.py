"""dpo_loss (with label smoothing), dpo_rewards, simpo_loss: NumPy formulas, hand values, properties, gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from coursekit.losses import dpo_loss, dpo_rewards, simpo_loss
from tests.strategies import float_dtypes, generator, gradcheck64, loss_settings, preference_pairs, seeds


@st.composite
def preference_batches(draw: st.DrawFn) -> tuple[torch.Tensor, ...]:
    n, dtype, seed = draw(st.integers(1, 6)), draw(float_dtypes), draw(seeds)
    values = -(torch.rand(4, n, generator=generator(seed), dtype=torch.float64) * 40).to(dtype)
    return tuple(values)


pytestmark = [pytest.mark.losses, pytest.mark.a5]


def _numpy_dpo(pc, pr, rc, rr, beta):
    z = beta * ((pc - rc) - (pr - rr))
    return np.logaddexp(0.0, -z)  # -log sigmoid(z), stably


@loss_settings
@given(preference_batches(), st.sampled_from([0.01, 0.1, 0.5, 3.0]), st.sampled_from(["mean", "sum", "none"]))
def test_dpo_matches_numpy(batch, beta, reduction):
    per_pair = _numpy_dpo(*(x.double().numpy() for x in batch), beta)
    got = dpo_loss(*batch, beta=beta, reduction=reduction)
    assert got.dtype == batch[0].dtype
    expected = {"none": per_pair, "sum": per_pair.sum(), "mean": per_pair.mean()}[reduction]
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_dpo_hand_values():
    zero = torch.zeros(2)
    assert dpo_loss(zero, zero, zero, zero).item() == pytest.approx(math.log(2))
    got = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5)
    assert got.item() == pytest.approx(math.log1p(math.exp(-1.0)))


def test_dpo_is_stable_for_huge_margins():
    big = torch.tensor([1e4])
    zero = torch.zeros(1)
    assert dpo_loss(big, zero, zero, zero, beta=1.0).item() == 0.0
    assert dpo_loss(zero, big, zero, zero, beta=1.0).item() == pytest.approx(1e4)


def test_dpo_gradient_raises_chosen_and_lowers_rejected():
    chosen = torch.tensor([-5.0], requires_grad=True)
    rejected = torch.tensor([-5.0], requires_grad=True)
    ref = torch.tensor([-5.0])
    dpo_loss(chosen, rejected, ref, ref, beta=0.1).backward()
    assert chosen.grad.item() == pytest.approx(-0.05)  # -beta * sigmoid(0)
    assert rejected.grad.item() == pytest.approx(0.05)


def test_gradcheck_dpo():
    inputs = tuple(
        (-torch.rand(3, generator=generator(i), dtype=torch.float64) * 10).requires_grad_(True) for i in range(4)
    )
    for reduction in ("mean", "sum", "none"):
        assert gradcheck64(lambda a, b, c, d: dpo_loss(a, b, c, d, beta=0.3, reduction=reduction), inputs)


# --- conservative DPO and the implicit rewards -----------------------------------------------------------


def _numpy_cdpo(pc, pr, rc, rr, beta, epsilon):
    z = beta * ((pc - rc) - (pr - rr))
    return (1 - epsilon) * np.logaddexp(0.0, -z) + epsilon * np.logaddexp(0.0, z)


@loss_settings
@given(preference_pairs(), st.sampled_from([0.05, 0.5]), st.sampled_from([0.0, 0.1, 0.25, 0.49]))
def test_dpo_label_smoothing_matches_numpy(pairs, beta, epsilon):
    got = dpo_loss(*pairs, beta=beta, label_smoothing=epsilon, reduction="none")
    np.testing.assert_allclose(got.numpy(), _numpy_cdpo(*(x.numpy() for x in pairs), beta, epsilon), rtol=1e-12)


@loss_settings
@given(preference_pairs(), st.sampled_from([0.1, 0.3]))
def test_label_smoothing_mixes_the_loss_of_the_pair_and_of_the_flipped_pair(pairs, epsilon):
    chosen, rejected, ref_chosen, ref_rejected = pairs
    smoothed = dpo_loss(*pairs, label_smoothing=epsilon, reduction="none")
    plain = dpo_loss(*pairs, reduction="none")
    flipped = dpo_loss(rejected, chosen, ref_rejected, ref_chosen, reduction="none")
    torch.testing.assert_close(smoothed, (1 - epsilon) * plain + epsilon * flipped)


def test_label_smoothing_keeps_ln_2_at_the_reference_and_bounds_the_gradient_away_from_zero():
    zero = torch.zeros(1, dtype=torch.float64)
    assert dpo_loss(zero, zero, zero, zero, label_smoothing=0.2).item() == pytest.approx(math.log(2))
    # A pair the policy already ranks right by a huge margin: plain DPO stops pushing, cDPO pushes back by eps * beta.
    chosen = torch.tensor([100.0], dtype=torch.float64, requires_grad=True)
    dpo_loss(chosen, zero, zero, zero, beta=1.0, label_smoothing=0.2).backward()
    assert chosen.grad.item() == pytest.approx(0.2)


def test_gradcheck_dpo_with_label_smoothing():
    inputs = tuple(
        (-torch.rand(3, generator=generator(10 + i), dtype=torch.float64) * 10).requires_grad_(True) for i in range(4)
    )
    assert gradcheck64(lambda a, b, c, d: dpo_loss(a, b, c, d, beta=0.3, label_smoothing=0.15), inputs)


@loss_settings
@given(preference_pairs(), st.sampled_from([0.1, 2.0]))
def test_dpo_rewards_are_beta_times_the_log_ratios_and_their_margin_drives_the_loss(pairs, beta):
    chosen, rejected, ref_chosen, ref_rejected = pairs
    rewards = dpo_rewards(*pairs, beta=beta)
    torch.testing.assert_close(rewards.chosen, beta * (chosen - ref_chosen))
    torch.testing.assert_close(rewards.rejected, beta * (rejected - ref_rejected))
    margin = rewards.chosen - rewards.rejected
    torch.testing.assert_close(dpo_loss(*pairs, beta=beta, reduction="none"), torch.nn.functional.softplus(-margin))


def test_dpo_rewards_keep_the_graph():
    chosen = torch.tensor([-2.0], requires_grad=True)
    rewards = dpo_rewards(chosen, torch.tensor([-3.0]), torch.tensor([-1.0]), torch.tensor([-1.0]), beta=0.5)
    rewards.chosen.sum().backward()
    assert chosen.grad.item() == pytest.approx(0.5)


# --- SimPO ----------------------------------------------------------------------------------------------


@st.composite
def simpo_batches(draw):
    pairs = draw(preference_pairs())
    n, seed = pairs[0].shape[0], draw(seeds)
    lengths = torch.randint(1, 30, (2, n), generator=generator(seed))
    return pairs[0], pairs[1], lengths[0], lengths[1]


def _numpy_simpo(chosen, rejected, chosen_len, rejected_len, beta, gamma):
    return np.logaddexp(0.0, -(beta * chosen / chosen_len - beta * rejected / rejected_len - gamma))


@loss_settings
@given(simpo_batches(), st.sampled_from([0.5, 2.0, 10.0]), st.sampled_from([0.0, 0.5, 1.6]),
       st.sampled_from(["mean", "sum", "none"]))
def test_simpo_matches_numpy(batch, beta, gamma, reduction):
    per_pair = _numpy_simpo(*(x.double().numpy() for x in batch), beta, gamma)
    got = simpo_loss(*batch, beta=beta, gamma=gamma, reduction=reduction)
    expected = {"none": per_pair, "sum": per_pair.sum(), "mean": per_pair.mean()}[reduction]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_simpo_scores_the_mean_token_log_probability_not_the_sum():
    # The same per-token quality (-0.5 nats a token) at lengths 4 and 40: SimPO sees no difference,
    # a sum-based margin would see 18 nats in favour of the short response.
    loss = simpo_loss(torch.tensor([-20.0]), torch.tensor([-2.0]), torch.tensor([40]), torch.tensor([4]), gamma=0.0)
    assert loss.item() == pytest.approx(math.log(2))
    assert simpo_loss(torch.tensor([-2.0]), torch.tensor([-20.0]), torch.tensor([4.0]), torch.tensor([40.0]),
                      gamma=0.0).item() == pytest.approx(math.log(2))


def test_simpo_margin_gamma_raises_the_loss_of_a_tie():
    tie = (torch.tensor([-3.0]), torch.tensor([-3.0]), torch.tensor([3]), torch.tensor([3]))
    assert simpo_loss(*tie, gamma=0.0).item() == pytest.approx(math.log(2))
    assert simpo_loss(*tie, gamma=0.5).item() == pytest.approx(math.log1p(math.exp(0.5)))


def test_gradcheck_simpo():
    g = generator(20)
    chosen = (-torch.rand(4, generator=g, dtype=torch.float64) * 20).requires_grad_(True)
    rejected = (-torch.rand(4, generator=g, dtype=torch.float64) * 20).requires_grad_(True)
    lengths = torch.tensor([3, 7, 1, 12]), torch.tensor([5, 2, 9, 1])
    for reduction in ("mean", "sum", "none"):
        assert gradcheck64(lambda c, r: simpo_loss(c, r, *lengths, reduction=reduction), (chosen, rejected))


def test_simpo_loss_returns_the_promoted_dtype_of_the_two_log_probabilities():
    lengths = torch.tensor([2, 3])
    loss = simpo_loss(torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0], dtype=torch.float64), lengths, lengths)
    assert loss.dtype == torch.float64
    assert "promote" in simpo_loss.__doc__
