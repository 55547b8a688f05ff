"""generalized_jsd (GKD): against a NumPy definition of the generalised JSD, its endpoints, properties, gradcheck."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from coursekit.losses import generalized_jsd, kd_loss
from tests.strategies import generator, gradcheck64, loss_settings, padded_batches, random_logits

pytestmark = pytest.mark.losses

betas = st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0])
temperatures = st.sampled_from([0.5, 1.0, 2.0])


def _numpy_jsd(student: np.ndarray, teacher: np.ndarray, beta: float, tau: float) -> np.ndarray:
    """Per position, from probabilities: KL(q||p), KL(p||q) or beta KL(q||m) + (1-beta) KL(p||m)."""
    def softmax(z):
        e = np.exp(z / tau - (z / tau).max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    p, q = softmax(student), softmax(teacher)

    def kl(a, b):
        return (a * (np.log(a) - np.log(b))).sum(axis=-1)

    if beta == 0.0:
        return kl(q, p)
    if beta == 1.0:
        return kl(p, q)
    m = beta * q + (1 - beta) * p
    return beta * kl(q, m) + (1 - beta) * kl(p, m)


@loss_settings
@given(padded_batches(), betas, temperatures, st.integers(0, 2**31 - 1))
def test_generalized_jsd_matches_the_numpy_definition_per_position(batch, beta, tau, seed):
    teacher = random_logits(tuple(batch.logits.shape), seed=seed, dtype=batch.dtype)
    expected = _numpy_jsd(batch.logits.double().numpy(), teacher.double().numpy(), beta, tau)
    expected = np.where(batch.mask.numpy(), expected, 0.0)
    got = generalized_jsd(batch.logits, teacher, beta=beta, temperature=tau, mask=batch.mask, reduction="none")
    assert got.dtype == batch.dtype
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-4, atol=1e-5)


@loss_settings
@given(padded_batches(require_one_token=True, dtypes=st.just(torch.float64)), temperatures, st.integers(0, 2**31 - 1))
def test_beta_zero_is_kd_loss_without_tau_squared_and_interior_values_are_bounded(batch, tau, seed):
    teacher = random_logits(tuple(batch.logits.shape), seed=seed)
    forward = generalized_jsd(batch.logits, teacher, beta=0.0, temperature=tau, mask=batch.mask)
    torch.testing.assert_close(forward, kd_loss(batch.logits, teacher, temperature=tau, mask=batch.mask) / tau**2)
    # the generalised JSD is bounded by the entropy of the mixture weights: h(beta) <= log 2
    half = generalized_jsd(batch.logits, teacher, beta=0.5, temperature=tau, mask=batch.mask, reduction="none")
    assert bool((half >= -1e-12).all()) and bool((half <= np.log(2) + 1e-12).all())


def test_equal_distributions_give_zero_and_the_divergence_is_symmetric_at_one_half():
    student = torch.randn(3, 4, 6, generator=generator(0), dtype=torch.float64)
    teacher = torch.randn(3, 4, 6, generator=generator(1), dtype=torch.float64)
    for beta in (0.0, 0.3, 1.0):
        assert float(generalized_jsd(student, student.clone(), beta=beta)) == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(generalized_jsd(student, teacher, beta=0.5), generalized_jsd(teacher, student, beta=0.5))
    # swapping the roles turns forward into reverse
    torch.testing.assert_close(generalized_jsd(student, teacher, beta=0.0), generalized_jsd(teacher, student, beta=1.0))


def test_masked_positions_reach_neither_value_nor_gradient():
    student = torch.randn(2, 3, 5, generator=generator(2), dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(2, 3, 5, generator=generator(3), dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    poisoned = teacher.masked_fill(~mask.unsqueeze(-1), float("nan"))
    value = generalized_jsd(student, poisoned, beta=0.3, mask=mask, reduction="sum")
    (grad,) = torch.autograd.grad(value, student)
    assert torch.isfinite(value) and bool((grad[~mask] == 0).all())


@pytest.mark.parametrize("beta", [0.0, 0.4, 1.0])
def test_gradcheck_generalized_jsd(beta):
    student = torch.randn(2, 3, 4, generator=generator(4), dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(2, 3, 4, generator=generator(5), dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert gradcheck64(lambda s, t: generalized_jsd(s, t, beta=beta, temperature=1.5, mask=mask), (student, teacher))


def _with_masked_column(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` with a last vocabulary entry of ``-inf`` (a padded or banned token)."""
    return torch.cat([logits, torch.full_like(logits[..., :1], float("-inf"))], dim=-1)


