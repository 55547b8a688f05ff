"""The losses built on a log-softmax compute, under torch.autocast, what F.cross_entropy computes there.

Under CPU autocast ``F.cross_entropy`` raises bfloat16 logits to float32 and
returns float32, while ``torch.log_softmax`` alone keeps bfloat16: a loss that
called it directly would return bfloat16 and differ from PyTorch by up to
0.2 %. Each test takes bfloat16 logits (as an autocast output layer returns
them), runs the loss and ``F.cross_entropy`` under ``torch.autocast("cpu",
dtype=torch.bfloat16)``, and compares value, dtype and the gradient with
respect to the logits. (chunked_cross_entropy's autocast tests are in
test_losses_chunked.py.)
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from coursekit.losses import (
    causal_lm_loss,
    confidence_penalty_nll,
    label_smoothed_nll,
    token_nll,
    vocab_parallel_cross_entropy,
)
from tests.strategies import IGNORE_INDEX, generator

pytestmark = pytest.mark.losses

REDUCTIONS = ("none", "sum", "mean")
B, T, V = 4, 6, 3000


def _logits_and_targets(seed: int, dtype: torch.dtype = torch.bfloat16) -> tuple[torch.Tensor, torch.Tensor]:
    # Logits of size ~8 over V = 3000: bfloat16 rounds the log-softmax by ~0.03, well above float32's error.
    g = generator(seed)
    logits = (torch.randn(B, T, V, generator=g) * 4).to(dtype).requires_grad_(True)
    targets = torch.randint(0, V, (B, T), generator=g)
    targets[:, -2:] = IGNORE_INDEX
    return logits, targets


def _under_autocast(loss_fn, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss computed under CPU bfloat16 autocast, and its gradient w.r.t. ``logits`` (backward outside)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn(logits)
    upstream = torch.linspace(0.5, 1.5, loss.numel()).reshape(loss.shape)
    (grad,) = torch.autograd.grad((loss * upstream).sum(), logits)
    return loss.detach(), grad


def _assert_same(got: tuple[torch.Tensor, torch.Tensor], want: tuple[torch.Tensor, torch.Tensor]) -> None:
    (value, grad), (want_value, want_grad) = got, want
    assert value.dtype == want_value.dtype == torch.float32
    torch.testing.assert_close(value, want_value)
    assert grad.dtype == want_grad.dtype == torch.bfloat16
    torch.testing.assert_close(grad, want_grad)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str, **kwargs: object) -> torch.Tensor:
    losses = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction=reduction,
                             ignore_index=IGNORE_INDEX, **kwargs)
    return losses.reshape(targets.shape) if reduction == "none" else losses


@pytest.mark.parametrize("with_class_weight", [False, True])
def test_token_nll_under_autocast_is_f_cross_entropy_there(with_class_weight: bool) -> None:
    logits, targets = _logits_and_targets(1)
    weight = torch.rand(V, generator=generator(2)) + 0.5 if with_class_weight else None
    got = _under_autocast(lambda x: token_nll(x, targets, weight=weight), logits)
    want = _under_autocast(lambda x: _cross_entropy(x, targets, "none", weight=weight), logits)
    _assert_same(got, want)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_label_smoothed_nll_under_autocast_is_f_cross_entropy_with_label_smoothing_there(reduction: str) -> None:
    logits, targets = _logits_and_targets(3)
    got = _under_autocast(lambda x: label_smoothed_nll(x, targets, 0.1, reduction=reduction), logits)
    want = _under_autocast(lambda x: _cross_entropy(x, targets, reduction, label_smoothing=0.1), logits)
    _assert_same(got, want)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_confidence_penalty_nll_of_weight_0_under_autocast_is_f_cross_entropy_there(reduction: str) -> None:
    logits, targets = _logits_and_targets(4)
    got = _under_autocast(lambda x: confidence_penalty_nll(x, targets, 0.0, reduction=reduction), logits)
    want = _under_autocast(lambda x: _cross_entropy(x, targets, reduction), logits)
    _assert_same(got, want)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_the_losses_without_an_f_cross_entropy_twin_compute_in_float32_under_autocast(reduction: str) -> None:
    # The fairseq smoothing and a positive confidence weight, against their formulas on
    # F.log_softmax of the float32 logits (outside autocast), the precision F.cross_entropy uses there.
    logits, targets = _logits_and_targets(5)
    counted = targets != IGNORE_INDEX
    epsilon, penalty = 0.1, 0.3

    def formula(per_token: torch.Tensor) -> torch.Tensor:
        per_token = torch.where(counted, per_token, torch.zeros_like(per_token))
        if reduction == "none":
            return per_token
        return per_token.sum() if reduction == "sum" else per_token.sum() / counted.sum()

    def fairseq(x: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(x.float(), dim=-1)
        nll = -log_p.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        spread = epsilon / (V - 1)
        return formula((1 - epsilon - spread) * nll - spread * log_p.sum(-1))

    def confidence(x: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(x.float(), dim=-1)
        nll = -log_p.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return formula(nll + penalty * (log_p.exp() * log_p).sum(-1))

    cases = [
        (lambda x: label_smoothed_nll(x, targets, epsilon, reduction=reduction, variant="fairseq"), fairseq),
        (lambda x: confidence_penalty_nll(x, targets, penalty, reduction=reduction), confidence),
    ]
    for loss_fn, reference in cases:
        value, grad = _under_autocast(loss_fn, logits)
        upstream = torch.linspace(0.5, 1.5, value.numel()).reshape(value.shape)
        want_value = reference(logits)
        (want_grad,) = torch.autograd.grad((want_value * upstream).sum(), logits)
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, want_value.detach())
        torch.testing.assert_close(grad, want_grad)


@pytest.mark.parametrize("upcast", [True, False])
@pytest.mark.parametrize("reduction", ["token_mean", "sum", "none"])
def test_causal_lm_loss_under_autocast_is_f_cross_entropy_of_the_shifted_logits_there(
    reduction: str, upcast: bool
) -> None:
    logits, ids = _logits_and_targets(6)
    ids = ids.clamp(min=0)
    loss_mask = torch.ones_like(ids, dtype=torch.bool)
    loss_mask[:, -2:] = False

    def reference(x: torch.Tensor) -> torch.Tensor:
        labels = ids.masked_fill(~loss_mask, IGNORE_INDEX)[:, 1:]
        per_token = _cross_entropy(x[:, :-1], labels, "none")
        if reduction == "none":
            return per_token.sum(-1)
        return per_token.sum() if reduction == "sum" else per_token.sum() / (labels != IGNORE_INDEX).sum()

    got = _under_autocast(
        lambda x: causal_lm_loss(x, ids, loss_mask=loss_mask, reduction=reduction, upcast=upcast), logits
    )
    _assert_same(got, _under_autocast(reference, logits))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_vocab_parallel_cross_entropy_under_autocast_is_f_cross_entropy_of_the_whole_logits_there(
    reduction: str,
) -> None:
    logits, targets = _logits_and_targets(7)
    got = _under_autocast(
        lambda x: vocab_parallel_cross_entropy([x[..., :1000], x[..., 1000:]], targets, reduction=reduction), logits
    )
    want = _under_autocast(lambda x: _cross_entropy(x, targets, reduction), logits)
    _assert_same(got, want)


def test_float64_logits_stay_float64_under_autocast_as_in_f_cross_entropy() -> None:
    logits, targets = _logits_and_targets(8, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = token_nll(logits, targets)
        want = _cross_entropy(logits, targets, "none")
    assert got.dtype == want.dtype == torch.float64
    torch.testing.assert_close(got, want)


def test_without_autocast_bfloat16_logits_give_bfloat16_losses_as_f_cross_entropy() -> None:
    logits, targets = _logits_and_targets(9)
    got, want = token_nll(logits, targets), _cross_entropy(logits, targets, "none")
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got, want)

