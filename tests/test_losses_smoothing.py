"""label_smoothed_nll: "pytorch" against F.cross_entropy(label_smoothing=), "fairseq" against NumPy; the deprecated "fairseq_legacy" spelling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from coursekit.losses import label_smoothed_nll, token_nll
from tests.strategies import IGNORE_INDEX, generator, gradcheck64, loss_settings, padded_batches

pytestmark = [pytest.mark.losses, pytest.mark.a4]

epsilons = st.sampled_from([0.0, 0.1, 0.37, 0.9, 0.999])
reductions = st.sampled_from(["none", "sum", "mean"])


def _fairseq_numpy(logits: np.ndarray, targets: np.ndarray, epsilon: float, ignore_index: int) -> np.ndarray:
    """Per-token loss with target distribution q_y = 1 - eps, q_k = eps / (V - 1) otherwise, by the definition."""
    v = logits.shape[-1]
    z = logits - logits.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    valid = targets != ignore_index
    q = np.full(log_p.shape, epsilon / (v - 1))
    np.put_along_axis(q, np.where(valid, targets, 0)[..., None], 1.0 - epsilon, axis=-1)
    return np.where(valid, -(q * log_p).sum(axis=-1), 0.0)


@loss_settings
@given(padded_batches(), epsilons, reductions)
def test_pytorch_variant_matches_cross_entropy_label_smoothing(batch, epsilon, reduction):
    flat_logits = batch.logits.reshape(-1, batch.shape[2])
    expected = F.cross_entropy(flat_logits, batch.targets.reshape(-1), label_smoothing=epsilon, reduction=reduction)
    got = label_smoothed_nll(batch.logits, batch.targets, epsilon, reduction=reduction)
    if reduction == "none":
        expected = expected.reshape(batch.targets.shape)
    assert got.dtype == batch.dtype
    torch.testing.assert_close(got, expected, equal_nan=True)


@loss_settings
@given(padded_batches(), epsilons, reductions)
def test_fairseq_variant_matches_numpy_definition(batch, epsilon, reduction):
    per_token = _fairseq_numpy(batch.logits.double().numpy(), batch.targets.numpy(), epsilon, IGNORE_INDEX)
    count = int(batch.mask.sum())
    got = label_smoothed_nll(batch.logits, batch.targets, epsilon, reduction=reduction, variant="fairseq")
    if reduction == "none":
        np.testing.assert_allclose(got.double().numpy(), per_token, rtol=1e-5, atol=1e-5)
    elif reduction == "sum":
        assert got.item() == pytest.approx(per_token.sum(), rel=1e-5, abs=1e-5)
    elif count == 0:
        assert math.isnan(got.item())
    else:
        assert got.item() == pytest.approx(per_token.sum() / count, rel=1e-5, abs=1e-5)


@loss_settings
@given(padded_batches(), st.sampled_from(["pytorch", "fairseq"]))
def test_zero_epsilon_is_the_plain_nll(batch, variant):
    got = label_smoothed_nll(batch.logits, batch.targets, 0.0, reduction="none", variant=variant)
    torch.testing.assert_close(got, token_nll(batch.logits, batch.targets))


@loss_settings
@given(padded_batches(require_one_token=True), epsilons)
def test_custom_ignore_index_matches_cross_entropy(batch, epsilon):
    targets = batch.targets.masked_fill(~batch.mask, 1)
    expected = F.cross_entropy(
        batch.logits.reshape(-1, batch.shape[2]), targets.reshape(-1), label_smoothing=epsilon, ignore_index=1
    )
    got = label_smoothed_nll(batch.logits, targets, epsilon, ignore_index=1)
    torch.testing.assert_close(got, expected, equal_nan=True)


def test_hand_values_for_both_variants():
    logits = torch.tensor([[2.0, 0.0, 0.0]], dtype=torch.float64)
    log_p = torch.log_softmax(logits, dim=-1)[0]
    pytorch = -(0.7 * log_p[0] + 0.1 * log_p[0] + 0.1 * log_p[1] + 0.1 * log_p[2])
    fairseq = -(0.7 * log_p[0] + 0.15 * log_p[1] + 0.15 * log_p[2])
    assert label_smoothed_nll(logits, torch.tensor([0]), 0.3).item() == pytest.approx(pytorch.item())
    assert label_smoothed_nll(logits, torch.tensor([0]), 0.3, variant="fairseq").item() == pytest.approx(
        fairseq.item()
    )
    assert pytorch.item() == pytest.approx(0.63954, abs=1e-5)


def test_uniform_model_loses_ln_v_whatever_the_smoothing():
    for variant in ("pytorch", "fairseq"):
        value = label_smoothed_nll(torch.zeros(4, 10), torch.tensor([0, 3, 9, 5]), 0.2, variant=variant)
        assert value.item() == pytest.approx(2.302585, abs=1e-6)


def test_all_ignored_mean_is_nan_like_pytorch_and_sum_is_zero():
    logits = torch.randn(3, 4, generator=generator(0))
    targets = torch.full((3,), IGNORE_INDEX)
    assert math.isnan(F.cross_entropy(logits, targets, label_smoothing=0.1).item())
    assert math.isnan(label_smoothed_nll(logits, targets, 0.1).item())
    assert label_smoothed_nll(logits, targets, 0.1, reduction="sum").item() == 0.0


def test_ignored_positions_never_change_loss_or_gradient():
    logits = torch.randn(2, 3, 5, generator=generator(1), dtype=torch.float64)
    targets = torch.tensor([[1, 4, IGNORE_INDEX], [IGNORE_INDEX, 0, 2]])
    ignored = (targets == IGNORE_INDEX).unsqueeze(-1)
    other = torch.where(ignored, logits * 3 - 8, logits)
    results = []
    for z in (logits, other):
        z = z.clone().requires_grad_(True)
        value = label_smoothed_nll(z, targets, 0.2)
        (grad,) = torch.autograd.grad(value, z)
        results.append((value, grad))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
    assert bool((results[0][1][ignored.expand_as(logits)] == 0).all())


@pytest.mark.parametrize("variant", ["pytorch", "fairseq"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_gradcheck_label_smoothed_nll(variant, reduction):
    logits = torch.randn(2, 3, 4, generator=generator(2), dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[0, 3, IGNORE_INDEX], [1, 2, 2]])
    assert gradcheck64(
        lambda z: label_smoothed_nll(z, targets, 0.25, reduction=reduction, variant=variant), (logits,)
    )


def test_fairseq_legacy_is_a_deprecated_spelling_of_fairseq_that_names_the_new_one():
    logits = torch.randn(3, 5, generator=generator(3), dtype=torch.float64)
    targets = torch.tensor([0, 4, IGNORE_INDEX])
    with pytest.warns(FutureWarning, match=r"variant='fairseq_legacy'\) is deprecated.*variant='fairseq'"):
        old = label_smoothed_nll(logits, targets, 0.2, variant="fairseq_legacy", reduction="none")
    torch.testing.assert_close(old, label_smoothed_nll(logits, targets, 0.2, variant="fairseq", reduction="none"))


def test_the_two_variants_are_one_epsilon_apart():
    # epsilon/(V-1) on the other classes equals epsilon' / V on all, with epsilon' = epsilon * V / (V - 1).
    logits = torch.randn(4, 6, generator=generator(4), dtype=torch.float64)
    targets = torch.tensor([0, 5, 2, 2])
    v, epsilon = 6, 0.3
    fairseq = label_smoothed_nll(logits, targets, epsilon, variant="fairseq", reduction="none")
    pytorch = label_smoothed_nll(logits, targets, epsilon * v / (v - 1), variant="pytorch", reduction="none")
    torch.testing.assert_close(fairseq, pytorch)


def _logits_with_a_masked_entry(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 logits (4, 6) whose column 5 is -inf (a masked vocabulary entry), targets never 5."""
    logits = torch.randn(4, 6, generator=generator(seed), dtype=torch.float64)
    logits[:, 5] = -math.inf
    return logits, torch.tensor([0, 3, IGNORE_INDEX, 4])


