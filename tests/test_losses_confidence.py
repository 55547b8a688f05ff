"""confidence_penalty_nll (Pereyra et al. 2017): against a NumPy definition, its KL form, and gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from coursekit.losses import confidence_penalty_nll
from tests.strategies import IGNORE_INDEX, generator, gradcheck64, loss_settings, padded_batches

pytestmark = pytest.mark.losses

weights = st.sampled_from([0.0, 0.1, 0.5, 2.0])


def _numpy_definition(logits: np.ndarray, targets: np.ndarray, weight: float) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    valid = targets != IGNORE_INDEX
    picked = np.take_along_axis(p, np.where(valid, targets, 0)[..., None], axis=-1)[..., 0]
    entropy = -(p * np.log(p)).sum(axis=-1)
    return np.where(valid, -np.log(picked) - weight * entropy, 0.0)


@loss_settings
@given(padded_batches(), weights, st.sampled_from(["none", "sum", "mean"]))
def test_confidence_penalty_matches_the_numpy_definition(batch, weight, reduction):
    per_token = _numpy_definition(batch.logits.double().numpy(), batch.targets.numpy(), weight)
    got = confidence_penalty_nll(batch.logits, batch.targets, weight, reduction=reduction)
    count = int(batch.mask.sum())
    assert got.dtype == batch.dtype
    if reduction == "none":
        np.testing.assert_allclose(got.double().numpy(), per_token, rtol=1e-5, atol=1e-5)
    elif reduction == "sum":
        assert got.item() == pytest.approx(per_token.sum(), rel=1e-5, abs=1e-5)
    elif count == 0:
        assert math.isnan(got.item())
    else:
        assert got.item() == pytest.approx(per_token.sum() / count, rel=1e-5, abs=1e-5)


@loss_settings
@given(padded_batches(require_one_token=True, dtypes=st.just(torch.float64)), weights)
def test_confidence_penalty_is_nll_plus_reverse_kl_to_uniform(batch, weight):
    v = batch.shape[2]
    log_p = torch.log_softmax(batch.logits, dim=-1)
    reverse_kl = F.kl_div(torch.full_like(log_p, -math.log(v)), log_p, log_target=True, reduction="none").sum(-1)
    nll = F.cross_entropy(batch.logits.transpose(1, 2), batch.targets, reduction="none")
    expected = torch.where(batch.mask, nll + weight * (reverse_kl - math.log(v)), torch.zeros_like(nll))
    torch.testing.assert_close(confidence_penalty_nll(batch.logits, batch.targets, weight, reduction="none"), expected)


def test_zero_weight_is_cross_entropy_and_the_uniform_model_pays_nll_minus_weight_log_v():
    logits = torch.randn(5, 6, generator=generator(3))
    targets = torch.tensor([0, 5, 2, 2, 1])
    torch.testing.assert_close(confidence_penalty_nll(logits, targets, 0.0), F.cross_entropy(logits, targets))
    uniform = confidence_penalty_nll(torch.zeros(5, 6), targets, 0.3)
    assert uniform.item() == pytest.approx(math.log(6) - 0.3 * math.log(6), abs=1e-6)


def test_ignored_positions_contribute_nothing_to_value_or_gradient():
    logits = torch.randn(2, 3, 4, generator=generator(4), dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[1, IGNORE_INDEX, 3], [IGNORE_INDEX, 0, 2]])
    (grad,) = torch.autograd.grad(confidence_penalty_nll(logits, targets, 0.4, reduction="sum"), logits)
    assert bool((grad[targets == IGNORE_INDEX] == 0).all())


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_gradcheck_confidence_penalty(reduction):
    logits = torch.randn(2, 3, 4, generator=generator(5), dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[0, 3, IGNORE_INDEX], [1, 2, 2]])
    assert gradcheck64(lambda z: confidence_penalty_nll(z, targets, 0.7, reduction=reduction), (logits,))


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"weight": -0.1}, ValueError, "weight"),
        ({"weight": "a"}, TypeError, "weight"),
        ({"weight": 0.1, "reduction": "token_mean"}, ValueError, "reduction"),
        ({"weight": 0.1, "targets": torch.tensor([0, 9])}, ValueError, "targets"),
        ({"weight": 0.1, "targets": torch.tensor([0.0, 1.0])}, TypeError, "targets"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, error, name):
    arguments = {"logits": torch.zeros(2, 3), "targets": torch.tensor([0, 1]), **kwargs}
    with pytest.raises(error, match=name):
        confidence_penalty_nll(**arguments)


def _reference_confidence_penalty(logits: torch.Tensor, targets: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-position loss from the unmasked columns only (0 log 0 = 0), by the formula; 0 where ignored."""
    log_p = torch.log_softmax(logits, dim=-1)
    nll = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="none")
    return torch.where(targets == IGNORE_INDEX, 0.0, nll + weight * (log_p.exp() * log_p).sum(dim=-1))


@pytest.mark.parametrize("weight", [0.0, 0.5])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_a_minus_infinity_logit_contributes_nothing_to_value_or_gradient(weight, reduction):
    # Column 5 is a masked vocabulary entry: the loss is the one of the other five columns, and that
    # column's gradient is 0. Before the fix 0 * (-inf) made value and gradient nan even at weight 0.
    finite = torch.randn(4, 5, generator=generator(14), dtype=torch.float64)
    targets = torch.tensor([0, 3, IGNORE_INDEX, 4])
    logits = torch.cat([finite, torch.full((4, 1), -math.inf, dtype=torch.float64)], dim=-1).requires_grad_(True)
    got = confidence_penalty_nll(logits, targets, weight, reduction=reduction)
    (got_grad,) = torch.autograd.grad(got.sum(), logits)
    reference_logits = finite.clone().requires_grad_(True)
    per_position = _reference_confidence_penalty(reference_logits, targets, weight)
    expected = {"none": per_position, "sum": per_position.sum(), "mean": per_position.sum() / 3}[reduction]
    (expected_grad,) = torch.autograd.grad(expected.sum(), reference_logits)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_grad[:, :5], expected_grad)
    assert bool((got_grad[:, 5] == 0).all())


def test_gradcheck_confidence_penalty_through_a_minus_infinity_logit():
    finite = torch.randn(3, 5, generator=generator(15), dtype=torch.float64, requires_grad=True)
    masked = torch.full((3, 1), -math.inf, dtype=torch.float64)
    targets = torch.tensor([1, 0, 4])
    assert gradcheck64(lambda z: confidence_penalty_nll(torch.cat([z, masked], dim=-1), targets, 0.5), (finite,))


def test_confidence_penalty_nll_refuses_an_empty_vocabulary_naming_logits() -> None:
    # V = 0 with every target ignored: the gather failed with an unnamed index error.
    with pytest.raises(ValueError, match=r"^logits must have shape \(\.\.\., V\) with V >= 1, got shape \(2, 0\)$"):
        confidence_penalty_nll(torch.zeros(2, 0), torch.full((2,), IGNORE_INDEX), 0.1)
