"""dpo_loss: against a NumPy formula, hand values, stability, gradient direction and gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from coursekit.losses import dpo_loss
from tests.strategies import float_dtypes, generator, gradcheck64, loss_settings, seeds


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
