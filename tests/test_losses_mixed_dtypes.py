"""Losses given tensors of different float dtypes compute in the dtype they promote to, as PyTorch does.

A bfloat16 student distilled from float32 teacher logits (or from float32
log-probabilities stored by ``top_k_teacher``), bfloat16 policy
log-probabilities against float32 old or reference ones: the PyTorch and TRL
expressions each docstring names (``F.kl_div``, ``F.cross_entropy`` with soft
targets, TRL's GRPO lines) promote, and return float32. A loss that cast the
partner down to the first argument's dtype would round a float32
log-probability near -8 to bfloat16 (ulp 0.03), more than the KL estimate it
computes. Each test compares the result's dtype with the reference's and its
value with the float64 formula on the same (already rounded) inputs.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from coursekit.losses import (
    batch_loss,
    clipped_surrogate,
    generalized_jsd,
    kd_cross_entropy,
    kd_loss,
    kl_penalty,
    mrt_risk,
    reinforce_loss,
    sequence_importance_ratio,
    simpo_loss,
    top_k_kd_loss,
    top_k_teacher,
)

BF16, F32, F64 = torch.bfloat16, torch.float32, torch.float64
# (first argument's dtype, partner's dtype, the dtype PyTorch promotes them to)
MIXED = [(BF16, F32, F32), (F32, F64, F64), (F32, BF16, F32)]


def _logits(dtype: torch.dtype, seed: int, shape: tuple[int, ...] = (6, 50)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (4 * torch.randn(shape, generator=generator, dtype=F64)).to(dtype)


def _log_probs(dtype: torch.dtype, seed: int, shape: tuple[int, ...] = (4, 16)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (-8 * torch.rand(shape, generator=generator, dtype=F64)).to(dtype)


def _tolerance(dtype: torch.dtype) -> dict:
    return {"rtol": 1e-12, "atol": 1e-12} if dtype == F64 else {"rtol": 2e-6, "atol": 2e-6}


def _kl_rows(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(q || p) per row in float64, from the inputs as given (their own rounding kept)."""
    log_p = torch.log_softmax(student.to(F64), dim=-1)
    log_q = torch.log_softmax(teacher.to(F64), dim=-1)
    return (log_q.exp() * (log_q - log_p)).sum(dim=-1)


@pytest.mark.parametrize(("first", "partner", "promoted"), MIXED)
def test_kd_loss_returns_f_kl_div_dtype_and_the_float64_value(first, partner, promoted):
    student, teacher = _logits(first, 0), _logits(partner, 1)
    reference = F.kl_div(
        F.log_softmax(student, dim=-1), F.log_softmax(teacher, dim=-1), log_target=True, reduction="batchmean"
    )
    loss = kd_loss(student, teacher)
    assert reference.dtype == promoted
    assert loss.dtype == promoted
    torch.testing.assert_close(loss.double(), _kl_rows(student, teacher).mean(), **_tolerance(promoted))


@pytest.mark.parametrize(("first", "partner", "promoted"), MIXED)
def test_kd_cross_entropy_returns_f_cross_entropy_dtype_and_the_float64_value(first, partner, promoted):
    student, teacher = _logits(first, 2), _logits(partner, 3)
    reference = F.cross_entropy(student, F.softmax(teacher, dim=-1))
    loss = kd_cross_entropy(student, teacher)
    log_q = torch.log_softmax(teacher.double(), dim=-1)
    expected = -(log_q.exp() * torch.log_softmax(student.double(), dim=-1)).sum(dim=-1).mean()
    assert reference.dtype == promoted
    assert loss.dtype == promoted
    torch.testing.assert_close(loss.double(), expected, **_tolerance(promoted))


def _trl_generalized_jsd(student: torch.Tensor, teacher: torch.Tensor, beta: float) -> torch.Tensor:
    """TRL's ``GKDTrainer.generalized_jsd_loss`` lines (per position, summed over the vocabulary, then meaned)."""
    student_log_probs = F.log_softmax(student, dim=-1)
    teacher_log_probs = F.log_softmax(teacher, dim=-1)
    beta_t = torch.tensor(beta, dtype=student_log_probs.dtype)
    mixture = torch.logsumexp(
        torch.stack([student_log_probs + torch.log1p(-beta_t), teacher_log_probs + torch.log(beta_t)]), dim=0
    )
    kl_teacher = F.kl_div(mixture, teacher_log_probs, reduction="none", log_target=True)
    kl_student = F.kl_div(mixture, student_log_probs, reduction="none", log_target=True)
    return (beta_t * kl_teacher + (1 - beta_t) * kl_student).sum(dim=-1).mean()


