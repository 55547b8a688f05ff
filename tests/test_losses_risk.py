"""mrt_risk and reinforce_loss: against direct NumPy formulas, hand values, gradient identities, gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from coursekit.losses import mrt_risk, reinforce_loss
from tests.strategies import float_dtypes, generator, gradcheck64, loss_settings, random_masks, seeds

pytestmark = [pytest.mark.losses, pytest.mark.a5]


@st.composite
def candidate_sets(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """(sequence_log_probs, costs) of shape (N, K): log-probabilities of sampled candidates and costs in [0, 1]."""
    n, k = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    dtype, seed = draw(float_dtypes), draw(seeds)
    log_p = -(torch.rand(n, k, generator=generator(seed), dtype=torch.float64) * 30).to(dtype)
    costs = torch.rand(n, k, generator=generator(seed + 1), dtype=torch.float64).to(dtype)
    return log_p, costs


def _numpy_mrt(log_p: np.ndarray, costs: np.ndarray, alpha: float, mask: np.ndarray | None = None) -> float:
    if mask is None:
        mask = np.ones_like(log_p, dtype=bool)
    risks = []
    for row_p, row_c, row_m in zip(log_p, costs, mask):
        powered = np.exp(alpha * (row_p[row_m] - row_p[row_m].max()))  # P^alpha up to a common factor
        q = powered / powered.sum()
        risks.append(float((q * row_c[row_m]).sum()))
    return float(np.mean(risks))


@loss_settings
@given(candidate_sets(), st.sampled_from([5e-3, 0.3, 1.0, 2.5]))
def test_mrt_risk_matches_numpy(case, alpha):
    log_p, costs = case
    got = mrt_risk(log_p, costs, alpha=alpha)
    assert got.dtype == log_p.dtype
    assert got.item() == pytest.approx(_numpy_mrt(log_p.double().numpy(), costs.double().numpy(), alpha), rel=1e-5)


@loss_settings
@given(candidate_sets(), st.data())
def test_mrt_risk_with_candidate_mask_matches_numpy_and_ignores_masked_candidates(case, data):
    log_p, costs = case
    mask = data.draw(random_masks(tuple(log_p.shape)))
    mask[:, 0] = True
    got = mrt_risk(log_p, costs, mask=mask)
    expected = _numpy_mrt(log_p.double().numpy(), costs.double().numpy(), 1.0, mask.numpy())
    assert got.item() == pytest.approx(expected, rel=1e-5)
    garbage = torch.where(mask, log_p, torch.full_like(log_p, 50.0))
    torch.testing.assert_close(mrt_risk(garbage, torch.where(mask, costs, costs + 9), mask=mask), got)


def test_mrt_hand_values():
    log_p = torch.log(torch.tensor([[0.75, 0.25], [0.5, 0.5]]))
    costs = torch.tensor([[0.0, 1.0], [0.2, 0.6]])
    assert mrt_risk(log_p, costs).item() == pytest.approx((0.25 + 0.4) / 2)
    # alpha = 2: Q = (0.9, 0.1) in the first row, still (0.5, 0.5) in the second.
    assert mrt_risk(log_p, costs, alpha=2.0).item() == pytest.approx((0.1 + 0.4) / 2)


def test_mrt_gradient_lowers_the_probability_of_costly_candidates():
    log_p = torch.log(torch.tensor([[0.5, 0.5]], dtype=torch.float64)).requires_grad_(True)
    costs = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    mrt_risk(log_p, costs).backward()
    # dR/dlog p_k = alpha * Q_k * (cost_k - R): cheap candidate pushed up, costly one down.
    torch.testing.assert_close(log_p.grad, torch.tensor([[-0.25, 0.25]], dtype=torch.float64))


def test_mrt_is_stable_for_very_negative_log_probs():
    log_p = torch.tensor([[-5000.0, -5001.0]])
    value = mrt_risk(log_p, torch.tensor([[0.0, 1.0]]))
    assert value.item() == pytest.approx(1 / (1 + math.e))


@loss_settings
@given(candidate_sets(), st.sampled_from([None, 0.3, "mean", "tensor"]))
def test_reinforce_matches_numpy(case, baseline_kind):
    log_p, rewards = case
    r = rewards.double().numpy()
    if baseline_kind is None:
        baseline, b = None, 0.0
    elif baseline_kind == "mean":
        baseline, b = "mean", r.mean()
    elif baseline_kind == "tensor":
        baseline = rewards[:, :1] * 0.5
        b = baseline.double().numpy()
    else:
        baseline, b = baseline_kind, baseline_kind
    lp = log_p.double().numpy()
    expected = -np.mean((r - b) * lp)
    got = reinforce_loss(log_p, rewards, baseline=baseline)
    assert got.dtype == log_p.dtype
    # Arithmetic in the inputs' dtype: each term (r - b) * log p and the "mean" baseline are rounded by about
    # eps |.|, which the log-probs (down to -30) multiply; float32 terms of about 10 that cancel to 0.017 were
    # 1.1e-6 off. Sixteen eps bound a sum of up to 20 such terms.
    eps = np.finfo(log_p.numpy().dtype).eps
    rounding = 16 * eps * np.mean(np.abs(lp)) * (np.max(np.abs(r)) + np.max(np.abs(b)))
    assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-6 + rounding)


def test_reinforce_hand_values_and_gradient():
    log_p = torch.tensor([-1.0, -2.0], requires_grad=True)
    rewards = torch.tensor([1.0, 0.0])
    assert reinforce_loss(log_p, rewards).item() == pytest.approx(0.5)
    value = reinforce_loss(log_p, rewards, baseline="mean")
    assert value.item() == pytest.approx(-0.25)
    value.backward()
    torch.testing.assert_close(log_p.grad, torch.tensor([-0.25, 0.25]))


def test_reinforce_does_not_train_the_baseline_or_the_rewards():
    log_p = torch.tensor([-1.0, -2.0], requires_grad=True)
    rewards = torch.tensor([1.0, 0.0], requires_grad=True)
    baseline = torch.tensor([0.2, 0.2], requires_grad=True)
    reinforce_loss(log_p, rewards, baseline=baseline).backward()
    assert baseline.grad is None and rewards.grad is None
    torch.testing.assert_close(log_p.grad, -(torch.tensor([1.0, 0.0]) - 0.2) / 2)


def test_gradcheck_mrt_and_reinforce():
    log_p = -torch.rand(3, 4, generator=generator(0), dtype=torch.float64).mul(5).requires_grad_(True)
    costs = torch.rand(3, 4, generator=generator(1), dtype=torch.float64)
    mask = torch.tensor([[True, True, False, True], [True] * 4, [True, False, False, False]])
    assert gradcheck64(lambda x: mrt_risk(x, costs, alpha=0.7), (log_p,))
    assert gradcheck64(lambda x: mrt_risk(x, costs, mask=mask), (log_p,))
    assert gradcheck64(lambda x: reinforce_loss(x, costs, baseline="mean"), (log_p,))
    assert gradcheck64(lambda x: reinforce_loss(x, costs), (log_p,))


def _expected_gradient(baseline, probabilities: torch.Tensor, rewards: torch.Tensor, samples: int) -> torch.Tensor:
    """Exact expectation of reinforce_loss's gradient over every draw of `samples` independent outcomes."""
    import itertools

    logits = torch.log(probabilities).clone().requires_grad_(True)
    total = torch.zeros_like(probabilities)
    for draw in itertools.product(range(len(probabilities)), repeat=samples):
        index = torch.tensor(draw)
        log_p = torch.log_softmax(logits, dim=0)[index]
        (gradient,) = torch.autograd.grad(reinforce_loss(log_p, rewards[index], baseline=baseline), logits)
        total += float(torch.prod(probabilities[index])) * gradient
    return total