@pytest.mark.parametrize("beta", [0.25, 0.5])
def test_a_vocabulary_entry_masked_in_student_and_teacher_gives_finite_gradients(beta):
    student = torch.randn(2, 3, 4, generator=generator(8), dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(2, 3, 4, generator=generator(9), dtype=torch.float64, requires_grad=True)
    value = generalized_jsd(_with_masked_column(student), _with_masked_column(teacher), beta=beta, reduction="none")
    # the masked entry has probability 0 on both sides: the divergence is that of the other entries
    expected = _numpy_jsd(student.detach().numpy(), teacher.detach().numpy(), beta, 1.0)
    np.testing.assert_allclose(value.detach().numpy(), expected, rtol=1e-10, atol=1e-12)
    assert gradcheck64(
        lambda s, t: generalized_jsd(_with_masked_column(s), _with_masked_column(t), beta=beta), (student, teacher)
    )


def test_beta_zero_is_kd_loss_where_a_teacher_probability_underflows_against_a_masked_student_entry():
    # float32: a teacher logit of -200 has a finite log-probability whose exponential is 0
    student = torch.tensor([[0.0, 0.0, float("-inf")]], requires_grad=True)
    teacher = torch.tensor([[0.0, 0.0, -200.0]])
    forward = generalized_jsd(student, teacher, beta=0.0)
    (grad,) = torch.autograd.grad(forward, student)
    # q = p = (1/2, 1/2, 0) in float32, so KL(q || p) = 0
    assert float(forward) == 0.0 and float(kd_loss(student, teacher)) == 0.0
    assert bool(torch.isfinite(grad).all())


@pytest.mark.slow
@pytest.mark.ecosystem
def test_matches_trls_gkd_trainer_generalized_jsd_loss():
    # TRL's static method is called as it is (TRL is a test dependency, pinned in requirements.lock)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd.gkd_trainer import GKDTrainer

    student = torch.randn(2, 3, 7, generator=generator(6), dtype=torch.float64)
    teacher = torch.randn(2, 3, 7, generator=generator(7), dtype=torch.float64)
    labels = torch.tensor([[1, 2, -100], [3, -100, -100]])
    for beta in (0.0, 0.1, 0.5, 1.0):
        theirs = GKDTrainer.generalized_jsd_loss(student, teacher, labels=labels, beta=beta, temperature=2.0)
        ours = generalized_jsd(student, teacher, beta=beta, temperature=2.0, mask=labels != -100)
        torch.testing.assert_close(ours, theirs)
    # TRL's other reductions, as the docstring states them (losses review, stop 41)
    trl = GKDTrainer.generalized_jsd_loss
    ours_sum = generalized_jsd(student, teacher, beta=0.3, reduction="sum")
    # without labels, "batchmean" divides the sum by the first axis (2 here), not by the 6 positions
    torch.testing.assert_close(trl(student, teacher, beta=0.3), ours_sum / 2)
    assert not torch.allclose(trl(student, teacher, beta=0.3), generalized_jsd(student, teacher, beta=0.3))
    # "mean" averages over the vocabulary entries too
    torch.testing.assert_close(trl(student, teacher, beta=0.3, reduction="mean"), ours_sum / (6 * 7))
    masked_sum = generalized_jsd(student, teacher, beta=0.3, mask=labels != -100, reduction="sum")
    torch.testing.assert_close(trl(student, teacher, labels=labels, beta=0.3, reduction="mean"), masked_sum / (3 * 7))
    # any other reduction string: TRL's unreduced tensor, the vocabulary axis kept, only the counted positions
    unreduced = trl(student, teacher, labels=labels, beta=0.3, reduction="none")
    assert unreduced.shape == (3, 7)
    per_position = generalized_jsd(student, teacher, beta=0.3, mask=labels != -100, reduction="none")
    torch.testing.assert_close(unreduced.sum(-1), per_position[labels != -100])
    # num_items_in_batch divides the sum, whatever the reduction
    for reduction in ("batchmean", "mean", "sum"):
        torch.testing.assert_close(
            trl(student, teacher, labels=labels, beta=0.3, reduction=reduction, num_items_in_batch=5), masked_sum / 5)


@pytest.mark.ecosystem
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_trls_generalized_jsd_loss_gives_nan_at_a_teacher_logit_of_minus_infinity_where_this_is_finite(beta):
    # The docstring's equality with TRL holds for finite logits only: TRL's F.kl_div(log_target=True)
    # computes 0 * -inf = nan for a masked vocabulary entry; coursekit gives the divergence, which TRL
    # gives too with that entry at -1e4 (probability exactly 0 in float64).
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd.gkd_trainer import GKDTrainer

    student = torch.randn(3, 5, generator=generator(12), dtype=torch.float64)
    teacher = torch.randn(3, 5, generator=generator(13), dtype=torch.float64)
    teacher[0, 1] = float("-inf")
    student[1, 3] = teacher[1, 3] = float("-inf")
    finite_teacher = teacher.masked_fill(teacher == float("-inf"), -1e4)
    finite_student = student.masked_fill(student == float("-inf"), -1e4)
    theirs = GKDTrainer.generalized_jsd_loss(student, teacher, beta=beta, reduction="none").sum(-1)
    assert bool(torch.isnan(theirs[:2]).all())
    ours = generalized_jsd(student, teacher, beta=beta, reduction="none")
    expected = GKDTrainer.generalized_jsd_loss(finite_student, finite_teacher, beta=beta, reduction="none").sum(-1)
    assert bool(torch.isfinite(ours).all())
    torch.testing.assert_close(ours, expected)


def _trl_formula(student: np.ndarray, teacher: np.ndarray, beta: float) -> np.ndarray:
    """TRL's ``generalized_jsd_loss`` per position, restated in float64 NumPy (TRL 1.16, gkd_trainer.py:275-297).

    ``F.kl_div(input, target, log_target=True)`` is ``exp(target) * (target - input)`` elementwise, so a
    target log-probability of ``-inf`` gives ``0 * -inf = nan`` and an input one ``exp(target) * inf = inf``.
    """
    def log_softmax(z):
        shifted = z - z.max(axis=-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))

    def kl_div(input_, target):
        return np.exp(target) * (target - input_)

    s, t = log_softmax(student), log_softmax(teacher)
    with np.errstate(invalid="ignore"):
        if beta == 0.0:
            elementwise = kl_div(s, t)
        elif beta == 1.0:
            elementwise = kl_div(t, s)
        else:
            m = np.logaddexp(s + np.log1p(-beta), t + np.log(beta))
            elementwise = beta * kl_div(m, t) + (1 - beta) * kl_div(m, s)
    return elementwise.sum(axis=-1)


