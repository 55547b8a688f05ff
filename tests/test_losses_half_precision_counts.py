"""Means over many positions of half-precision losses divide by the true count, as PyTorch's references do.

float16 holds no integer above 65504 (it rounds 65520 and more to ``inf``: a
count of 70000 tokens is ``inf``, so a mean over them would be 0 with zero gradients) and bfloat16 no odd integer above
256 (257 is 256). Every mean of coursekit.losses counts in float32 or wider and
rounds the quotient once, as PyTorch divides a half-precision sum by an integer
(``F.kl_div(..., reduction="batchmean")``, ``(losses * mask).sum() / mask.sum()``,
``torch.mean``). The policy modes, which TRL computes in float32, are checked
against TRL's own lines in test_losses_ecosystem.py.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from coursekit.losses import (
    batch_loss,
    chunked_cross_entropy,
    confidence_penalty_nll,
    generalized_jsd,
    kd_cross_entropy,
    kd_loss,
    label_smoothed_nll,
    sequence_loss,
    top_k_kd_loss,
    top_k_teacher,
    vocab_parallel_cross_entropy,
)
from tests.strategies import generator

pytestmark = pytest.mark.losses

#: More positions than float16 can count (its largest finite value is 65504).
FLOAT16_MANY = 70_000
#: bfloat16 rounds 257 to 256, the largest relative rounding of a count.
BFLOAT16_ODD = 257
#: Two units in the last place of float16: the references sum in another order.
FLOAT16_RTOL = 2 * 2.0**-10


def many_float16_rows(vocab: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A student and a teacher of 70000 random float16 rows."""
    student = torch.randn(FLOAT16_MANY, vocab, generator=generator(seed)).half()
    teacher = torch.randn(FLOAT16_MANY, vocab, generator=generator(seed + 1)).half()
    return student, teacher


def repeated_bfloat16_rows() -> tuple[torch.Tensor, torch.Tensor]:
    """257 equal bfloat16 rows whose per-row KL is one bfloat16 value, summed exactly in any order.

    The teacher's second probability underflows to 0 in bfloat16 (``exp(-100)``),
    so each row's divergence is the single term ``-log p_0`` of the student, the
    same in coursekit and in ``F.kl_div``; 257 copies of it sum exactly in float32.
    The two results can then differ only in the division by the count.
    """
    student = torch.tensor([[0.0, 0.7]]).expand(BFLOAT16_ODD, 2).to(torch.bfloat16)
    teacher = torch.tensor([[0.0, -100.0]]).expand(BFLOAT16_ODD, 2).to(torch.bfloat16)
    return student, teacher


