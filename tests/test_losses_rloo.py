"""coursekit.losses.leave_one_out_baseline: against a loop, and the unbiasedness it buys, by exact enumeration."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from coursekit.losses import leave_one_out_baseline, reinforce_loss
from tests.strategies import float_dtypes, generator, loss_settings, seeds

pytestmark = pytest.mark.losses


@loss_settings
@given(seed=seeds, groups=st.integers(1, 4), group_size=st.integers(2, 6), dtype=float_dtypes)
def test_each_sample_gets_the_mean_reward_of_the_others(seed: int, groups: int, group_size: int,
                                                        dtype: torch.dtype) -> None:
    rewards = torch.rand(groups, group_size, generator=generator(seed), dtype=torch.float64).to(dtype)
    baseline = leave_one_out_baseline(rewards)
    for g in range(groups):
        for i in range(group_size):
            others = [float(rewards[g, j]) for j in range(group_size) if j != i]
            assert float(baseline[g, i]) == pytest.approx(sum(others) / len(others), rel=1e-3, abs=1e-5)
    # r_i - v_i = G / (G - 1) * (r_i - group mean)
    centred = rewards - rewards.mean(dim=-1, keepdim=True)
    torch.testing.assert_close(rewards - baseline, centred * group_size / (group_size - 1), rtol=1e-3, atol=1e-5)


def test_the_baseline_is_detached_from_the_rewards() -> None:
    rewards = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    assert not leave_one_out_baseline(rewards).requires_grad


def test_leave_one_out_is_unbiased_where_the_group_mean_is_shrunk_by_g_minus_1_over_g() -> None:
    # exact expectation of the REINFORCE estimate over every ordered group of G = 3 draws from 4 outputs
    logits = torch.tensor([0.5, -0.2, 0.1, 0.9], dtype=torch.float64)
    rewards = torch.tensor([1.0, 0.0, 0.3, 0.7], dtype=torch.float64)
    p = torch.softmax(logits, -1)
    exact = p * (rewards - (p * rewards).sum())                       # gradient of E[r] w.r.t. the logits
    expected = {"group mean": torch.zeros(4, dtype=torch.float64), "leave one out": torch.zeros(4, dtype=torch.float64)}
    for group in itertools.product(range(4), repeat=3):
        weight = math.prod(float(p[k]) for k in group)
        sample = torch.tensor(group)
        for name in expected:
            theta = logits.clone().requires_grad_()
            log_probs = torch.log_softmax(theta, -1)[sample]
            baseline = "mean" if name == "group mean" else leave_one_out_baseline(rewards[sample])
            (grad,) = torch.autograd.grad(reinforce_loss(log_probs, rewards[sample], baseline=baseline), theta)
            expected[name] += weight * -grad
    torch.testing.assert_close(expected["leave one out"], exact)
    torch.testing.assert_close(expected["group mean"], exact * 2 / 3)


@pytest.mark.parametrize(
    ("rewards", "error", "pattern"),
    [
        (torch.tensor([1.0]), ValueError, r"rewards must have a group axis \(\.\.\., G\) with G >= 2"),
        (torch.tensor(1.0), ValueError, "rewards must have a group axis"),
        (torch.tensor([1, 2]), TypeError, "rewards must be a floating-point tensor"),
    ],
)
def test_bad_rewards_raise_naming_them(rewards: torch.Tensor, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        leave_one_out_baseline(rewards)