@pytest.mark.parametrize("variant", ["pytorch", "fairseq"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_zero_epsilon_with_a_minus_infinity_logit_is_cross_entropy_in_value_and_gradient(variant, reduction):
    # 0 * (sum of log-probabilities = -inf) must not turn the plain NLL into nan.
    logits, targets = _logits_with_a_masked_entry(11)
    expected_logits = logits.clone().requires_grad_(True)
    expected = F.cross_entropy(expected_logits, targets, reduction=reduction)
    (expected_grad,) = torch.autograd.grad(expected.sum(), expected_logits)
    got_logits = logits.clone().requires_grad_(True)
    got = label_smoothed_nll(got_logits, targets, 0.0, variant=variant, reduction=reduction)
    (got_grad,) = torch.autograd.grad(got.sum(), got_logits)
    assert bool(torch.isfinite(got).all()) and bool(torch.isfinite(got_grad).all())
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_grad, expected_grad)


@pytest.mark.parametrize("variant", ["pytorch", "fairseq"])
def test_gradcheck_zero_epsilon_through_a_minus_infinity_logit(variant):
    logits, targets = _logits_with_a_masked_entry(12)
    finite = logits[:, :5].clone().requires_grad_(True)
    masked = torch.full((4, 1), -math.inf, dtype=torch.float64)
    assert gradcheck64(
        lambda z: label_smoothed_nll(torch.cat([z, masked], dim=-1), targets, 0.0, variant=variant), (finite,)
    )


def test_fairseq_variant_is_tensor2tensors_value_plus_the_entropy_of_the_smoothed_target():
    # tensor2tensor's smoothing_cross_entropy (common_layers.py) puts 1 - eps on the target and
    # eps / (V - 1) elsewhere, as fairseq, and subtracts the constant
    # normalizing = -(c log c + (V - 1) l log(l + 1e-20)), c = 1 - eps, l = eps / (V - 1): the entropy
    # of that target. Same gradient, value lower by the constant (the docstring says so).
    epsilon, vocab = 0.1, 7
    logits = torch.randn(5, vocab, generator=generator(13), dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 6, 2, 2, 5])
    confidence, low = 1.0 - epsilon, epsilon / (vocab - 1)
    soft = torch.full((5, vocab), low, dtype=torch.float64).scatter(1, targets.unsqueeze(1), confidence)
    normalizing = -(confidence * math.log(confidence) + (vocab - 1) * low * math.log(low + 1e-20))
    t2t = F.cross_entropy(logits, soft, reduction="none") - normalizing
    ours = label_smoothed_nll(logits, targets, epsilon, variant="fairseq", reduction="none")
    torch.testing.assert_close(ours - t2t, torch.full_like(ours, normalizing))
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), logits)[0], torch.autograd.grad(t2t.sum(), logits)[0])
    doc = label_smoothed_nll.__doc__
    assert "subtracts" in doc and "entropy" in doc, "the docstring must say tensor2tensor subtracts the entropy"


