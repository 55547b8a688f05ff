"""Tests of coursekit.losses.z_loss: (log Z)^2 against a direct formula, its gradient, its minimum."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given

from coursekit.losses import token_nll, z_loss
from tests.strategies import gradcheck64, loss_settings, padded_batches, random_logits

pytestmark = pytest.mark.losses


@loss_settings
@given(padded_batches())
def test_z_loss_is_the_squared_log_of_the_summed_exponentials(batch):
    logits = batch.logits.double()
    expected = [[math.log(sum(math.exp(v) for v in row)) ** 2 for row in seq] for seq in logits.tolist()]
    assert torch.allclose(z_loss(batch.logits).double(), torch.tensor(expected, dtype=torch.float64),
                          rtol=1e-5, atol=1e-6)


def test_z_loss_is_zero_for_normalised_logits_and_shifting_by_log_z_reaches_it():
    logits = random_logits((3, 5, 11), seed=4)
    log_z = torch.logsumexp(logits, dim=-1, keepdim=True)
    assert bool((z_loss(logits) > 0).all())
    assert torch.allclose(z_loss(logits - log_z), torch.zeros(3, 5, dtype=torch.float64), atol=1e-24)


def test_shifting_every_logit_changes_the_z_loss_but_not_the_nll():
    logits = random_logits((2, 4, 9), seed=5)
    targets = torch.randint(0, 9, (2, 4), generator=torch.Generator().manual_seed(5))
    shifted = logits + 7.0
    assert torch.allclose(token_nll(shifted, targets), token_nll(logits, targets), atol=1e-12)
    assert torch.allclose(z_loss(shifted).sqrt(), z_loss(logits).sqrt() + 7.0, atol=1e-12)


def test_z_loss_gradient_is_twice_log_z_times_the_softmax():
    logits = random_logits((4, 13), seed=6).requires_grad_(True)
    (grad,) = torch.autograd.grad(z_loss(logits).sum(), logits)
    log_z = torch.logsumexp(logits.detach(), dim=-1, keepdim=True)
    assert torch.allclose(grad, 2 * log_z * torch.softmax(logits.detach(), dim=-1), atol=1e-12)


def test_z_loss_passes_gradcheck_in_float64():
    logits = random_logits((2, 3, 5), seed=7).requires_grad_(True)
    assert gradcheck64(z_loss, (logits,))


def test_z_loss_of_large_logits_is_finite_and_half_precision_is_upcast():
    huge = torch.full((1, 4), 1e4)
    assert torch.allclose(z_loss(huge), torch.tensor([(1e4 + math.log(4)) ** 2]), rtol=1e-6)
    assert z_loss(torch.zeros(2, 3, dtype=torch.bfloat16)).dtype == torch.float32
    assert z_loss(torch.zeros(2, 3, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    ("logits", "error", "message"),
    [
        (torch.zeros(2, 3, dtype=torch.long), TypeError, r"logits must be a floating-point tensor"),
        ([[0.0]], TypeError, r"logits must be a torch\.Tensor"),
        (torch.zeros(2, 0), ValueError, r"logits must have shape \(\.\.\., V\) with V >= 1"),
        (torch.tensor(1.0), ValueError, r"logits must have shape \(\.\.\., V\) with V >= 1"),
    ],
)
def test_z_loss_rejects_bad_logits_naming_the_argument(logits, error, message):
    with pytest.raises(error, match=message):
        z_loss(logits)