#: (beta, the side whose logit is -inf, what TRL gives): nan where that side weights a KL term
#: (teacher at beta 0, student at beta 1, either in between), inf where only the other side has it.
MINUS_INF_CASES = [
    (0.0, "teacher", "nan"), (0.0, "student", "inf"),
    (0.5, "teacher", "nan"), (0.5, "student", "nan"),
    (1.0, "student", "nan"), (1.0, "teacher", "inf"),
]


def _one_minus_inf_logit(side: str) -> tuple[np.ndarray, np.ndarray]:
    student = torch.randn(2, 5, generator=generator(14), dtype=torch.float64).numpy()
    teacher = torch.randn(2, 5, generator=generator(15), dtype=torch.float64).numpy()
    (student if side == "student" else teacher)[0, 1] = -np.inf
    return student, teacher


@pytest.mark.parametrize(("beta", "side", "trl_gives"), MINUS_INF_CASES, ids=[f"beta{b}-{s}" for b, s, _ in MINUS_INF_CASES])
def test_a_minus_infinity_logit_gives_nan_in_trl_where_it_weights_a_kl_term_and_inf_in_both_elsewhere(beta, side, trl_gives):
    student, teacher = _one_minus_inf_logit(side)
    theirs = _trl_formula(student, teacher, beta)
    ours = generalized_jsd(torch.from_numpy(student), torch.from_numpy(teacher), beta=beta, reduction="none").numpy()
    # row 1 is finite on both sides: the two agree there
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-12)
    if trl_gives == "nan":
        assert np.isnan(theirs[0])
        # the divergence with that entry at probability 0: -1e4 is exactly 0 after exp in float64
        finite = _trl_formula(np.maximum(student, -1e4), np.maximum(teacher, -1e4), beta)
        assert np.isfinite(finite[0])
        np.testing.assert_allclose(ours[0], finite[0], rtol=1e-12)
    else:
        assert theirs[0] == np.inf and ours[0] == np.inf


@pytest.mark.ecosystem
@pytest.mark.parametrize(("beta", "side", "trl_gives"), MINUS_INF_CASES, ids=[f"beta{b}-{s}" for b, s, _ in MINUS_INF_CASES])
def test_the_restated_trl_formula_is_trls_generalized_jsd_loss_with_a_minus_infinity_logit(beta, side, trl_gives):
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd.gkd_trainer import GKDTrainer

    student, teacher = _one_minus_inf_logit(side)
    theirs = GKDTrainer.generalized_jsd_loss(
        torch.from_numpy(student), torch.from_numpy(teacher), beta=beta, reduction="none"
    ).sum(-1)
    np.testing.assert_allclose(theirs.numpy(), _trl_formula(student, teacher, beta), rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"beta": 1.5}, ValueError, "beta"),
        ({"beta": "a"}, TypeError, "beta"),
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"reduction": "mean"}, ValueError, "reduction"),
        ({"teacher_logits": torch.zeros(2, 4)}, ValueError, "teacher_logits"),
        ({"mask": torch.ones(2)}, TypeError, "mask"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, error, name):
    arguments = {"student_logits": torch.zeros(2, 3), "teacher_logits": torch.zeros(2, 3), **kwargs}
    with pytest.raises(error, match=name):
        generalized_jsd(**arguments)


def test_the_all_masked_warning_names_generalized_jsd_and_points_at_the_caller():
    with pytest.warns(RuntimeWarning, match=r"^generalized_jsd\(reduction='token_mean'\): every token is masked") as caught:
        generalized_jsd(torch.zeros(1, 3), torch.zeros(1, 3), mask=torch.tensor([False]))
    assert caught[0].filename == __file__