@pytest.mark.parametrize("variant", ["pytorch", "fairseq"])
def test_label_smoothed_nll_refuses_an_empty_vocabulary_naming_logits(variant: str) -> None:
    # V = 0 with every target ignored: the gather failed with an unnamed index error.
    with pytest.raises(ValueError, match=r"^logits must have shape \(\.\.\., V\) with V >= 1, got shape \(2, 0\)$"):
        label_smoothed_nll(torch.zeros(2, 0), torch.full((2,), IGNORE_INDEX), 0.1, variant=variant)


@pytest.mark.ecosystem
def test_transformers_label_smoother_is_the_pytorch_variant_with_the_dtypes_the_docstring_states():
    """Losses review (stop 41): transformers' LabelSmoother, called as it is, against the docstring's account."""
    from transformers.trainer_pt_utils import LabelSmoother

    smoother = LabelSmoother(epsilon=0.1)
    logits = torch.randn(2, 5, 11, generator=generator(71)) * 3
    labels = torch.tensor([[1, 2, IGNORE_INDEX, 4, 5], [IGNORE_INDEX, 7, 8, 9, 10]])
    mean = label_smoothed_nll(logits, labels, 0.1)
    torch.testing.assert_close(smoother({"logits": logits}, labels), mean)
    total = label_smoothed_nll(logits, labels, 0.1, reduction="sum")
    torch.testing.assert_close(smoother({"logits": logits}, labels, num_items_in_batch=7), total / 7)
    shifted = label_smoothed_nll(logits[:, :-1], labels[:, 1:], 0.1)
    torch.testing.assert_close(smoother({"logits": logits}, labels, shift_labels=True), shifted)
    # half precision: a float32 result there, the logits' dtype here
    half = logits.to(torch.bfloat16)
    assert smoother({"logits": half}, labels).dtype == torch.float32
    assert label_smoothed_nll(half, labels, 0.1).dtype == torch.bfloat16
    # float64: the smoothing term rounded to float32 there, not here
    wide = logits.double() + 1e-3 * torch.rand(logits.shape, generator=generator(72), dtype=torch.float64)
    exact = label_smoothed_nll(wide, labels, 0.1)
    theirs = smoother({"logits": wide}, labels)
    assert exact.dtype == theirs.dtype == torch.float64
    assert 0 < abs((theirs - exact).item()) < 1e-6


@pytest.mark.ecosystem
def test_float16_smoothing_of_a_large_vocabulary_is_inf_as_in_pytorch_and_finite_in_label_smoother():
    """Losses API review (stop 44): the smoothing term, at least V ln V, passes float16's range from V of about 7,000."""
    from transformers.trainer_pt_utils import LabelSmoother

    targets = torch.tensor([1, 2, 3, 4])
    small = (torch.randn(4, 5000, generator=generator(73))).to(torch.float16)
    assert torch.isfinite(label_smoothed_nll(small, targets, 0.1, reduction="none")).all()
    large = (torch.randn(4, 8000, generator=generator(74))).to(torch.float16)
    ours = label_smoothed_nll(large, targets, 0.1, reduction="none")
    assert torch.isinf(ours).all() and torch.isinf(F.cross_entropy(large, targets, label_smoothing=0.1, reduction="none")).all()
    theirs = LabelSmoother(epsilon=0.1)({"logits": large}, targets)
    exact = label_smoothed_nll(large.double(), targets, 0.1)
    assert torch.isfinite(theirs) and abs(theirs.item() - exact.item()) < 0.05


def test_pytorch_float16_mean_of_65520_tokens_is_0_without_smoothing_and_inf_with_it():
    """The Returns paragraph of label_smoothed_nll: PyTorch's CPU kernel counts in float16."""
    logits = torch.zeros(65520, 4, dtype=torch.float16)
    logits[:, 0] = 8.0
    targets = torch.zeros(65520, dtype=torch.long)
    assert F.cross_entropy(logits, targets).item() == 0.0
    assert torch.isinf(F.cross_entropy(logits, targets, label_smoothing=0.1))
    for epsilon in (0.0, 0.1):
        ours = label_smoothed_nll(logits, targets, epsilon)
        assert torch.isfinite(ours) and ours.item() > 0
