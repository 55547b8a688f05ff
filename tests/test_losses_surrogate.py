"""clipped_surrogate, kl_penalty, sequence_importance_ratio: against NumPy, by properties, and by gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from coursekit.losses import clipped_surrogate, kl_penalty, sequence_importance_ratio
from tests.strategies import generator, gradcheck64, loss_settings, response_batches

pytestmark = pytest.mark.losses

clips = st.sampled_from([0.0, 0.1, 0.2, 0.28, 1.5])


def _numpy_clipped(log_probs, old, advantages, eps_low, eps_high):
    ratio = np.exp(log_probs - old)
    if advantages.ndim < log_probs.ndim:
        advantages = advantages[:, None]
    return -np.minimum(ratio * advantages, np.clip(ratio, 1 - eps_low, 1 + eps_high) * advantages)


@loss_settings
@given(response_batches(), clips, st.one_of(st.none(), clips))
def test_clipped_surrogate_matches_numpy(batch, eps_low, eps_high):
    got = clipped_surrogate(batch.log_probs, batch.old_log_probs, batch.advantages, eps_low=eps_low, eps_high=eps_high)
    expected = _numpy_clipped(
        batch.log_probs.numpy(), batch.old_log_probs.numpy(), batch.advantages.numpy(),
        eps_low, eps_low if eps_high is None else eps_high,
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


@loss_settings
@given(response_batches())
def test_per_response_advantages_broadcast_like_their_per_token_expansion(batch):
    advantages = batch.advantages if batch.advantages.dim() == 1 else batch.advantages[:, 0]
    per_token = advantages.unsqueeze(-1).expand_as(batch.log_probs)
    torch.testing.assert_close(
        clipped_surrogate(batch.log_probs, batch.old_log_probs, advantages),
        clipped_surrogate(batch.log_probs, batch.old_log_probs, per_token),
    )


def test_clipped_surrogate_is_the_plain_policy_gradient_surrogate_inside_the_clip_range():
    log_probs = torch.log(torch.tensor([[0.9, 1.0, 1.1]], dtype=torch.float64)).requires_grad_(True)
    advantages = torch.tensor([[2.0, -1.0, 0.5]], dtype=torch.float64)
    loss = clipped_surrogate(log_probs, torch.zeros(1, 3, dtype=torch.float64), advantages)
    torch.testing.assert_close(loss.detach(), -torch.tensor([[0.9 * 2.0, -1.0, 1.1 * 0.5]], dtype=torch.float64))
    (grad,) = torch.autograd.grad(loss.sum(), log_probs)
    torch.testing.assert_close(grad, -torch.exp(log_probs.detach()) * advantages)  # d(-rA)/d log p = -rA


def test_no_gradient_once_the_ratio_has_left_the_clip_range_in_the_advantages_direction():
    # ratio 1.5 with A > 0 (clipped above) and ratio 0.5 with A < 0 (clipped below): no gradient;
    # ratio 0.5 with A > 0 and 1.5 with A < 0: the unclipped term is the minimum, full gradient.
    log_probs = torch.log(torch.tensor([[1.5, 0.5, 0.5, 1.5]], dtype=torch.float64)).requires_grad_(True)
    advantages = torch.tensor([[1.0, -1.0, 1.0, -1.0]], dtype=torch.float64)
    loss = clipped_surrogate(log_probs, torch.zeros(1, 4, dtype=torch.float64), advantages)
    (grad,) = torch.autograd.grad(loss.sum(), log_probs)
    torch.testing.assert_close(grad, torch.tensor([[0.0, 0.0, -0.5, 1.5]], dtype=torch.float64))


def test_clip_higher_lets_a_positive_advantage_raise_the_ratio_further():
    log_probs = torch.log(torch.tensor([[1.25]], dtype=torch.float64))
    symmetric = clipped_surrogate(log_probs, torch.zeros(1, 1), torch.tensor([1.0]))
    higher = clipped_surrogate(log_probs, torch.zeros(1, 1), torch.tensor([1.0]), eps_high=0.28)
    assert symmetric.item() == pytest.approx(-1.2) and higher.item() == pytest.approx(-1.25)


def test_old_log_probs_and_advantages_are_constants():
    g = generator(1)
    log_probs = torch.randn(2, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    old = torch.randn(2, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    advantages = torch.randn(2, generator=g, dtype=torch.float64).requires_grad_(True)
    loss = clipped_surrogate(log_probs, old, advantages).sum() + sequence_importance_ratio(log_probs, old, None).sum()
    grads = torch.autograd.grad(loss, (log_probs, old, advantages), allow_unused=True)
    assert grads[0] is not None and grads[1] is None and grads[2] is None


@pytest.mark.parametrize("advantage_shape", ["per response", "per token"])
def test_clipped_surrogate_gradcheck_float64(advantage_shape):
    g = generator(2)
    # Ratios away from the clip boundaries, where the loss is not differentiable.
    old = torch.zeros(3, 4, dtype=torch.float64)
    log_probs = torch.log(torch.tensor([[0.5, 0.9, 1.05, 1.6]] * 3, dtype=torch.float64)).requires_grad_(True)
    shape = (3,) if advantage_shape == "per response" else (3, 4)
    advantages = torch.randn(shape, generator=g, dtype=torch.float64)
    assert gradcheck64(lambda lp: clipped_surrogate(lp, old, advantages, eps_high=0.28), (log_probs,))


# --- kl_penalty ---------------------------------------------------------------------------------


def _numpy_kl(log_probs, ref, estimator):
    d = ref - log_probs
    return {"k1": -d, "k2": 0.5 * d**2, "k3": np.exp(d) - d - 1}[estimator]


@loss_settings
@given(response_batches(), st.sampled_from(["k1", "k2", "k3"]))
def test_kl_penalty_matches_numpy(batch, estimator):
    got = kl_penalty(batch.log_probs, batch.old_log_probs, estimator=estimator)
    expected = _numpy_kl(batch.log_probs.numpy(), batch.old_log_probs.numpy(), estimator)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


@loss_settings
@given(response_batches())
def test_k2_and_k3_are_never_negative_and_zero_exactly_where_the_log_probabilities_agree(batch):
    for estimator in ("k2", "k3"):
        assert bool((kl_penalty(batch.log_probs, batch.old_log_probs, estimator=estimator) >= 0).all())
        assert bool((kl_penalty(batch.log_probs, batch.log_probs.clone(), estimator=estimator) == 0).all())


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_k1_and_k3_are_unbiased_estimates_of_the_kl_divergence(estimator):
    # Tokens sampled from p: the mean of the estimator approaches KL(p || ref).
    p = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    ref = torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64)
    exact = float((p * (p.log() - ref.log())).sum())
    tokens = torch.multinomial(p, 200_000, replacement=True, generator=generator(3))
    estimate = kl_penalty(p.log()[tokens], ref.log()[tokens], estimator=estimator).mean()
    assert float(estimate) == pytest.approx(exact, abs=0.005)


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_kl_penalty_gradcheck_float64(estimator):
    g = generator(4)
    log_probs = (-torch.rand(2, 5, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    ref = (-torch.rand(2, 5, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    assert gradcheck64(lambda a, b: kl_penalty(a, b, estimator=estimator), (log_probs, ref))


# --- sequence_importance_ratio -------------------------------------------------------------------------


@loss_settings
@given(response_batches())
def test_sequence_ratio_is_the_geometric_mean_of_the_token_ratios(batch):
    got = sequence_importance_ratio(batch.log_probs, batch.old_log_probs, batch.mask)
    ratios = np.exp(batch.log_probs.numpy() - batch.old_log_probs.numpy())
    counted = batch.counted.numpy()
    expected = [
        math.prod(r[c]) ** (1 / c.sum()) if c.any() else 1.0 for r, c in zip(ratios, counted)
    ]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_sequence_ratio_ignores_whatever_lies_under_the_mask():
    g = generator(5)
    log_probs = torch.randn(3, 4, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    scrambled = torch.where(mask.bool(), log_probs, torch.full_like(log_probs, float("nan"))).requires_grad_(True)
    ratio = sequence_importance_ratio(scrambled, torch.zeros_like(log_probs), mask)
    torch.testing.assert_close(ratio, sequence_importance_ratio(log_probs, torch.zeros_like(log_probs), mask))
    assert ratio[2].item() == 1.0
    (grad,) = torch.autograd.grad(ratio.sum(), scrambled)
    assert bool(torch.isfinite(grad).all()) and bool((grad[~mask.bool()] == 0).all())


def test_sequence_ratio_gradcheck_float64():
    g = generator(6)
    log_probs = torch.randn(3, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    mask = torch.tensor([[True, True, False, False], [True] * 4, [False] * 4])
    assert gradcheck64(lambda lp: sequence_importance_ratio(lp, torch.zeros(3, 4, dtype=torch.float64), mask),
                       (log_probs,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_k3_is_never_negative_after_rounding_for_tiny_log_ratios(dtype):
    # exp(d) - d - 1 rounds below 0 for many |d| < ~1e-3 (float32: down to -6e-8); the estimator
    # itself is >= 0, and the computed value must be too.
    g = generator(44)
    magnitude = 10.0 ** -(torch.rand(20_000, generator=g, dtype=torch.float64) * 12 + 1)   # 1e-13 .. 1e-1
    sign = torch.where(torch.rand(20_000, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
    log_probs = torch.zeros(20_000, dtype=dtype)
    ref = (sign * magnitude).to(dtype)
    values = kl_penalty(log_probs, ref)
    assert bool((values >= 0).all()), float(values.min())
    # and still the estimator, to within the rounding of d itself: the series d^2/2 + d^3/6 + ... in float64
    d = ref.double()
    series = sum(d**n / math.factorial(n) for n in range(2, 15))      # exact to ~1e-23 relative for |d| <= 0.1
    eps = torch.finfo(dtype).eps
    assert bool(((values.double() - series).abs() <= 2 * eps * (d.abs() + series)).all())


@pytest.mark.parametrize(("estimator", "where"), [("k2", "ref_log_probs"), ("k2", "log_probs"), ("k3", "log_probs")])
def test_kl_penalty_padding_at_minus_inf_gives_the_nan_gradient_its_docstring_warns_of_and_zero_does_not(
        estimator, where):
    # Losses review round 26, F3: the docstring said nothing about padding; a masked -inf still sends
    # 0 * inf = nan back, so the docstring asks for finite padding. Both halves of that sentence are checked.
    from coursekit.losses import policy_loss_aggregate

    mask = torch.tensor([[1, 1, 0]])
    for padding, finite in ((-math.inf, False), (0.0, True)):
        log_probs = torch.tensor([[-1.0, -2.0, -1.0]], requires_grad=True)
        ref_log_probs = torch.tensor([[-1.5, -2.5, -1.0]], requires_grad=True)
        with torch.no_grad():
            (log_probs if where == "log_probs" else ref_log_probs)[0, 2] = padding
        loss = policy_loss_aggregate(kl_penalty(log_probs, ref_log_probs, estimator=estimator), mask, mode="bnpo")
        loss.backward()
        assert bool(torch.isfinite(loss))
        assert bool(torch.isfinite(log_probs.grad).all()) is finite, (padding, log_probs.grad)
        assert bool(torch.isfinite(ref_log_probs.grad).all()) is finite, (padding, ref_log_probs.grad)
    assert "should hold finite values" in " ".join(kl_penalty.__doc__.split())


@pytest.mark.parametrize(("estimator", "where"), [("k1", "log_probs"), ("k1", "ref_log_probs"), ("k3", "ref_log_probs")])
def test_kl_penalty_padding_at_minus_inf_keeps_a_finite_gradient_where_its_docstring_says(estimator, where):
    from coursekit.losses import policy_loss_aggregate

    log_probs = torch.tensor([[-1.0, -2.0, -1.0]], requires_grad=True)
    ref_log_probs = torch.tensor([[-1.5, -2.5, -1.0]], requires_grad=True)
    with torch.no_grad():
        (log_probs if where == "log_probs" else ref_log_probs)[0, 2] = -math.inf
    policy_loss_aggregate(kl_penalty(log_probs, ref_log_probs, estimator=estimator), torch.tensor([[1, 1, 0]]),
                          mode="bnpo").backward()
    assert bool(torch.isfinite(log_probs.grad).all()) and bool(torch.isfinite(ref_log_probs.grad).all())
