"""kd_loss and kd_cross_entropy: against F.kl_div and soft-target F.cross_entropy, properties, gradcheck."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from coursekit.losses import kd_cross_entropy, kd_loss
from tests.strategies import generator, gradcheck64, loss_settings, padded_batches, random_logits

pytestmark = [pytest.mark.losses, pytest.mark.a4]

temperatures = st.sampled_from([0.5, 1.0, 2.0, 4.0])


@st.composite
def teacher_for(draw: st.DrawFn, student: torch.Tensor) -> torch.Tensor:
    return random_logits(tuple(student.shape), seed=draw(st.integers(0, 2**31 - 1)), dtype=student.dtype)


@loss_settings
@given(padded_batches(max_batch=1), temperatures, st.data())
def test_kd_loss_on_2d_input_matches_kl_div_batchmean_times_t_squared(batch, temperature, data):
    student = batch.logits[0]  # (N, V)
    teacher = data.draw(teacher_for(student))
    expected = (
        F.kl_div(
            F.log_softmax(student / temperature, dim=-1),
            F.log_softmax(teacher / temperature, dim=-1),
            log_target=True,
            reduction="batchmean",
        )
        * temperature**2
    )
    got = kd_loss(student, teacher, temperature=temperature)
    assert got.dtype == student.dtype
    torch.testing.assert_close(got, expected)


@loss_settings
@given(padded_batches(), temperatures, st.sampled_from(["token_mean", "sequence_mean", "sum", "none"]), st.data())
def test_kd_loss_with_mask_matches_kl_div_per_position(batch, temperature, reduction, data):
    teacher = data.draw(teacher_for(batch.logits))
    per_position = (
        F.kl_div(
            F.log_softmax(batch.logits / temperature, dim=-1),
            F.log_softmax(teacher / temperature, dim=-1),
            log_target=True,
            reduction="none",
        ).sum(dim=-1)
        * temperature**2
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = kd_loss(batch.logits, teacher, temperature=temperature, mask=batch.mask, reduction=reduction)
    # The reductions written out here, not taken from batch_loss (losses review, stop 41): empty means are 0.
    kept = torch.where(batch.mask, per_position, torch.zeros_like(per_position))
    counts = batch.mask.sum(dim=-1)
    if reduction == "none":
        expected = kept
    elif reduction == "sum":
        expected = kept.sum()
    elif reduction == "token_mean":
        expected = kept.sum() / counts.sum().clamp(min=1)
    else:
        rows = counts > 0
        expected = (kept.sum(dim=-1)[rows] / counts[rows]).sum() / rows.sum().clamp(min=1)
    torch.testing.assert_close(got, expected.to(got.dtype))


@loss_settings
@given(padded_batches(), temperatures, st.data())
def test_kd_cross_entropy_matches_soft_target_cross_entropy(batch, temperature, data):
    teacher = data.draw(teacher_for(batch.logits))
    v = batch.shape[2]
    expected = F.cross_entropy(
        (batch.logits / temperature).reshape(-1, v),
        F.softmax(teacher / temperature, dim=-1).reshape(-1, v),
        reduction="none",
    ).reshape(batch.mask.shape)
    got = kd_cross_entropy(batch.logits, teacher, temperature=temperature, mask=batch.mask, reduction="none")
    torch.testing.assert_close(got, torch.where(batch.mask, expected, torch.zeros_like(expected)))


@loss_settings
@given(padded_batches(require_one_token=True), temperatures, st.data())
def test_cross_entropy_is_kl_over_t_squared_plus_teacher_entropy_with_same_student_gradient(batch, temperature, data):
    teacher = data.draw(teacher_for(batch.logits)).double()
    student = batch.logits.double().requires_grad_(True)
    kl = kd_loss(student, teacher, temperature=temperature, mask=batch.mask, reduction="none")
    ce = kd_cross_entropy(student, teacher, temperature=temperature, mask=batch.mask, reduction="none")
    p = F.softmax(teacher / temperature, dim=-1)
    entropy = -(p * F.log_softmax(teacher / temperature, dim=-1)).sum(dim=-1)
    torch.testing.assert_close(ce, torch.where(batch.mask, kl / temperature**2 + entropy, torch.zeros_like(ce)))
    (grad_kl,) = torch.autograd.grad(kl.sum() / temperature**2, student)
    (grad_ce,) = torch.autograd.grad(ce.sum(), student)
    torch.testing.assert_close(grad_kl, grad_ce)


@loss_settings
@given(padded_batches(), temperatures)
def test_kd_loss_is_zero_for_a_perfect_student(batch, temperature):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = kd_loss(batch.logits, batch.logits.clone(), temperature=temperature, mask=batch.mask)
    assert abs(value.item()) < 1e-5


@loss_settings
@given(padded_batches(require_one_token=True), st.sampled_from([kd_loss, kd_cross_entropy]), st.data())
def test_masked_positions_never_change_loss_or_gradient(batch, loss_fn, data):
    teacher = data.draw(teacher_for(batch.logits))
    keep = batch.mask.unsqueeze(-1)
    nan = torch.full_like(batch.logits, float("nan"))
    results = []
    for student_in, teacher_in in ((batch.logits, teacher), (torch.where(keep, batch.logits, nan), torch.where(keep, teacher, nan))):
        student_in = student_in.clone().requires_grad_(True)
        teacher_in = teacher_in.clone().requires_grad_(True)
        value = loss_fn(student_in, teacher_in, temperature=2.0, mask=batch.mask, reduction="sum")
        results.append((value.detach(), *torch.autograd.grad(value, (student_in, teacher_in))))
    for a, b in zip(results[0], results[1]):
        torch.testing.assert_close(a, b)


def test_hand_value_and_temperature_scaling():
    teacher = torch.tensor([[2.0, 0.0, 0.0]], dtype=torch.float64)
    p = torch.softmax(teacher, dim=-1)[0]
    expected = float((p * torch.log(p * 3)).sum())  # KL(p || uniform over 3)
    assert kd_loss(torch.zeros(1, 3, dtype=torch.float64), teacher).item() == pytest.approx(expected)
    p2 = torch.softmax(teacher / 2, dim=-1)[0]
    expected2 = 4 * float((p2 * torch.log(p2 * 3)).sum())
    assert kd_loss(torch.zeros(1, 3, dtype=torch.float64), teacher, temperature=2.0).item() == pytest.approx(expected2)


def test_teacher_with_impossible_classes_gives_finite_loss():
    teacher = torch.tensor([[0.0, float("-inf"), 1.0]])
    student = torch.tensor([[0.5, 0.2, -0.3]])
    value = kd_loss(student, teacher)
    expected = F.kl_div(F.log_softmax(student, -1), F.softmax(teacher, -1), reduction="batchmean")
    torch.testing.assert_close(value, expected)


def test_one_dimensional_input_is_a_single_position():
    student, teacher = torch.tensor([0.1, 0.4, -1.0]), torch.tensor([1.0, 0.0, 0.0])
    assert kd_loss(student, teacher, reduction="none").shape == ()
    torch.testing.assert_close(kd_loss(student, teacher), kd_loss(student[None], teacher[None]))


@pytest.mark.parametrize("loss_fn", [kd_loss, kd_cross_entropy])
@pytest.mark.parametrize("reduction", ["token_mean", "sequence_mean", "sum", "none"])
def test_gradcheck_distillation(loss_fn, reduction):
    student = torch.randn(2, 3, 4, generator=generator(0), dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(2, 3, 4, generator=generator(1), dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert gradcheck64(
        lambda s, t: loss_fn(s, t, temperature=1.5, mask=mask, reduction=reduction), (student, teacher)
    )


# --- masked vocabulary entries (teacher logit -inf): value and gradient ------------------------------


def _with_masked_vocabulary(seed: int):
    g = generator(seed)
    student = torch.randn(2, 3, 6, generator=g, dtype=torch.float64) * 2
    teacher = torch.randn(2, 3, 6, generator=g, dtype=torch.float64) * 2
    banned = torch.rand(2, 3, 6, generator=g) < 0.3
    banned[..., 0] = False  # every position keeps some mass
    return student, teacher.masked_fill(banned, float("-inf")), banned


def _independent_sum(loss, student, teacher, temperature):
    """The summed loss written with PyTorch's ops alone (no coursekit code)."""
    student_log_probs = F.log_softmax(student / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher / temperature, dim=-1)
    if loss is kd_loss:
        return F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="sum") * temperature**2
    return -(teacher_log_probs.exp() * student_log_probs).sum()


