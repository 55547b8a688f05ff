"""Token NLL and its aggregation: checked against F.cross_entropy, NumPy, hand values and gradcheck."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from coursekit.losses import batch_loss, bits_per_token, perplexity, sequence_loss, token_nll
from tests.strategies import (
    IGNORE_INDEX,
    generator,
    gradcheck64,
    loss_settings,
    padded_batches,
    token_loss_batches,
)

pytestmark = [pytest.mark.losses, pytest.mark.a1, pytest.mark.a2]


def _flat_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, **kwargs: object) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), **kwargs)


# --- against PyTorch -------------------------------------------------------------------------------


@loss_settings
@given(padded_batches())
def test_token_nll_matches_cross_entropy_none_with_ignore_index(batch):
    got = token_nll(batch.logits, batch.targets)
    expected = _flat_cross_entropy(batch.logits, batch.targets, reduction="none").reshape(batch.targets.shape)
    assert got.dtype == batch.dtype
    torch.testing.assert_close(got, expected)


@loss_settings
@given(padded_batches(), st.integers(0, 2**31 - 1))
def test_token_nll_with_class_weight_matches_cross_entropy(batch, seed):
    weight = torch.rand(batch.shape[2], generator=generator(seed), dtype=torch.float64).to(batch.dtype) + 0.1
    got = token_nll(batch.logits, batch.targets, weight=weight)
    expected = _flat_cross_entropy(batch.logits, batch.targets, reduction="none", weight=weight)
    torch.testing.assert_close(got, expected.reshape(batch.targets.shape))


@loss_settings
@given(padded_batches(require_one_token=True))
def test_batch_token_mean_matches_cross_entropy_mean(batch):
    got = batch_loss(token_nll(batch.logits, batch.targets), batch.mask, reduction="token_mean")
    torch.testing.assert_close(got, _flat_cross_entropy(batch.logits, batch.targets))
    got_sum = batch_loss(token_nll(batch.logits, batch.targets), batch.mask, reduction="sum")
    torch.testing.assert_close(got_sum, _flat_cross_entropy(batch.logits, batch.targets, reduction="sum"))


@loss_settings
@given(padded_batches(require_one_token=True), st.integers(0, 2**31 - 1))
def test_batch_token_mean_with_token_weights_matches_weighted_cross_entropy(batch, seed):
    weight = torch.rand(batch.shape[2], generator=generator(seed), dtype=torch.float64).to(batch.dtype) + 0.1
    token_weights = weight[batch.targets.clamp_min(0)]
    got = batch_loss(token_nll(batch.logits, batch.targets), batch.mask, token_weights=token_weights)
    expected = _flat_cross_entropy(batch.logits, batch.targets, weight=weight)
    torch.testing.assert_close(got, expected)


def test_token_nll_is_stable_for_huge_logits():
    logits = torch.tensor([[1000.0, 0.0, -1000.0]])
    got = token_nll(logits, torch.tensor([1]))
    torch.testing.assert_close(got, torch.tensor([1000.0]))


# --- against NumPy and properties ------------------------------------------------------------------


def _numpy_reductions(losses: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    kept = np.where(mask, losses, 0.0)
    counts = mask.sum(axis=-1)
    sums = kept.sum(axis=-1)
    nonempty = counts > 0
    return {
        "sum": float(kept.sum()),
        "token_mean": float(kept.sum() / mask.sum()),
        "sequence_mean": float(np.mean(sums[nonempty] / counts[nonempty])),
    }


@loss_settings
@given(token_loss_batches(allow_empty_rows=True))
def test_batch_reductions_match_numpy(losses_and_mask):
    losses, mask = losses_and_mask
    if not bool(mask.any()):
        mask[0, 0] = True
    expected = _numpy_reductions(losses.double().numpy(), mask.numpy())
    for reduction, value in expected.items():
        got = batch_loss(losses, mask, reduction=reduction)
        assert got.dtype == losses.dtype
        assert got.item() == pytest.approx(value, rel=1e-5, abs=1e-6), reduction


@loss_settings
@given(token_loss_batches())
def test_sum_equals_token_mean_times_count(losses_and_mask):
    losses, mask = losses_and_mask
    if not bool(mask.any()):
        return
    total = batch_loss(losses, mask, reduction="sum")
    mean = batch_loss(losses, mask, reduction="token_mean")
    torch.testing.assert_close(total, mean * mask.sum().to(losses.dtype))


@loss_settings
@given(token_loss_batches())
def test_sequence_mean_is_mean_of_per_sequence_means(losses_and_mask):
    losses, mask = losses_and_mask
    if not bool(mask.any()):
        return
    per_sequence = sequence_loss(losses, mask, reduction="mean")
    nonempty = mask.any(dim=-1)
    torch.testing.assert_close(batch_loss(losses, mask, reduction="sequence_mean"), per_sequence[nonempty].mean())


@loss_settings
@given(token_loss_batches())
def test_repeating_a_sequence_doubles_its_sum_and_keeps_its_mean(losses_and_mask):
    losses, mask = losses_and_mask
    lengths = mask.sum(dim=-1)
    # Repeat each row's real tokens after themselves: (l_1..l_n, l_1..l_n), then pad.
    doubled = torch.zeros(losses.shape[0], 2 * losses.shape[1], dtype=losses.dtype)
    doubled_mask = torch.zeros(doubled.shape, dtype=torch.bool)
    for b, n in enumerate(lengths.tolist()):
        doubled[b, : 2 * n] = losses[b, :n].repeat(2)
        doubled_mask[b, : 2 * n] = True
    torch.testing.assert_close(
        sequence_loss(doubled, doubled_mask, reduction="sum"), 2 * sequence_loss(losses, mask, reduction="sum")
    )
    nonempty = lengths > 0
    torch.testing.assert_close(
        sequence_loss(doubled, doubled_mask, reduction="mean")[nonempty],
        sequence_loss(losses, mask, reduction="mean")[nonempty],
    )


@loss_settings
@given(padded_batches(require_one_token=True), st.sampled_from(["token_mean", "sequence_mean", "sum"]))
def test_masked_content_never_changes_loss_or_gradient(batch, reduction):
    def loss_and_grad(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = logits.clone().requires_grad_(True)
        value = batch_loss(token_nll(logits, targets), batch.mask, reduction=reduction)
        (grad,) = torch.autograd.grad(value, logits)
        return value.detach(), grad

    other = torch.where(batch.mask.unsqueeze(-1), batch.logits, batch.logits * 5 + 7)
    value_a, grad_a = loss_and_grad(batch.logits, batch.targets)
    value_b, grad_b = loss_and_grad(other, batch.targets)
    torch.testing.assert_close(value_a, value_b)
    torch.testing.assert_close(grad_a, grad_b)
    assert bool((grad_a[~batch.mask] == 0).all())


def test_masked_nan_losses_do_not_leak_into_batch_loss():
    losses = torch.tensor([[1.0, float("nan")], [2.0, float("inf")]], requires_grad=True)
    mask = torch.tensor([[True, False], [True, False]])
    value = batch_loss(losses, mask, reduction="token_mean")
    value.backward()
    assert value.item() == pytest.approx(1.5)
    torch.testing.assert_close(losses.grad, torch.tensor([[0.5, 0.0], [0.5, 0.0]]))


# --- values anyone can check by hand ---------------------------------------------------------------


def test_fox_step_losses_sum_and_mean():
    fox = torch.tensor([0.1, 0.3, 0.2, 0.4])
    assert sequence_loss(fox, reduction="sum").item() == pytest.approx(1.0)
    assert sequence_loss(fox, reduction="mean").item() == pytest.approx(0.25)


def test_halving_probabilities_give_six_ln2_two_bits_perplexity_four():
    log_probs = torch.log(torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.125, 0.875, 0.0, 0.0]]))
    losses = token_nll(log_probs, torch.tensor([0, 1, 0]))
    total = sequence_loss(losses, reduction="sum")
    mean = sequence_loss(losses, reduction="mean")
    assert total.item() == pytest.approx(4.158883, abs=1e-6)
    assert total.item() == pytest.approx(6 * math.log(2))
    assert mean.item() == pytest.approx(1.386294, abs=1e-6)
    assert bits_per_token(mean).item() == pytest.approx(2.0)
    assert perplexity(mean).item() == pytest.approx(4.0)


def test_uniform_logits_over_ten_classes():
    losses = token_nll(torch.zeros(3, 5, 10), torch.randint(0, 10, (3, 5), generator=generator(0)))
    mean = batch_loss(losses)
    assert mean.item() == pytest.approx(2.302585, abs=1e-6)
    assert perplexity(mean).item() == pytest.approx(10.0, rel=1e-6)
    assert perplexity(2.302585092994046).item() == pytest.approx(10.0)


def test_padded_batch_token_mean_sequence_mean_and_sum():
    losses = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 3.0, 99.0, 99.0]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    assert batch_loss(losses, mask, reduction="token_mean").item() == pytest.approx(1.666667, abs=1e-6)
    assert batch_loss(losses, mask, reduction="sequence_mean").item() == pytest.approx(2.0)
    assert batch_loss(losses, mask, reduction="sum").item() == pytest.approx(10.0)


def test_gradient_accumulation_must_sum_then_divide_by_total_count():
    micro_1 = torch.tensor([[2.0, 2.0]])
    micro_2 = torch.ones(1, 8)
    full = torch.cat([torch.cat([micro_1, torch.zeros(1, 6)], dim=1), micro_2])
    full_mask = torch.tensor([[True] * 2 + [False] * 6, [True] * 8])
    assert batch_loss(full, full_mask).item() == pytest.approx(1.2)
    mean_of_means = (batch_loss(micro_1) + batch_loss(micro_2)) / 2
    assert mean_of_means.item() == pytest.approx(1.5)
    summed = (batch_loss(micro_1, reduction="sum") + batch_loss(micro_2, reduction="sum")) / 10
    assert summed.item() == pytest.approx(1.2)


# --- degenerate cases ------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["token_mean", "sequence_mean"])
def test_all_masked_batch_gives_zero_with_warning_and_zero_gradient(reduction):
    losses = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    mask = torch.zeros(2, 2, dtype=torch.bool)
    with pytest.warns(RuntimeWarning, match="every token is masked"):
        value = batch_loss(losses, mask, reduction=reduction)
    assert value.item() == 0.0
    value.backward()
    torch.testing.assert_close(losses.grad, torch.zeros(2, 2))


@pytest.mark.parametrize("reduction", ["token_mean", "sequence_mean"])
def test_a_batch_whose_counted_tokens_all_weigh_zero_gives_zero_with_warning(reduction):
    """Losses review (stop 41): it gave 0 silently, where F.cross_entropy with all-zero class weights gives nan."""
    logits = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    targets = torch.tensor([[0, 1, 2], [1, 1, 0]])
    class_weights = torch.zeros(4)
    assert math.isnan(F.cross_entropy(logits.reshape(-1, 4), targets.reshape(-1), weight=class_weights).item())
    with pytest.warns(RuntimeWarning, match="every counted token weighs 0; returning 0"):
        value = batch_loss(token_nll(logits, targets), reduction=reduction, token_weights=class_weights[targets])
    assert value.item() == 0.0
    value.backward()
    torch.testing.assert_close(logits.grad, torch.zeros_like(logits))
    with warnings.catch_warnings():  # one counted token of weight > 0 is a batch like any other
        warnings.simplefilter("error")
        batch_loss(token_nll(logits, targets), reduction=reduction, token_weights=torch.eye(4)[1][targets])

def test_all_masked_batch_sum_is_zero_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = batch_loss(torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool), reduction="sum")
    assert value.item() == 0.0


def test_empty_sequence_is_excluded_from_sequence_mean():
    losses = torch.tensor([[2.0, 4.0], [7.0, 7.0]])
    mask = torch.tensor([[True, True], [False, False]])
    assert batch_loss(losses, mask, reduction="sequence_mean").item() == pytest.approx(3.0)
    per_sequence = sequence_loss(losses, mask, reduction="mean")
    assert per_sequence[0].item() == pytest.approx(3.0)
    assert math.isnan(per_sequence[1].item())
    assert sequence_loss(losses, mask, reduction="sum")[1].item() == 0.0


def test_cross_entropy_mean_over_all_ignored_is_nan_like_pytorch():
    logits = torch.zeros(2, 3)
    targets = torch.full((2,), IGNORE_INDEX)
    assert math.isnan(F.cross_entropy(logits, targets).item())
    torch.testing.assert_close(token_nll(logits, targets), torch.zeros(2))


# --- gradcheck -------------------------------------------------------------------------------------


def test_gradcheck_token_nll():
    logits = torch.randn(2, 3, 4, generator=generator(1), dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[0, 3, IGNORE_INDEX], [1, 2, 2]])
    weight = torch.rand(4, generator=generator(2), dtype=torch.float64, requires_grad=True)
    assert gradcheck64(lambda z: token_nll(z, targets), (logits,))
    assert gradcheck64(lambda z, w: token_nll(z, targets, weight=w), (logits, weight))


@pytest.mark.parametrize("reduction", ["token_mean", "sequence_mean", "sum"])
def test_gradcheck_batch_loss(reduction):
    losses = torch.rand(3, 4, generator=generator(3), dtype=torch.float64, requires_grad=True)
    weights = torch.rand(3, 4, generator=generator(4), dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, False, False], [True] * 4, [False] * 4])
    assert gradcheck64(lambda x: batch_loss(x, mask, reduction=reduction), (losses,))
    assert gradcheck64(
        lambda x, w: batch_loss(x, mask, reduction=reduction, token_weights=w), (losses, weights)
    )


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_gradcheck_sequence_loss(reduction):
    losses = torch.rand(2, 5, generator=generator(5), dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    assert gradcheck64(lambda x: sequence_loss(x, mask, reduction=reduction), (losses,))


def test_gradcheck_perplexity_and_bits():
    nll = torch.tensor([0.3, 1.7], dtype=torch.float64, requires_grad=True)
    assert gradcheck64(perplexity, (nll,))
    assert gradcheck64(bits_per_token, (nll,))


def test_smallest_shapes_b1_t1_v2_match_cross_entropy():
    logits = torch.tensor([[[0.3, -1.2]]], dtype=torch.float64)
    for target in (0, 1, IGNORE_INDEX):
        targets = torch.tensor([[target]])
        expected = F.cross_entropy(logits.reshape(1, 2), targets.reshape(1), reduction="none").reshape(1, 1)
        torch.testing.assert_close(token_nll(logits, targets), expected)
    assert token_nll(logits, torch.tensor([[1]])).item() == pytest.approx(math.log1p(math.exp(1.5)))


def test_sequence_mean_leaves_out_a_sequence_whose_counted_tokens_all_weigh_zero():
    # The docstring's formula: counts become sums of weights, and only sequences with a positive count are averaged.
    losses = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    zero = batch_loss(losses, mask, reduction="sequence_mean", token_weights=torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert zero.item() == pytest.approx(1.0)
    tiny = batch_loss(losses, mask, reduction="sequence_mean", token_weights=torch.tensor([[1.0, 1.0], [1e-30, 1e-30]]))
    assert tiny.item() == pytest.approx(1.5)


def test_token_nll_refuses_an_empty_vocabulary_naming_logits() -> None:
    # Every target ignored, yet V = 0 leaves nothing to normalise: the gather failed with an unnamed index error.
    with pytest.raises(ValueError, match=r"^logits must have shape \(\.\.\., V\) with V >= 1, got shape \(2, 0\)$"):
        token_nll(torch.zeros(2, 0), torch.full((2,), IGNORE_INDEX))


@pytest.mark.parametrize(("length", "sequence_mean_is_finite"), [(65519, True), (65520, False)])
def test_float16_rows_summing_to_65520_make_sequence_mean_inf_but_not_sequence_loss_mean(length, sequence_mean_is_finite):
    # The sentence both docstrings carry: batch_loss sums each row in float16 (as TRL's GRPO line does),
    # sequence_loss's mean in float32; 65520 is where float16 rounds to inf.
    losses = torch.ones(2, length, dtype=torch.float16)
    assert sequence_loss(losses, reduction="mean").tolist() == [1.0, 1.0]
    assert bool(torch.isfinite(batch_loss(losses, reduction="sequence_mean"))) is sequence_mean_is_finite