@pytest.mark.parametrize(("first", "partner", "promoted"), MIXED)
def test_generalized_jsd_returns_trl_dtype_and_the_float64_value(first, partner, promoted):
    student, teacher = _logits(first, 4), _logits(partner, 5)
    reference = _trl_generalized_jsd(student, teacher, 0.3)
    loss = generalized_jsd(student, teacher, beta=0.3)
    assert reference.dtype == promoted
    assert loss.dtype == promoted
    expected = _trl_generalized_jsd(student.double(), teacher.double(), 0.3)
    torch.testing.assert_close(loss.double(), expected, **_tolerance(promoted))


@pytest.mark.parametrize(("first", "partner", "promoted"), MIXED)
def test_top_k_kd_loss_with_every_entry_stored_equals_the_float64_kl_in_the_promoted_dtype(first, partner, promoted):
    student, teacher = _logits(first, 6), _logits(partner, 7)
    stored = top_k_teacher(teacher, teacher.shape[-1])
    assert stored[0].dtype == partner
    loss = top_k_kd_loss(student, *stored)
    assert loss.dtype == promoted
    # the KL from the stored log-probabilities as they are (rounded to the teacher's dtype)
    log_q = stored[0].double()
    log_p = torch.log_softmax(student.double(), dim=-1).gather(-1, stored[1])
    expected = (log_q.exp() * (log_q - log_p)).sum(dim=-1).mean()
    torch.testing.assert_close(loss.double(), expected, **_tolerance(promoted))


def test_kd_loss_under_autocast_keeps_a_float64_teacher_float64():
    student, teacher = _logits(BF16, 8), _logits(F64, 9)
    with torch.autocast("cpu", dtype=BF16):
        loss = kd_loss(student, teacher)
    assert loss.dtype == F64
    torch.testing.assert_close(loss, _kl_rows(student, teacher).mean(), rtol=1e-12, atol=1e-12)


def test_distillation_gradients_come_back_in_each_arguments_dtype():
    student = _logits(BF16, 10).requires_grad_()
    teacher = _logits(F32, 11).requires_grad_()
    kd_loss(student, teacher).backward()
    assert student.grad.dtype == BF16 and teacher.grad.dtype == F32
    assert bool(torch.isfinite(student.grad).all()) and bool(torch.isfinite(teacher.grad).all())


def _trl_clipped(log_probs, old_log_probs, advantages, eps_low=0.2, eps_high=0.28):
    """TRL 1.16 GRPOTrainer: coef_1 = exp(log_ratio), coef_2 = clamp(coef_1, 1 - eps_low, 1 + eps_high)."""
    coef_1 = torch.exp(log_probs - old_log_probs)
    coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
    return -torch.min(coef_1 * advantages.unsqueeze(1), coef_2 * advantages.unsqueeze(1))


@pytest.mark.parametrize(("first", "partner", "promoted"), MIXED)
def test_clipped_surrogate_returns_trl_dtype_and_value(first, partner, promoted):
    old = _log_probs(partner, 12)
    # the policy within 0.05 of the sampler, as after a few updates
    log_probs = (old.double() + 0.1 * torch.rand(old.shape, generator=torch.Generator().manual_seed(13),
                                                dtype=F64) - 0.05).to(first)
    advantages = torch.randn(old.shape[0], generator=torch.Generator().manual_seed(14), dtype=F64).to(partner)
    reference = _trl_clipped(log_probs, old, advantages)
    losses = clipped_surrogate(log_probs, old, advantages, eps_low=0.2, eps_high=0.28)
    assert reference.dtype == promoted
    assert losses.dtype == promoted
    expected = _trl_clipped(log_probs.double(), old.double(), advantages.double())
    torch.testing.assert_close(losses.double(), expected, **_tolerance(promoted))


@pytest.mark.parametrize(("first", "partner", "promoted"), MIXED)
def test_kl_penalty_k3_returns_trl_dtype_and_value(first, partner, promoted):
    ref = _log_probs(partner, 15)
    log_probs = (ref.double() + 0.1 * torch.rand(ref.shape, generator=torch.Generator().manual_seed(16),
                                                dtype=F64) - 0.05).to(first)
    trl = torch.exp(ref - log_probs) - (ref - log_probs) - 1
    assert trl.dtype == promoted
    d = ref.double() - log_probs.double()
    for estimator, expected in (("k1", -d), ("k2", 0.5 * d**2), ("k3", torch.expm1(d) - d)):
        estimate = kl_penalty(log_probs, ref, estimator=estimator)
        assert estimate.dtype == promoted, estimator
        torch.testing.assert_close(estimate.double(), expected, **_tolerance(promoted))