@pytest.mark.parametrize("loss", [kd_loss, kd_cross_entropy])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_teacher_logits_of_minus_infinity_give_the_true_value_and_gradient(loss, seed):
    # Reference, computed with PyTorch's ops only: the same entries at -1e4 instead of -inf, where exp
    # underflows to exactly 0 in float64 but every operation stays finite, so autograd's answer there is
    # the derivative itself.
    student, teacher, banned = _with_masked_vocabulary(seed)
    finite_teacher = teacher.masked_fill(banned, -1e4)
    s_, t_ = student.clone().requires_grad_(True), teacher.clone().requires_grad_(True)
    value = loss(s_, t_, temperature=2.0, reduction="sum")
    student_grad, teacher_grad = torch.autograd.grad(value, (s_, t_))
    s_, t_ = student.clone().requires_grad_(True), finite_teacher.clone().requires_grad_(True)
    value_ref = _independent_sum(loss, s_, t_, 2.0)
    student_grad_ref, teacher_grad_ref = torch.autograd.grad(value_ref, (s_, t_))
    torch.testing.assert_close(value, value_ref)
    torch.testing.assert_close(student_grad, student_grad_ref)
    assert bool(torch.isfinite(teacher_grad).all())
    assert bool((teacher_grad[banned] == 0).all())
    torch.testing.assert_close(teacher_grad, teacher_grad_ref)


