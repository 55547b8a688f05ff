"""Tests of coursekit.losses.ctc_loss and ctc_forward_variables against F.ctc_loss and by hand.

PyTorch's kernel returns, as the gradient "with respect to log_probs", the
gradient with respect to the logits that feed the log-softmax. So gradients are
compared on those logits: ``log_probs = logits.log_softmax(-1)``, then autograd
through both losses. Set ``COURSEKIT_TEST_DEVICE=cuda`` to run on a GPU.
"""

from __future__ import annotations

import itertools
import math
import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from coursekit.losses import ctc_backward_variables, ctc_forward_variables, ctc_loss
from tests.strategies import float_dtypes, generator, gradcheck64, loss_settings, seeds

pytestmark = [pytest.mark.losses, pytest.mark.a5]

DEVICE = torch.device(os.environ.get("COURSEKIT_TEST_DEVICE", "cpu"))
REDUCTIONS = ("mean", "sum", "none")


def brute_force_nll(probs: torch.Tensor, target: list[int], blank: int = 0) -> float:
    """-log p(y|x) by enumerating every frame-level path (tiny T and C only)."""
    num_frames, num_classes = probs.shape
    total = 0.0
    for path in itertools.product(range(num_classes), repeat=num_frames):
        merged = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
        if [c for c in merged if c != blank] == target:
            total += math.prod(float(probs[t, c]) for t, c in enumerate(path))
    return -math.log(total) if total > 0 else math.inf