@pytest.mark.parametrize(("first", "partner", "promoted"), MIXED)
def test_sequence_importance_ratio_returns_trl_dtype_and_value(first, partner, promoted):
    old = _log_probs(partner, 17)
    log_probs = (old.double() + 0.1 * torch.rand(old.shape, generator=torch.Generator().manual_seed(18),
                                                dtype=F64) - 0.05).to(first)
    mask = torch.ones(old.shape, dtype=torch.long)
    mask[1, 5:] = 0
    # TRL 1.16: (log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0), then exp
    trl = torch.exp(((log_probs - old) * mask).sum(-1) / mask.sum(-1).clamp(min=1.0))
    ratio = sequence_importance_ratio(log_probs, old, mask)
    assert trl.dtype == promoted
    assert ratio.dtype == promoted
    log_ratio = log_probs.double() - old.double()
    expected = torch.exp((log_ratio * mask).sum(-1) / mask.sum(-1))
    torch.testing.assert_close(ratio.double(), expected, **_tolerance(promoted))


@pytest.mark.parametrize("half", [BF16, torch.float16])
def test_sequence_importance_ratio_of_two_half_precision_tensors_is_float32_as_trls(half):
    """TRL divides by ``mask.sum(-1).clamp(min=1.0)``, a float32: the mean and the exp are not half precision.

    In bfloat16 a ratio near 1 could only be 0.996, 1 or 1.0078, which GSPO's clip range (3e-4) cannot use.
    """
    old = _log_probs(half, 21, (64, 301))
    log_probs = (old.double() + 1e-3 * torch.randn(old.shape, generator=torch.Generator().manual_seed(22),
                                                   dtype=F64)).to(half)
    mask = torch.ones(old.shape, dtype=torch.long)
    mask[1, 200:] = 0
    # TRL 1.16: (log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0), then exp
    trl = torch.exp(((log_probs - old) * mask).sum(-1) / mask.sum(-1).clamp(min=1.0))
    ratio = sequence_importance_ratio(log_probs, old, mask)
    assert trl.dtype == ratio.dtype == F32
    torch.testing.assert_close(ratio, trl, rtol=1e-6, atol=1e-6)
    exact = torch.exp(((log_probs.double() - old.double()) * mask).sum(-1) / mask.sum(-1))
    assert (ratio.double() - exact).abs().max() < 1e-4, "the mean of the log-ratios is kept to float32"


@pytest.mark.parametrize(("first", "partner", "promoted"), MIXED)
def test_mrt_risk_computes_in_the_promoted_dtype(first, partner, promoted):
    scores = _log_probs(first, 19, (3, 5))
    costs = torch.rand((3, 5), generator=torch.Generator().manual_seed(20), dtype=F64).to(partner)
    risk = mrt_risk(scores, costs, alpha=0.5)
    assert risk.dtype == promoted
    expected = (torch.softmax(0.5 * scores.double(), dim=-1) * costs.double()).sum(-1).mean()
    torch.testing.assert_close(risk.double(), expected, **_tolerance(promoted))


@pytest.mark.parametrize(("first", "partner", "promoted"), MIXED)
def test_reinforce_loss_computes_in_the_promoted_dtype(first, partner, promoted):
    log_p = _log_probs(first, 21, (8,))
    rewards = torch.rand(8, generator=torch.Generator().manual_seed(22), dtype=F64).to(partner)
    baseline = torch.rand(8, generator=torch.Generator().manual_seed(23), dtype=F64).to(partner)
    assert (-(rewards * log_p).mean()).dtype == promoted
    loss = reinforce_loss(log_p, rewards)
    assert loss.dtype == promoted
    torch.testing.assert_close(loss.double(), -(rewards.double() * log_p.double()).mean(), **_tolerance(promoted))
    with_baseline = reinforce_loss(log_p, rewards.to(first), baseline=baseline)
    assert with_baseline.dtype == promoted
    expected = -((rewards.to(first).double() - baseline.double()) * log_p.double()).mean()
    torch.testing.assert_close(with_baseline.double(), expected, **_tolerance(promoted))