def test_the_kl_div_expression_stops_equalling_kd_loss_at_a_teacher_logit_of_minus_infinity():
    # The docstring's equality holds for finite logits only: F.kl_div(log_target=True) computes
    # exp(-inf) * (-inf - x) = nan there, while kd_loss gives the divergence, which the same entry at
    # -1e4 (probability exactly 0 in float64) gives F.kl_div too.
    student = torch.randn(3, 5, generator=generator(31), dtype=torch.float64)
    teacher = torch.randn(3, 5, generator=generator(32), dtype=torch.float64)
    teacher[0, 2] = float("-inf")

    def kl_div_expression(t: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(student / 2.0, -1), F.log_softmax(t / 2.0, -1), log_target=True,
                        reduction="batchmean") * 2.0**2

    assert bool(torch.isnan(kl_div_expression(teacher)))
    value = kd_loss(student, teacher, temperature=2.0)
    assert bool(torch.isfinite(value))
    torch.testing.assert_close(value, kl_div_expression(teacher.masked_fill(teacher == float("-inf"), -1e4)))


def test_the_soft_target_cross_entropy_gives_nan_at_an_entry_both_set_to_minus_infinity_where_this_is_finite():
    """Losses review (stop 41): kd_cross_entropy's docstring now states the difference kd_loss's states."""
    student = torch.randn(3, 5, generator=generator(33), dtype=torch.float64)
    teacher = torch.randn(3, 5, generator=generator(34), dtype=torch.float64)
    student[:, 0] = teacher[:, 0] = float("-inf")  # a banned token, for both

    def soft_target_expression(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(s / 1.3, F.softmax(t / 1.3, dim=-1))

    assert bool(torch.isnan(soft_target_expression(student, teacher)))
    value = kd_cross_entropy(student, teacher, temperature=1.3)
    # the entry left out altogether gives the same value
    torch.testing.assert_close(value, soft_target_expression(student[:, 1:], teacher[:, 1:]))


def test_student_logits_of_minus_infinity_where_the_teacher_has_no_mass_cost_nothing():
    student = torch.tensor([[0.0, 1.0, float("-inf")]], dtype=torch.float64, requires_grad=True)
    teacher = torch.tensor([[0.5, 0.0, float("-inf")]], dtype=torch.float64, requires_grad=True)
    for loss in (kd_loss, kd_cross_entropy):
        value = loss(student, teacher)
        grads = torch.autograd.grad(value, (student, teacher))
        assert bool(torch.isfinite(value)) and all(bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.parametrize("mask_dtype", [torch.long, torch.int32, torch.uint8])
def test_integer_masks_act_as_boolean_masks(mask_dtype):
    student, teacher, _ = _with_masked_vocabulary(3)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    for loss in (kd_loss, kd_cross_entropy):
        torch.testing.assert_close(loss(student, teacher, mask=mask.to(mask_dtype)), loss(student, teacher, mask=mask))