def kl_div_batchmean(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """PyTorch's distillation loss at temperature 1, the reference kd_loss's docstring names."""
    return F.kl_div(F.log_softmax(student, dim=-1), F.log_softmax(teacher, dim=-1), log_target=True,
                    reduction="batchmean")


def test_kd_loss_over_70000_float16_positions_is_kl_div_batchmean_with_a_gradient():
    student, teacher = many_float16_rows()
    student.requires_grad_(True)
    ours = kd_loss(student, teacher)
    torch.testing.assert_close(ours, kl_div_batchmean(student, teacher), rtol=FLOAT16_RTOL, atol=0.0)
    ours.backward()
    assert student.grad.abs().max() > 0


def test_kd_loss_over_257_bfloat16_positions_divides_by_257_as_kl_div_batchmean():
    student, teacher = repeated_bfloat16_rows()
    reference = kl_div_batchmean(student, teacher)
    assert torch.equal(kd_loss(student, teacher), reference)
    # what dividing by the count rounded to bfloat16 gives, which the old code returned
    assert not torch.equal(reference, (reference.float() * BFLOAT16_ODD / 256).to(torch.bfloat16))


def test_kd_cross_entropy_over_70000_float16_positions_is_the_float64_mean_rounded():
    # A peaked teacher: its cross-entropy stays below 65504 / 70000 per position, so the float16 sum is finite.
    student, teacher = many_float16_rows()
    student, teacher = 8 * teacher + student / 4, 8 * teacher
    expected = kd_cross_entropy(student.double(), teacher.double()).half()
    torch.testing.assert_close(kd_cross_entropy(student, teacher), expected, rtol=FLOAT16_RTOL, atol=0.0)


def test_top_k_kd_loss_with_every_entry_kept_over_70000_float16_positions_is_kl_div_batchmean():
    student, teacher = many_float16_rows()
    log_probs, indices = top_k_teacher(teacher, teacher.shape[-1])
    ours = top_k_kd_loss(student, log_probs, indices)
    torch.testing.assert_close(ours, kl_div_batchmean(student, teacher), rtol=FLOAT16_RTOL, atol=0.0)


def test_top_k_kd_loss_over_257_bfloat16_positions_divides_by_257_as_kl_div_batchmean():
    student, teacher = repeated_bfloat16_rows()
    log_probs, indices = top_k_teacher(teacher, 2)
    assert torch.equal(top_k_kd_loss(student, log_probs, indices), kl_div_batchmean(student, teacher))


@pytest.mark.ecosystem
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_generalized_jsd_over_70000_float16_positions_equals_trl_generalized_jsd_loss(beta):
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd.gkd_trainer import GKDTrainer

    student, teacher = many_float16_rows()
    labels = torch.zeros(FLOAT16_MANY, dtype=torch.long)
    labels[::100] = -100
    theirs = GKDTrainer.generalized_jsd_loss(student, teacher, labels=labels, beta=beta)
    ours = generalized_jsd(student, teacher, beta=beta, mask=labels != -100)
    torch.testing.assert_close(ours, theirs, rtol=FLOAT16_RTOL, atol=0.0)


def per_token_losses(shape: tuple[int, int], dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Small per-token losses N(0.1, 0.05) and an integer mask with the last 3 tokens of every row masked."""
    losses = (0.1 + 0.05 * torch.randn(shape, generator=generator(seed))).to(dtype)
    mask = torch.ones(shape, dtype=torch.int64)
    mask[:, -3:] = 0
    return losses, mask


@pytest.mark.parametrize(("dtype", "shape"), [(torch.float16, (16, 4403)), (torch.bfloat16, (1, BFLOAT16_ODD + 3))])
def test_batch_loss_token_mean_is_pytorch_s_masked_sum_over_the_integer_count(dtype, shape):
    # 16 x 4400 = 70400 counted float16 tokens; 257 counted bfloat16 tokens.
    losses, mask = per_token_losses(shape, dtype)
    assert torch.equal(batch_loss(losses, mask), (losses * mask).sum() / mask.sum())


def test_batch_loss_token_mean_over_70000_float16_tokens_gives_every_counted_token_a_gradient():
    losses, mask = per_token_losses((16, 4403), torch.float16)
    losses.requires_grad_(True)
    batch_loss(losses, mask).backward()
    assert bool((losses.grad[mask.bool()] > 0).all())
    assert bool((losses.grad[~mask.bool()] == 0).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_batch_loss_sequence_mean_is_the_float64_formula_rounded(dtype):
    losses, mask = per_token_losses((16, 4403) if dtype is torch.float16 else (3, BFLOAT16_ODD + 3), dtype)
    exact = losses.double()
    per_sequence = (exact * mask).sum(-1) / mask.sum(-1)
    torch.testing.assert_close(batch_loss(losses, mask, reduction="sequence_mean"), per_sequence.mean().to(dtype),
                               rtol=FLOAT16_RTOL if dtype is torch.float16 else 2 * 2.0**-8, atol=0.0)


@pytest.mark.parametrize(("dtype", "length"), [(torch.float16, FLOAT16_MANY), (torch.bfloat16, BFLOAT16_ODD)])
def test_batch_loss_sequence_mean_of_equal_losses_is_that_loss(dtype, length):
    # Losses review r16, finding 1: with random losses the tolerance of the test above is wider than the
    # 1/257 error of a bfloat16 count, and its float16 rows never round a count. Equal losses of 0.3 have the
    # loss itself as their mean: a count kept in float16 is inf past 65504 (mean 0), one kept in bfloat16
    # is 256 for 257 (0.3027 for 0.3008).
    losses = torch.full((2, length), 0.3, dtype=dtype)
    mask = torch.ones(2, length, dtype=torch.long)
    assert torch.equal(batch_loss(losses, mask, reduction="sequence_mean"), losses[0, 0])


def test_batch_loss_token_mean_with_token_weights_counts_their_sum_exactly_in_bfloat16():
    losses, mask = per_token_losses((1, BFLOAT16_ODD + 3), torch.bfloat16)
    weights = torch.ones_like(losses)
    assert torch.equal(batch_loss(losses, mask, token_weights=weights), (losses * mask).sum() / mask.sum())


@pytest.mark.parametrize(("dtype", "length"), [(torch.float16, FLOAT16_MANY), (torch.bfloat16, BFLOAT16_ODD)])
def test_sequence_loss_mean_of_a_long_sequence_is_torch_mean(dtype, length):
    losses, _ = per_token_losses((2, length), dtype)
    torch.testing.assert_close(sequence_loss(losses, reduction="mean"), losses.mean(dim=-1),
                               rtol=FLOAT16_RTOL if dtype is torch.float16 else 2 * 2.0**-8, atol=0.0)


def test_sequence_loss_mean_of_257_equal_bfloat16_losses_divides_by_257():
    # 0.3, not a power of two (losses review r16, finding 1): 257 halves sum to 128.5, which bfloat16 rounds
    # to 128, and 128 / 256 is 0.5 again, so a count rounded to 256 went unnoticed.
    losses = torch.full((BFLOAT16_ODD,), 0.3, dtype=torch.bfloat16)
    assert torch.equal(sequence_loss(losses, reduction="mean"), losses.mean())
    assert torch.equal(losses.mean(), losses[0])


def confident_float16_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """70000 float16 rows whose target has logit 2 and the others -2: a loss of about 0.05 per token."""
    targets = torch.randint(0, 4, (FLOAT16_MANY,), generator=generator(4))
    logits = torch.full((FLOAT16_MANY, 4), -2.0)
    logits.scatter_(-1, targets.unsqueeze(-1), 2.0)
    return logits.half(), targets


@pytest.mark.parametrize("loss", [label_smoothed_nll, confidence_penalty_nll])
def test_mean_of_70000_float16_tokens_is_the_float64_mean_of_the_per_token_losses(loss):
    # PyTorch's CPU F.cross_entropy gives 0 for these logits (about 0.054 in float64); here the per-token
    # losses (checked against PyTorch in their own test modules) are averaged in float64 as the reference.
    logits, targets = confident_float16_batch()
    per_token = loss(logits, targets, 0.1, reduction="none")
    expected = per_token.double().mean().half()
    assert expected > 0.01
    torch.testing.assert_close(loss(logits, targets, 0.1), expected, rtol=FLOAT16_RTOL, atol=0.0)


def test_chunked_and_vocab_parallel_float16_means_count_past_float16_where_f_cross_entropy_gives_zero() -> None:
    # The two docstrings' claim: from 65520 counted float16 rows F.cross_entropy's count is inf and its
    # mean 0 with zero gradients; chunked (float32 sum and count) and vocab_parallel (exact count) are finite.
    hidden = torch.tensor([[1.0, 0.0]], dtype=torch.float16).expand(FLOAT16_MANY, 2).contiguous()
    weight = torch.tensor([[2.0, 0.0], [-2.0, 0.0]], dtype=torch.float16)
    targets = torch.zeros(FLOAT16_MANY, dtype=torch.long)
    logits = hidden @ weight.T
    exact = F.cross_entropy(logits.double(), targets)
    pytorch_hidden = hidden.clone().requires_grad_(True)
    pytorch = F.cross_entropy(pytorch_hidden @ weight.T, targets)
    pytorch.backward()
    chunked_hidden = hidden.clone().requires_grad_(True)
    chunked = chunked_cross_entropy(chunked_hidden, weight, targets)
    chunked.backward()
    split = vocab_parallel_cross_entropy([logits[:, :1], logits[:, 1:]], targets)
    assert pytorch == 0 and not bool(pytorch_hidden.grad.any())
    for got in (chunked, split):
        assert got.dtype == torch.float16
        assert torch.allclose(got.double(), exact, rtol=FLOAT16_RTOL, atol=0)
    assert chunked_hidden.grad is not None and bool(chunked_hidden.grad.any())


def test_chunked_float16_mean_stays_finite_where_the_float16_total_is_inf() -> None:
    # 30000 losses of about 2.4 nats total about 72000, past float16's range: F.cross_entropy and
    # vocab_parallel (sums in float16) give inf, chunked (sums in float32) the mean.
    gen = generator(5)
    rows, vocab = 30_000, 10
    hidden = (0.25 * torch.randn(rows, 4, generator=gen)).half()
    weight = torch.randn(vocab, 4, generator=gen).half()
    targets = torch.randint(0, vocab, (rows,), generator=gen)
    logits = hidden @ weight.T
    exact = F.cross_entropy(logits.double(), targets)
    assert exact * rows > 65520
    assert torch.isinf(F.cross_entropy(logits, targets))
    assert torch.isinf(vocab_parallel_cross_entropy([logits[:, :3], logits[:, 3:]], targets))
    chunked = chunked_cross_entropy(hidden, weight, targets)
    assert torch.allclose(chunked.double(), exact, rtol=FLOAT16_RTOL, atol=0)


@pytest.mark.parametrize("loss", ["label_smoothed_nll", "confidence_penalty_nll"])
def test_a_bfloat16_mean_adds_in_float32_and_is_the_closer_to_float64_as_the_docstrings_say(loss):
    # Losses review round 26, F1: the docstrings said the mean "sums in that dtype, as F.cross_entropy does";
    # PyTorch's CPU kernel rounds in bfloat16 as it adds, coursekit's Tensor.sum rounds once. The docstrings
    # quote this case's three values.
    from coursekit import losses

    logits = torch.zeros(1000, 50, dtype=torch.bfloat16)
    targets = torch.randint(0, 50, (1000,), generator=torch.Generator().manual_seed(5))
    ours = {"label_smoothed_nll": lambda: losses.label_smoothed_nll(logits, targets, 0.0, reduction="mean"),
            "confidence_penalty_nll": lambda: losses.confidence_penalty_nll(logits, targets, weight=0.0,
                                                                            reduction="mean")}[loss]()
    pytorch = F.cross_entropy(logits, targets)
    exact = F.cross_entropy(logits.double(), targets)
    assert (round(float(ours), 3), round(float(pytorch), 3), round(float(exact), 3)) == (3.906, 3.969, 3.912)
    assert torch.equal(losses.label_smoothed_nll(logits, targets, 0.0, reduction="none"),
                       F.cross_entropy(logits, targets, reduction="none")), "per-token values are equal"
    doc = getattr(losses, loss).__doc__
    assert "3.906 where ``F.cross_entropy`` gives 3.969 and float64 3.912" in " ".join(doc.split())