def test_simpo_loss_keeps_a_float32_rejected_and_large_integer_lengths_exact():
    chosen = torch.tensor([-20.0, -31.0], dtype=BF16)
    rejected = torch.tensor([-40.123, -17.5])
    # 301 and 515 are not bfloat16 numbers: cast to chosen's dtype they would become 300 and 512
    chosen_lengths, rejected_lengths = torch.tensor([301, 7]), torch.tensor([515, 3])
    loss = simpo_loss(chosen, rejected, chosen_lengths, rejected_lengths, reduction="none")
    assert (chosen / chosen_lengths - rejected / rejected_lengths).dtype == F32
    assert loss.dtype == F32
    margin = 2.0 * chosen.double() / chosen_lengths - 2.0 * rejected.double() / rejected_lengths - 0.5
    torch.testing.assert_close(loss.double(), -F.logsigmoid(margin), rtol=2e-6, atol=2e-6)


def test_simpo_loss_with_float64_lengths_returns_float64_and_integer_lengths_keep_the_logps_dtype():
    chosen, rejected = torch.tensor([-2.0]), torch.tensor([-1.0])
    assert simpo_loss(chosen, rejected, torch.tensor([4.0], dtype=F64), torch.tensor([1])).dtype == F64
    bf16 = simpo_loss(chosen.to(BF16), rejected.to(BF16), torch.tensor([4]), torch.tensor([1]))
    assert bf16.dtype == BF16


def test_policy_losses_return_gradients_in_each_arguments_dtype():
    old = _log_probs(F32, 24)
    log_probs = old.to(BF16).requires_grad_()
    ref = _log_probs(F32, 25).requires_grad_()
    losses = clipped_surrogate(log_probs, old, torch.ones(old.shape[0])) + kl_penalty(log_probs, ref)
    losses.sum().backward()
    assert log_probs.grad.dtype == BF16 and ref.grad.dtype == F32


@pytest.mark.parametrize(("first", "partner", "promoted"), MIXED)
def test_batch_loss_with_token_weights_computes_in_the_promoted_dtype(first, partner, promoted):
    losses = torch.rand((3, 5), generator=torch.Generator().manual_seed(26), dtype=F64).to(first)
    weights = torch.rand((3, 5), generator=torch.Generator().manual_seed(27), dtype=F64).to(partner)
    mask = torch.ones((3, 5), dtype=torch.bool)
    mask[2, 3:] = False
    assert (weights * losses).dtype == promoted
    for reduction in ("token_mean", "sequence_mean", "sum"):
        loss = batch_loss(losses, mask, reduction=reduction, token_weights=weights)
        assert loss.dtype == promoted, reduction
    weighted = (losses.double() * weights.double() * mask).sum()
    expected = weighted / (weights.double() * mask).sum()
    loss = batch_loss(losses, mask, reduction="token_mean", token_weights=weights)
    torch.testing.assert_close(loss.double(), expected, **_tolerance(promoted))


DTYPES = [torch.bool, torch.uint8, torch.int32, torch.int64, torch.float16, BF16, F32, F64]


@pytest.mark.parametrize("second", DTYPES, ids=str)
@pytest.mark.parametrize("first", DTYPES, ids=str)
def test_promoted_dtype_is_torch_result_type_for_every_pair_of_dimensioned_and_0d_tensors(first, second):
    from coursekit.losses._autocast import promoted_dtype

    for first_shape, second_shape in (((2,), (2,)), ((2,), ()), ((), (2,)), ((), ())):
        a, b = torch.zeros(first_shape, dtype=first), torch.zeros(second_shape, dtype=second)
        assert promoted_dtype(a, b) == torch.result_type(a, b), (first_shape, second_shape)


def test_a_0d_float64_baseline_does_not_raise_the_dtype_of_float32_rewards():
    """As the expression the docstring names: ``(rewards - baseline) * log_probs`` stays float32."""
    log_probs, rewards = _log_probs(F32, 23, (5,)), _log_probs(F32, 24, (5,))
    baseline = torch.tensor(0.25, dtype=F64)
    assert ((rewards - baseline) * log_probs).dtype == F32
    loss = reinforce_loss(log_probs, rewards, baseline=baseline)
    assert loss.dtype == F32
    torch.testing.assert_close(loss, reinforce_loss(log_probs, rewards, baseline=0.25))
