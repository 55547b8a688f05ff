"""Tests of coursekit.losses.ctc_backward_variables: by path enumeration, by the identities that tie it to the
forward variables and the loss, and by the CTC gradient formula against PyTorch's own gradient."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from coursekit.losses import ctc_backward_variables, ctc_forward_variables, ctc_loss
from tests.strategies import generator, loss_settings, seeds

pytestmark = pytest.mark.losses


def random_log_probs(seed: int, num_frames: int, num_classes: int) -> torch.Tensor:
    g = generator(seed)
    return torch.log_softmax(torch.randn(num_frames, num_classes, generator=g, dtype=torch.float64) * 2, dim=-1)


def alignment_states(path: tuple[int, ...], blank: int = 0) -> list[int]:
    """The state of y' (0-based) that an alignment is in at every frame."""
    states, read = [], 0
    for t, symbol in enumerate(path):
        if symbol == blank:
            states.append(2 * read)
        elif t > 0 and path[t - 1] == symbol:
            states.append(states[-1])
        else:
            read += 1
            states.append(2 * read - 1)
    return states


def occupation_by_enumeration(probs: torch.Tensor, target: list[int]) -> torch.Tensor:
    """sum over the alignments that are in state s at frame t of their probability, shape (T, 2L + 1)."""
    num_frames, num_classes = probs.shape
    table = torch.zeros(num_frames, 2 * len(target) + 1, dtype=torch.float64)
    for path in itertools.product(range(num_classes), repeat=num_frames):
        merged = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
        if [c for c in merged if c != 0] != target:
            continue
        probability = math.prod(float(probs[t, c]) for t, c in enumerate(path))
        for t, s in enumerate(alignment_states(path)):
            table[t, s] += probability
    return table


@pytest.mark.parametrize(
    ("target", "num_frames"),
    [([1, 2], 4), ([1, 1], 4), ([2, 1, 2], 5), ([1], 3), ([2, 2, 2], 6)],
)
def test_alpha_times_omega_is_the_probability_of_the_alignments_through_each_state(
    target: list[int], num_frames: int
) -> None:
    log_probs = random_log_probs(len(target) * 10 + num_frames, num_frames, 3)
    labels = torch.tensor(target, dtype=torch.long)
    alpha = ctc_forward_variables(log_probs, labels)
    omega = ctc_backward_variables(log_probs, labels)
    expected = occupation_by_enumeration(log_probs.exp(), target)
    torch.testing.assert_close((alpha + omega).exp(), expected, rtol=1e-10, atol=1e-14)


def test_omega_counts_path_suffixes_under_uniform_probabilities() -> None:
    # "a b" in 3 uniform frames over 3 classes: from the first label at frame 1, the suffixes
    # "b _", "b b", "_ b" and "a b" finish the target; from the final blank only "_ _" does.
    omega = ctc_backward_variables(torch.full((3, 3), 1 / 3, dtype=torch.float64).log(), torch.tensor([1, 2]))
    counts = omega.exp() * 3.0 ** torch.arange(2, -1, -1, dtype=torch.float64).unsqueeze(1)
    torch.testing.assert_close(counts[0], torch.tensor([1.0, 4.0, 3.0, 3.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(counts[-1], torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0], dtype=torch.float64))


@loss_settings
@given(
    seed=seeds,
    num_frames=st.integers(1, 12),
    num_classes=st.integers(2, 6),
    num_labels=st.integers(1, 5),
    blank=st.integers(0, 1),
)
def test_alpha_and_omega_give_the_likelihood_at_every_frame(
    seed: int, num_frames: int, num_classes: int, num_labels: int, blank: int
) -> None:
    log_probs = random_log_probs(seed, num_frames, num_classes)
    g = generator(seed + 1)
    draws = torch.randint(0, num_classes - 1, (num_labels,), generator=g)
    labels = torch.where(draws >= blank, draws + 1, draws)
    alpha = ctc_forward_variables(log_probs, labels, blank=blank)
    omega = ctc_backward_variables(log_probs, labels, blank=blank)
    log_likelihood = -ctc_loss(log_probs[:, None], labels[None], [num_frames], [num_labels], blank=blank,
                               reduction="sum")
    per_frame = (alpha + omega).logsumexp(dim=1)
    if math.isinf(float(log_likelihood)):
        assert torch.isneginf(per_frame).all()
    else:
        torch.testing.assert_close(per_frame, log_likelihood.expand(num_frames), rtol=1e-10, atol=1e-10)


def test_the_ctc_gradient_formula_matches_pytorchs_gradient_on_the_logits() -> None:
    # d(-log p)/dz_t(k) = p_t(k) - (1 / p(y|x)) * sum over states s with y'_s = k of alpha_t(s) omega_t(s)
    g = generator(5)
    logits = torch.randn(11, 5, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1, 3, 3, 2])
    log_probs = logits.log_softmax(-1)
    (expected,) = torch.autograd.grad(F.ctc_loss(log_probs[:, None], labels[None], [11], [4], reduction="sum"), logits)
    alpha = ctc_forward_variables(log_probs.detach(), labels)
    omega = ctc_backward_variables(log_probs.detach(), labels)
    occupation = (alpha + omega - (alpha + omega)[0].logsumexp(0)).exp()        # (T, 2L + 1)
    extended = torch.zeros(9, dtype=torch.long)
    extended[1::2] = labels
    per_class = torch.zeros(11, 5, dtype=torch.float64).index_add_(1, extended, occupation)
    torch.testing.assert_close(log_probs.detach().exp() - per_class, expected, rtol=1e-9, atol=1e-12)


