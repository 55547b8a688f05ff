"""Every loss accepts the same integer dtypes for class indices and rejects the rest naming the argument.

F.cross_entropy (torch 2.13) takes int64 and uint8 targets only; coursekit accepts int8, int16, int32, int64 and
uint8 in every loss (widening to int64 where it indexes) and rejects uint16/32/64, for which PyTorch lacks even
comparison kernels on the CPU, with a TypeError naming the argument.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from coursekit.losses import (
    causal_lm_loss,
    chunked_cross_entropy,
    confidence_penalty_nll,
    label_smoothed_nll,
    token_nll,
    top_k_kd_loss,
    vocab_parallel_cross_entropy,
)
from tests.strategies import generator

pytestmark = pytest.mark.losses

NARROW = [torch.int8, torch.int16, torch.int32, torch.uint8]
V = 6


def logits() -> torch.Tensor:
    return torch.randn(2, 5, V, generator=generator(71), dtype=torch.float64, requires_grad=True)


TARGETS = torch.tensor([[1, 5, 0, 3, 2], [4, 4, 1, 0, 5]])


def plain_cross_entropy(z: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(z.reshape(-1, V), targets.reshape(-1).long(), reduction="none").reshape(targets.shape)


# name: (loss of (logits, targets), the independent computation with int64 targets)
LOSSES: dict[str, tuple[Callable, Callable]] = {
    "token_nll": (lambda z, t: token_nll(z, t), plain_cross_entropy),
    "causal_lm_loss": (lambda z, t: causal_lm_loss(z, t),
                       lambda z, t: plain_cross_entropy(z[:, :-1], t[:, 1:]).mean()),
    "label_smoothed_nll": (
        lambda z, t: label_smoothed_nll(z, t, epsilon=0.1),
        lambda z, t: F.cross_entropy(z.reshape(-1, V), t.reshape(-1).long(), label_smoothing=0.1),
    ),
    "confidence_penalty_nll": (
        lambda z, t: confidence_penalty_nll(z, t, weight=0.1),
        lambda z, t: (plain_cross_entropy(z, t)
                      + 0.1 * (torch.softmax(z, -1) * torch.log_softmax(z, -1)).sum(-1)).mean(),
    ),
    "vocab_parallel_cross_entropy": (
        lambda z, t: vocab_parallel_cross_entropy([z[..., :2], z[..., 2:]], t),
        lambda z, t: F.cross_entropy(z.reshape(-1, V), t.reshape(-1).long()),
    ),
    "chunked_cross_entropy": (
        lambda z, t: chunked_cross_entropy(z.reshape(-1, V), torch.eye(V, dtype=z.dtype), t.reshape(-1), chunk_size=3),
        lambda z, t: F.cross_entropy(z.reshape(-1, V), t.reshape(-1).long()),
    ),
    "top_k_kd_loss": (
        lambda z, t: top_k_kd_loss(z, torch.full(t.shape + (1,), -0.1, dtype=z.dtype), t.unsqueeze(-1),
                                   reduction="sum", tail=False),
        # tail=False renormalises the one kept entry to 1: the NLL of the teacher's token
        lambda z, t: plain_cross_entropy(z, t).sum(),
    ),
}


@pytest.mark.parametrize("dtype", NARROW, ids=str)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_narrow_integer_targets_give_the_int64_loss_and_gradient(name, dtype):
    ours_fn, reference_fn = LOSSES[name]
    z_ours, z_ref = logits(), logits()
    ours, reference = ours_fn(z_ours, TARGETS.to(dtype)), reference_fn(z_ref, TARGETS)
    if ours.dim():
        reference = reference.reshape(ours.shape)
    torch.testing.assert_close(ours, reference)
    (grad_ours,) = torch.autograd.grad(ours.sum(), z_ours)
    (grad_ref,) = torch.autograd.grad(reference.sum(), z_ref)
    torch.testing.assert_close(grad_ours, grad_ref)


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64], ids=str)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_wide_unsigned_targets_are_rejected_naming_the_argument(name, dtype):
    argument = "teacher_indices" if name == "top_k_kd_loss" else "input_ids" if name == "causal_lm_loss" else "targets"
    with pytest.raises(TypeError, match=rf"{argument} must be an integer tensor of dtype int8, int16, int32, int64 "
                                        rf"or uint8 \(e\.g\. torch\.long\), got dtype {dtype}"):
        LOSSES[name][0](logits(), TARGETS.to(dtype))


def wide_cross_entropy(z: torch.Tensor, targets: torch.Tensor, **kwargs) -> torch.Tensor:
    return F.cross_entropy(z.reshape(-1, z.shape[-1]), targets.reshape(-1).long(), **kwargs)


# name: (loss of (logits, targets, ignore_index), F.cross_entropy with int64 targets and the same ignore_index)
IGNORING_LOSSES: dict[str, tuple[Callable, Callable]] = {
    "token_nll": (
        lambda z, t, i: token_nll(z, t, ignore_index=i),
        lambda z, t, i: wide_cross_entropy(z, t, ignore_index=i, reduction="none").reshape(t.shape),
    ),
    "causal_lm_loss": (
        lambda z, t, i: causal_lm_loss(z, t, ignore_index=i),
        lambda z, t, i: wide_cross_entropy(z[:, :-1], t[:, 1:], ignore_index=i),
    ),
    "label_smoothed_nll": (
        lambda z, t, i: label_smoothed_nll(z, t, epsilon=0.1, ignore_index=i),
        lambda z, t, i: wide_cross_entropy(z, t, ignore_index=i, label_smoothing=0.1),
    ),
    "confidence_penalty_nll": (
        lambda z, t, i: confidence_penalty_nll(z, t, weight=0.0, ignore_index=i),
        lambda z, t, i: wide_cross_entropy(z, t, ignore_index=i),
    ),
    "vocab_parallel_cross_entropy": (
        lambda z, t, i: vocab_parallel_cross_entropy([z[..., :50], z[..., 50:]], t, ignore_index=i),
        lambda z, t, i: wide_cross_entropy(z, t, ignore_index=i),
    ),
    "chunked_cross_entropy": (
        lambda z, t, i: chunked_cross_entropy(z.reshape(-1, z.shape[-1]), torch.eye(z.shape[-1], dtype=z.dtype),
                                              t.reshape(-1), chunk_size=2, ignore_index=i),
        lambda z, t, i: wide_cross_entropy(z, t, ignore_index=i),
    ),
}
# uint8 156 and int8 -56 are what -100 and 200 become when PyTorch casts the Python int to the tensor's dtype
WRAPPED_IGNORE = [(torch.uint8, 156, -100), (torch.int8, -56, 200)]


def wide_logits(num_classes: int) -> torch.Tensor:
    return torch.randn(1, 3, num_classes, generator=generator(72), dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("name", sorted(IGNORING_LOSSES))
def test_uint8_target_156_is_a_class_not_the_ignore_index_minus_100(name):
    ours_fn, reference_fn = IGNORING_LOSSES[name]
    targets = torch.tensor([[3, 156, 7]])
    z_ours, z_ref = wide_logits(200), wide_logits(200)
    ours = ours_fn(z_ours, targets.to(torch.uint8), -100)
    reference = reference_fn(z_ref, targets, -100)
    torch.testing.assert_close(ours, reference)
    (grad_ours,) = torch.autograd.grad(ours.sum(), z_ours)
    (grad_ref,) = torch.autograd.grad(reference.sum(), z_ref)
    torch.testing.assert_close(grad_ours, grad_ref)


@pytest.mark.parametrize(("dtype", "value", "ignore_index"), WRAPPED_IGNORE, ids=["uint8-156", "int8-minus-56"])
@pytest.mark.parametrize("name", sorted(IGNORING_LOSSES))
def test_narrow_target_outside_the_vocabulary_is_rejected_even_if_it_wraps_to_ignore_index(
    name, dtype, value, ignore_index
):
    argument = "input_ids" if name == "causal_lm_loss" else "targets"
    targets = torch.tensor([[3, value, 7]], dtype=dtype)
    with pytest.raises(ValueError, match=rf"{argument} must lie in \[0, 100\).*got {value}"):
        IGNORING_LOSSES[name][0](wide_logits(100), targets, ignore_index)