def make_batch(
    *, seed: int, num_frames: int, num_classes: int, target_lengths: list[int], input_lengths: list[int],
    blank: int = 0, dtype: torch.dtype = torch.float64, max_labels: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits (T, N, C) requiring grad, padded targets (N, S) avoiding blank, lengths."""
    g = generator(seed)
    batch = len(target_lengths)
    logits = (torch.randn(num_frames, batch, num_classes, generator=g, dtype=torch.float64) * 2).to(DEVICE, dtype)
    logits.requires_grad_(True)
    width = max(max_labels or 0, max(target_lengths, default=0), 1)
    # Labels from the non-blank classes, with few classes so repeats (which force blanks) occur.
    draws = torch.randint(0, num_classes - 1, (batch, width), generator=g)
    targets = torch.where(draws >= blank, draws + 1, draws)
    return (
        logits,
        targets.to(DEVICE),
        torch.tensor(input_lengths, device=DEVICE),
        torch.tensor(target_lengths, device=DEVICE),
    )


def concatenate(targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    return torch.cat([targets[i, : int(n)] for i, n in enumerate(target_lengths)])


# A batch with everything at once: a full-length input, a short one, an empty target,
# an impossible alignment (4 labels with a repeat need 5 frames; it gets 4), and a
# zero-length input with an empty target (loss 0).
MIXED = dict(num_frames=9, num_classes=5, target_lengths=[4, 2, 0, 4, 3, 0], input_lengths=[9, 5, 3, 4, 9, 0])


def mixed_batch(seed: int, blank: int = 0, dtype: torch.dtype = torch.float64):
    logits, targets, input_lengths, target_lengths = make_batch(seed=seed, blank=blank, dtype=dtype, **MIXED)
    repeat = 1 if blank != 1 else 2
    targets[3, :4] = torch.tensor([repeat, repeat, 3 if blank != 3 else 4, repeat])
    return logits, targets, input_lengths, target_lengths


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
def test_ctc_matches_pytorch_on_a_mixed_batch(reduction: str, zero_infinity: bool, layout: str) -> None:
    logits, targets, input_lengths, target_lengths = mixed_batch(seed=0)
    log_probs = logits.log_softmax(-1)
    ours_targets = targets if layout == "padded" else concatenate(targets, target_lengths)
    expected = F.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction=reduction, zero_infinity=zero_infinity)
    actual = ctc_loss(log_probs, ours_targets, input_lengths, target_lengths, reduction=reduction, zero_infinity=zero_infinity)
    torch.testing.assert_close(actual, expected)
    if reduction == "none":
        assert math.isinf(float(actual[3].detach())) != zero_infinity and float(actual[5].detach()) == 0
    if zero_infinity:
        (expected_grad,) = torch.autograd.grad(expected.sum(), logits, retain_graph=True)
        (actual_grad,) = torch.autograd.grad(actual.sum(), logits)
        torch.testing.assert_close(actual_grad, expected_grad)
        assert bool((actual_grad[:, 3] == 0).all()), "an impossible alignment must contribute no gradient"


def test_ctc_gradient_of_the_possible_sequences_is_unaffected_by_an_impossible_one() -> None:
    logits, targets, input_lengths, target_lengths = mixed_batch(seed=1)
    losses = ctc_loss(logits.log_softmax(-1), targets, input_lengths, target_lengths, reduction="none")
    finite = torch.isfinite(losses)
    assert finite.tolist() == [True, True, True, False, True, True]
    (grad,) = torch.autograd.grad(losses[finite].sum(), logits)
    reference = F.ctc_loss(logits.log_softmax(-1), targets, input_lengths, target_lengths, reduction="none")
    (expected_grad,) = torch.autograd.grad(reference[finite].sum(), logits)
    # PyTorch's kernel writes nan into the impossible sequence's column even with a zero
    # upstream gradient; ours leaves it 0, and the other columns agree.
    assert bool((grad[:, ~finite] == 0).all())
    torch.testing.assert_close(grad[:, finite], expected_grad[:, finite])


@loss_settings
@given(
    batch=st.integers(1, 4),
    num_frames=st.integers(1, 8),
    num_classes=st.integers(2, 5),
    blank_pick=st.integers(0, 4),
    reduction=st.sampled_from(REDUCTIONS),
    zero_infinity=st.booleans(),
    dtype=float_dtypes,
    seed=seeds,
    data=st.data(),
)
def test_ctc_matches_pytorch_on_random_batches(
    batch, num_frames, num_classes, blank_pick, reduction, zero_infinity, dtype, seed, data
) -> None:
    blank = blank_pick % num_classes
    target_lengths = data.draw(st.lists(st.integers(0, 5), min_size=batch, max_size=batch))
    input_lengths = data.draw(st.lists(st.integers(0, num_frames), min_size=batch, max_size=batch))
    logits, targets, in_len, tgt_len = make_batch(
        seed=seed, num_frames=num_frames, num_classes=num_classes, target_lengths=target_lengths,
        input_lengths=input_lengths, blank=blank, dtype=dtype, max_labels=6,
    )
    log_probs = logits.log_softmax(-1)
    kwargs = dict(blank=blank, reduction=reduction, zero_infinity=zero_infinity)
    expected = F.ctc_loss(log_probs, targets, in_len, tgt_len, **kwargs)
    actual = ctc_loss(log_probs, targets, in_len, tgt_len, **kwargs)
    tolerance = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {}
    torch.testing.assert_close(actual, expected, **tolerance)
    if bool(torch.isfinite(expected).all()):
        (expected_grad,) = torch.autograd.grad(expected.sum(), logits, retain_graph=True)
        (actual_grad,) = torch.autograd.grad(actual.sum(), logits)
        torch.testing.assert_close(actual_grad, expected_grad, **tolerance)


@pytest.mark.parametrize(
    ("target", "num_frames"), [([1], 1), ([1, 2], 3), ([1, 1], 3), ([2, 1, 2], 4), ([], 2), ([1, 1], 2)]
)
def test_ctc_equals_brute_force_path_enumeration(target: list[int], num_frames: int) -> None:
    logits = torch.randn(num_frames, 3, generator=generator(len(target) * 10 + num_frames), dtype=torch.float64)
    log_probs = logits.log_softmax(-1)
    expected = brute_force_nll(log_probs.exp(), target)
    actual = ctc_loss(
        log_probs.unsqueeze(1).to(DEVICE), torch.tensor([target + [0]]).to(DEVICE), [num_frames], [len(target)],
        reduction="sum",
    )
    assert float(actual) == pytest.approx(expected, rel=1e-12)


def test_ctc_mean_divides_by_target_length_clamped_to_one() -> None:
    logits, targets, input_lengths, target_lengths = mixed_batch(seed=2)
    losses = ctc_loss(logits.log_softmax(-1), targets, input_lengths, target_lengths, reduction="none", zero_infinity=True).detach()
    mean = ctc_loss(logits.log_softmax(-1), targets, input_lengths, target_lengths, zero_infinity=True).detach()
    by_hand = sum(float(losses[i]) / max(int(target_lengths[i]), 1) for i in range(len(losses))) / len(losses)
    assert float(mean) == pytest.approx(by_hand, rel=1e-12)


def test_ctc_impossible_alignment_is_inf_or_zero() -> None:
    # "1 1" needs a blank between the two 1s: three frames, and only two are given.
    log_probs = torch.full((2, 1, 3), 1 / 3, dtype=torch.float64, device=DEVICE).log()
    targets = torch.tensor([[1, 1]], device=DEVICE)
    assert ctc_loss(log_probs, targets, [2], [2], reduction="sum") == math.inf
    assert ctc_loss(log_probs, targets, [2], [2], reduction="sum", zero_infinity=True) == 0
    # "1 2" needs only two frames.
    assert float(ctc_loss(log_probs, torch.tensor([[1, 2]], device=DEVICE), [2], [2], reduction="sum")) == pytest.approx(
        2 * math.log(3)
    )


def test_ctc_ignores_whatever_lies_past_the_target_and_input_lengths() -> None:
    logits, targets, input_lengths, target_lengths = mixed_batch(seed=3)
    log_probs = logits.detach().log_softmax(-1)
    before = ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction="none")
    scrambled_targets = targets.clone()
    for i, n in enumerate(target_lengths.tolist()):
        scrambled_targets[i, n:] = 999  # not even a valid class
    scrambled_log_probs = log_probs.clone()
    for i, n in enumerate(input_lengths.tolist()):
        scrambled_log_probs[n:, i] = float("nan")
    after = ctc_loss(scrambled_log_probs, scrambled_targets, input_lengths, target_lengths, reduction="none")
    torch.testing.assert_close(after, before)


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_ctc_a_nan_in_log_probs_gives_nan_wherever_pytorchs_does(zero_infinity: bool) -> None:
    # Regression: a nan read by the recursion was taken for an impossible alignment (inf, and 0 under
    # zero_infinity); F.ctc_loss gives nan, and zero_infinity leaves it nan. One nan at each
    # (frame, class) in turn, for the first sequence of a batch of two.
    clean = torch.randn(4, 2, 4, generator=generator(10), dtype=torch.float64).log_softmax(-1)
    targets, input_lengths, target_lengths = torch.tensor([[1, 2], [3, 3]]), [4, 4], [2, 2]
    outcomes = set()
    for frame, klass in itertools.product(range(4), range(4)):
        log_probs = clean.clone()
        log_probs[frame, 0, klass] = float("nan")
        kwargs = dict(reduction="none", zero_infinity=zero_infinity)
        expected = F.ctc_loss(log_probs, targets, input_lengths, target_lengths, **kwargs)
        actual = ctc_loss(log_probs, targets, input_lengths, target_lengths, **kwargs)
        torch.testing.assert_close(actual, expected, equal_nan=True, msg=f"nan at frame {frame}, class {klass}")
        outcomes.add(bool(actual[0].isnan()))
    assert outcomes == {True, False}, "some nan must lie on a path and some off every path"
    # the other sequence of the batch is untouched
    log_probs = clean.clone()
    log_probs[1, 0, 0] = float("nan")
    both = ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction="none", zero_infinity=zero_infinity)
    assert bool(both[0].isnan()) and bool(both[1].isfinite())


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ctc_gradcheck_float64(reduction: str) -> None:
    logits, targets, input_lengths, target_lengths = make_batch(
        seed=4, num_frames=5, num_classes=4, target_lengths=[2, 1, 0], input_lengths=[5, 3, 2]
    )
    log_probs = torch.randn(5, 3, 4, dtype=torch.float64, generator=generator(5)).to(DEVICE).requires_grad_(True)
    assert gradcheck64(lambda lp: ctc_loss(lp, targets, input_lengths, target_lengths, reduction=reduction), (log_probs,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("layout", ["padded, no label column", "padded", "concatenated"])
def test_ctc_matches_pytorch_when_every_target_is_empty(reduction: str, layout: str) -> None:
    # Regression: with no label in the whole batch the recursion has one state, and it used to fail
    # ("stack expects each tensor to be equal size") where PyTorch returns -log of the all-blank paths.
    logits = torch.randn(5, 3, 4, generator=generator(8), dtype=torch.float64).to(DEVICE).requires_grad_(True)
    targets = {
        "padded, no label column": torch.zeros(3, 0, dtype=torch.long),
        "padded": torch.ones(3, 2, dtype=torch.long),
        "concatenated": torch.zeros(0, dtype=torch.long),
    }[layout].to(DEVICE)
    input_lengths, target_lengths = torch.tensor([5, 3, 0]), torch.tensor([0, 0, 0])
    expected = F.ctc_loss(logits.log_softmax(-1), targets, input_lengths, target_lengths, reduction=reduction)
    actual = ctc_loss(logits.log_softmax(-1), targets, input_lengths, target_lengths, reduction=reduction)
    torch.testing.assert_close(actual, expected)
    (expected_grad,) = torch.autograd.grad(expected.sum(), logits)
    (actual_grad,) = torch.autograd.grad(actual.sum(), logits)
    torch.testing.assert_close(actual_grad, expected_grad)
    # By hand: the only path is all blanks, so the loss is -sum_t log p_t(blank) over the input's frames.
    blank_nll = -logits.detach().log_softmax(-1)[:, :, 0]
    by_hand = torch.stack([blank_nll[:n, b].sum() for b, n in enumerate(input_lengths.tolist())])
    torch.testing.assert_close(ctc_loss(logits.detach().log_softmax(-1), targets, input_lengths, target_lengths,
                                        reduction="none"), by_hand)


def test_ctc_forward_variables_of_an_empty_target_are_the_all_blank_prefixes() -> None:
    log_probs = torch.randn(4, 3, generator=generator(9), dtype=torch.float64).log_softmax(-1)
    table = ctc_forward_variables(log_probs, torch.zeros(0, dtype=torch.long))
    assert table.shape == (4, 1)
    torch.testing.assert_close(table[:, 0], log_probs[:, 0].cumsum(0))


def test_ctc_forward_and_backward_variables_of_no_frames_are_empty_tables() -> None:
    # Regression: with T = 0 the forward table crashed in torch.stack; both tables are (0, 2 T_y + 1).
    for target in (torch.tensor([1]), torch.tensor([1, 2]), torch.zeros(0, dtype=torch.long)):
        forward = ctc_forward_variables(torch.zeros(0, 3, dtype=torch.float64), target)
        backward = ctc_backward_variables(torch.zeros(0, 3, dtype=torch.float64), target)
        assert forward.shape == backward.shape == (0, 2 * target.numel() + 1)
        assert forward.dtype == backward.dtype == torch.float64


def test_ctc_forward_variables_count_paths_under_uniform_probabilities() -> None:
    # Uniform over C = 3: exp(alpha_t(s)) * 3^(t+1) counts the path prefixes ending in state s.
    log_probs = torch.full((3, 3), 1 / 3, dtype=torch.float64).log()
    table = ctc_forward_variables(log_probs, torch.tensor([1, 2]))
    counts = (table.exp() * 3.0 ** torch.arange(1, 4, dtype=torch.float64).unsqueeze(1)).round()
    assert counts.tolist() == [[1, 1, 0, 0, 0], [1, 2, 1, 1, 0], [1, 3, 3, 4, 1]]


def test_ctc_forward_variables_end_in_the_loss() -> None:
    logits = torch.randn(7, 5, generator=generator(6), dtype=torch.float64)
    log_probs = logits.log_softmax(-1)
    target = torch.tensor([3, 3, 1])
    table = ctc_forward_variables(log_probs, target, blank=2)
    assert table.shape == (7, 7)
    loss = ctc_loss(log_probs.unsqueeze(1), target.unsqueeze(0), [7], [3], blank=2, reduction="sum")
    torch.testing.assert_close(-torch.logsumexp(table[-1, -2:], 0), loss)
    reference = F.ctc_loss(log_probs.unsqueeze(1), target.unsqueeze(0), [7], [3], blank=2, reduction="sum")
    torch.testing.assert_close(loss, reference)


# --- bad input -------------------------------------------------------------------------------------


def valid_arguments() -> dict:
    return dict(
        log_probs=torch.zeros(6, 2, 4),
        targets=torch.tensor([[1, 2, 3], [3, 1, 0]]),
        input_lengths=torch.tensor([6, 5]),
        target_lengths=torch.tensor([3, 2]),
    )


@pytest.mark.parametrize(
    ("change", "error", "pattern"),
    [
        ({"log_probs": torch.zeros(6, 4)}, ValueError, r"log_probs must have shape \(T, N, C\), got \(6, 4\)"),
        ({"log_probs": torch.zeros(6, 2, 4, dtype=torch.long)}, TypeError, r"log_probs must be a floating-point"),
        ({"targets": torch.tensor([[1.0, 2.0]])}, TypeError, r"targets must be an integer tensor"),
        ({"targets": torch.tensor([[1, 2, 3]])}, ValueError, r"targets must have shape \(N, S\) with N = 2, got \(1, 3\)"),
        ({"targets": torch.zeros(2, 3, 1, dtype=torch.long)}, ValueError, r"targets must be \(N, S\) padded or 1-D"),
        ({"target_lengths": torch.tensor([4, 2])}, ValueError, r"target_lengths must be <= S = targets.shape\[1\] = 3, got 4"),
        ({"input_lengths": torch.tensor([7, 5])}, ValueError, r"input_lengths must be <= T = log_probs.shape\[0\] = 6, got 7"),
        ({"input_lengths": torch.tensor([-1, 5])}, ValueError, r"input_lengths must be >= 0, got -1"),
        ({"input_lengths": torch.tensor([6])}, ValueError, r"input_lengths must have shape \(2,\).*got \(1,\)"),
        ({"input_lengths": [6.0, 5.0]}, TypeError, r"input_lengths must be an integer tensor or a sequence of ints"),
        ({"target_lengths": torch.tensor([3.0, 2.0])}, TypeError, r"target_lengths must be an integer tensor"),
        ({"targets": torch.tensor([1, 2, 3, 3])}, ValueError, r"sum\(target_lengths\) = 5 labels, got 4"),
        ({"targets": torch.tensor([[1, 2, 4], [3, 1, 0]])}, ValueError, r"targets must lie in \[0, 4\).*got 4"),
        ({"targets": torch.tensor([[1, 0, 3], [3, 1, 0]])}, ValueError, r"targets must not contain the blank label 0"),
    ],
)
def test_ctc_rejects_bad_input(change: dict, error: type, pattern: str) -> None:
    arguments = valid_arguments() | change
    with pytest.raises(error, match=pattern):
        ctc_loss(**arguments)


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"blank": 4}, ValueError, r"blank must lie in \[0, 4\) \(C = log_probs.shape\[2\]\), got 4"),
        ({"blank": -1}, ValueError, r"blank must lie in \[0, 4\).*got -1"),
        ({"blank": 1.0}, TypeError, r"blank must be an int, got float"),
        ({"reduction": "token_mean"}, ValueError, r"reduction must be one of 'mean', 'sum', 'none', got 'token_mean'"),
    ],
)
def test_ctc_rejects_bad_options(options: dict, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        ctc_loss(**valid_arguments(), **options)


def test_ctc_forward_variables_rejects_a_batch() -> None:
    with pytest.raises(ValueError, match=r"log_probs must have shape \(T, V\) for one sequence, got \(6, 2, 4\)"):
        ctc_forward_variables(torch.zeros(6, 2, 4), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"target must have shape \(T_y,\) for one sequence, got \(1, 1\)"):
        ctc_forward_variables(torch.zeros(6, 4), torch.tensor([[1]]))


@pytest.mark.parametrize("function", [ctc_forward_variables, ctc_backward_variables])
@pytest.mark.parametrize(
    ("target", "options", "pattern"),
    [
        ([1], {"blank": 4}, r"blank must lie in \[0, 4\) \(V = log_probs.shape\[1\]\), got 4"),
        ([1, 4], {}, r"^target must lie in \[0, 4\), got 4$"),
        ([1, -1], {}, r"^target must lie in \[0, 4\), got -1$"),
        ([2, 0], {}, r"^target must not contain the blank label 0, got it at position 1$"),
        ([3], {"blank": 3}, r"^target must not contain the blank label 3, got it at position 0$"),
    ],
)
def test_ctc_one_sequence_helpers_name_their_own_arguments(function, target, options, pattern) -> None:
    # Losses review round 22, F7: the messages spoke of ctc_loss's batched arguments (C = log_probs.shape[2],
    # targets, target_lengths), which these functions do not have.
    with pytest.raises(ValueError, match=pattern):
        function(torch.zeros(6, 4), torch.tensor(target), **options)


@pytest.mark.parametrize("function", [ctc_forward_variables, ctc_backward_variables])
def test_a_negative_label_is_refused_by_the_indexing_kernel_where_values_are_not_read(monkeypatch, function) -> None:
    """Losses API review (stop 44, L2): where the value checks do not run (an accelerator without
    COURSEKIT_CHECK_VALUES), ctc_backward_variables indexed its emissions and read the label -1 as class V - 1,
    returning a table of neither target; the forward variables gather, and the kernel refuses the index."""
    import coursekit.losses.ctc as ctc_module

    log_probs = torch.randn(4, 5, generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    monkeypatch.setattr(ctc_module, "reads_values", lambda tensor: False)
    with pytest.raises(RuntimeError, match="out of bounds"):
        function(log_probs, torch.tensor([1, -1]))
    torch.testing.assert_close(function(log_probs, torch.tensor([1, 4])),
                               function(log_probs.double(), torch.tensor([1, 4])).float())


def test_ctc_loss_has_the_signature_of_pytorchs_and_takes_its_arguments_by_position():
    import inspect

    ours = inspect.signature(ctc_loss).parameters
    theirs = inspect.signature(F.ctc_loss).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [(p.name, p.kind, p.default) for p in theirs.values()]
    logits, targets, input_lengths, target_lengths = mixed_batch(seed=7, blank=2)
    log_probs = logits.detach().log_softmax(-1)
    positional = (log_probs, targets, input_lengths, target_lengths, 2, "sum", True)
    torch.testing.assert_close(ctc_loss(*positional), F.ctc_loss(*positional))


def test_ctc_gradient_is_the_same_bit_for_bit_on_every_run():
    # No step of the backward pass accumulates into one element from several places in an unordered way
    # (the emissions are gathered one label position at a time), so repeated runs agree exactly, also on CUDA.
    # On the CPU every backward kernel is deterministic, so only a CUDA run can fail (losses review, stop 41).
    if DEVICE.type != "cuda":
        pytest.skip("only a CUDA run can tell (COURSEKIT_TEST_DEVICE=cuda): CPU kernels are deterministic")
    logits, targets, input_lengths, target_lengths = mixed_batch(seed=8)
    grads = []
    for _ in range(2):
        loss = ctc_loss(logits.log_softmax(-1), targets, input_lengths, target_lengths, zero_infinity=True)
        grads.append(torch.autograd.grad(loss, logits)[0])
    assert torch.equal(grads[0], grads[1])


def test_a_class_masked_at_a_frame_gets_gradient_zero_where_pytorchs_kernel_gives_nan():
    """Losses review (stop 41, round 5): a -inf logit (a class masked out at one frame) gives -inf in log_probs;
    the loss is PyTorch's, the gradient is 0 at the masked entries and PyTorch's at every frame without one."""
    logits = torch.randn(8, 1, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    logits[2, 0, 3] = logits[5, 0, 1] = float("-inf")
    logits.requires_grad_()
    targets = torch.tensor([[1, 3]])
    ours = ctc_loss(logits.log_softmax(-1), targets, [8], [2])
    theirs = F.ctc_loss(logits.log_softmax(-1), targets, [8], [2])
    torch.testing.assert_close(ours, theirs)
    (our_grad,) = torch.autograd.grad(ours, logits)
    (their_grad,) = torch.autograd.grad(theirs, logits)
    assert bool(torch.isfinite(our_grad).all())
    assert our_grad[2, 0, 3].item() == 0.0 and our_grad[5, 0, 1].item() == 0.0
    assert bool(torch.isnan(their_grad[[2, 5]]).all())
    clean = [t for t in range(8) if t not in (2, 5)]
    torch.testing.assert_close(our_grad[clean], their_grad[clean])
    # at the masked frames, the gradient of PyTorch's loss with the masked logits at -300 instead (probability 0
    # in float64 for every purpose here)
    finite = logits.detach().masked_fill(torch.isinf(logits), -300.0).requires_grad_()
    (finite_grad,) = torch.autograd.grad(F.ctc_loss(finite.log_softmax(-1), targets, [8], [2]), finite)
    torch.testing.assert_close(our_grad[[2, 5]], finite_grad[[2, 5]])