def test_omega_at_the_first_frame_closes_the_likelihood() -> None:
    log_probs = random_log_probs(2, 7, 4)
    labels = torch.tensor([3, 1, 3])
    omega = ctc_backward_variables(log_probs, labels)
    first = torch.logsumexp(torch.stack([log_probs[0, 0] + omega[0, 0], log_probs[0, 3] + omega[0, 1]]), 0)
    torch.testing.assert_close(first, -ctc_loss(log_probs[:, None], labels[None], [7], [3], reduction="sum"))


def test_omega_of_an_empty_target_is_the_probability_of_blanks_to_the_end() -> None:
    log_probs = random_log_probs(3, 5, 3)
    omega = ctc_backward_variables(log_probs, torch.tensor([], dtype=torch.long))
    blanks_after = torch.cat([log_probs[1:, 0].flip(0).cumsum(0).flip(0), torch.zeros(1, dtype=torch.float64)])
    torch.testing.assert_close(omega[:, 0], blanks_after)
    assert ctc_backward_variables(log_probs[:0], torch.tensor([1, 2])).shape == (0, 5)


def test_omega_is_minus_infinity_where_the_rest_of_the_target_does_not_fit() -> None:
    # "a a" needs three frames from the start; from the first "a" at the second to last frame, "_ a" is too long
    omega = ctc_backward_variables(random_log_probs(4, 4, 3), torch.tensor([1, 1]))
    assert torch.isneginf(omega[-2, 1]) and torch.isfinite(omega[-3, 1])
    assert torch.isneginf(omega[-1, :3]).all() and torch.isfinite(omega[-1, 3:]).all()


def test_omega_is_differentiable_gradcheck_float64() -> None:
    logits = torch.randn(5, 4, generator=generator(6), dtype=torch.float64, requires_grad=True)

    def table(z: torch.Tensor) -> torch.Tensor:
        omega = ctc_backward_variables(z.log_softmax(-1), torch.tensor([2, 3]))
        return torch.where(torch.isfinite(omega), omega, torch.zeros_like(omega))

    assert torch.autograd.gradcheck(table, (logits,))


@pytest.mark.parametrize(
    ("log_probs", "target", "error", "pattern"),
    [
        (torch.zeros(6, 2, 4), torch.tensor([1]), ValueError, r"log_probs must have shape \(T, V\) for one sequence"),
        (torch.zeros(6, 4), torch.tensor([[1]]), ValueError, r"target must have shape \(T_y,\) for one sequence"),
        # the one-sequence helpers name their own argument, target (losses review round 22, finding 7)
        (torch.zeros(6, 4), torch.tensor([0]), ValueError, r"^target must not contain the blank label 0, got it at position 0$"),
        (torch.zeros(6, 4), torch.tensor([4]), ValueError, r"^target must lie in \[0, 4\), got 4$"),
        (torch.zeros(6, 4, dtype=torch.long), torch.tensor([1]), TypeError, r"log_probs must be a floating"),
        (torch.zeros(6, 4), torch.tensor([1.0]), TypeError, r"target must be an integer tensor"),
    ],
)
def test_ctc_backward_variables_rejects_bad_input(
    log_probs: torch.Tensor, target: torch.Tensor, error: type, pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        ctc_backward_variables(log_probs, target)