def test_leave_one_out_baseline_gives_the_unbiased_gradient_and_the_batch_mean_shrinks_it_by_g_minus_1_over_g():
    probabilities = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    rewards = torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64)
    logits = torch.log(probabilities).clone().requires_grad_(True)
    (true,) = torch.autograd.grad(-(torch.softmax(logits, dim=0) * rewards).sum(), logits)
    samples = 3
    torch.testing.assert_close(_expected_gradient(None, probabilities, rewards, samples), true)
    torch.testing.assert_close(_expected_gradient("leave_one_out", probabilities, rewards, samples), true)
    torch.testing.assert_close(_expected_gradient("mean", probabilities, rewards, samples), true * (samples - 1) / samples)


def test_leave_one_out_baseline_subtracts_the_mean_of_the_other_rewards():
    log_p = torch.tensor([-1.0, -2.0, -0.5], dtype=torch.float64)
    rewards = torch.tensor([3.0, 0.0, 6.0], dtype=torch.float64)
    others = torch.tensor([3.0, 4.5, 1.5], dtype=torch.float64)
    torch.testing.assert_close(reinforce_loss(log_p, rewards, baseline="leave_one_out"), -((rewards - others) * log_p).mean())
    with pytest.raises(ValueError, match=r"baseline='leave_one_out' needs at least 2 samples, got 1"):
        reinforce_loss(log_p[:1], rewards[:1], baseline="leave_one_out")
