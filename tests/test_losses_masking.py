"""sequence_mask, response_mask and turn_mask: against a plain-Python reference, hand examples and their use in losses."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from coursekit.losses import batch_loss, mrt_risk, response_mask, sequence_loss, sequence_mask, turn_mask
from tests.strategies import loss_settings, mask_dtypes, mask_from_lengths, token_loss_batches

pytestmark = [pytest.mark.losses, pytest.mark.a2]


@st.composite
def lengths_and_max_len(draw: st.DrawFn) -> tuple[list[int], int]:
    max_len = draw(st.integers(0, 8))
    lengths = draw(st.lists(st.integers(0, max_len), min_size=1, max_size=5))
    return lengths, max_len


@loss_settings
@given(lengths_and_max_len())
def test_sequence_mask_matches_python_reference(case):
    lengths, max_len = case
    got = sequence_mask(torch.tensor(lengths), max_len)
    assert got.dtype == torch.bool
    assert torch.equal(got, mask_from_lengths(lengths, max_len))
    assert got.sum(dim=-1).tolist() == lengths


@loss_settings
@given(lengths_and_max_len(), st.data())
def test_response_mask_marks_exactly_the_response(case, data):
    lengths, max_len = case
    prompts = [data.draw(st.integers(0, n)) for n in lengths]
    got = response_mask(torch.tensor(prompts), torch.tensor(lengths), max_len)
    expected = [[p <= t < n for t in range(max_len)] for p, n in zip(prompts, lengths)]
    assert got.tolist() == expected
    assert torch.equal(got, sequence_mask(torch.tensor(lengths), max_len) & ~sequence_mask(torch.tensor(prompts), max_len))


def test_sequence_mask_hand_example_and_default_max_len():
    expected = torch.tensor([[True, True, True], [True, False, False], [False, False, False]])
    assert torch.equal(sequence_mask(torch.tensor([3, 1, 0]), 3), expected)
    assert torch.equal(sequence_mask(torch.tensor([3, 1, 0])), expected)
    assert sequence_mask(torch.tensor([2]), 0 + 2).shape == (1, 2)


def test_sequence_mask_with_zero_max_len_and_empty_batch():
    assert sequence_mask(torch.tensor([0, 0]), 0).shape == (2, 0)
    assert sequence_mask(torch.zeros(0, dtype=torch.long), 4).shape == (0, 4)


def test_response_mask_hand_example():
    got = response_mask(torch.tensor([2, 0, 3]), torch.tensor([5, 2, 3]), 6)
    assert got.int().tolist() == [[0, 0, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]


def test_mask_from_lengths_drives_the_padded_batch_example():
    losses = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 3.0, 5.0, 5.0]])
    mask = sequence_mask(torch.tensor([4, 2]), 4)
    assert batch_loss(losses, mask, reduction="token_mean").item() == pytest.approx(10 / 6)
    assert batch_loss(losses, mask, reduction="sequence_mean").item() == pytest.approx(2.0)


def test_masks_follow_the_device_of_lengths():
    # On the meta device (shapes only, no data), so that a mask built on the CPU whatever the lengths' device
    # fails here too, not only where tests/test_losses_cuda.py finds a GPU (losses review, stop 41).
    lengths = torch.tensor([1, 2], device="meta")
    assert sequence_mask(lengths, 3).device == lengths.device
    assert response_mask(torch.tensor([0, 1], device="meta"), lengths, 3).device == lengths.device


@loss_settings
@given(token_loss_batches(), mask_dtypes)
def test_integer_masks_act_as_boolean_masks_in_every_reduction(losses_and_mask, mask_dtype):
    losses, mask = losses_and_mask
    as_dtype = mask.to(mask_dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for reduction in ("token_mean", "sequence_mean", "sum"):
            torch.testing.assert_close(batch_loss(losses, as_dtype, reduction=reduction),
                                       batch_loss(losses, mask, reduction=reduction))
    torch.testing.assert_close(sequence_loss(losses, as_dtype), sequence_loss(losses, mask))
    if bool(mask.any(dim=-1).all()):
        torch.testing.assert_close(mrt_risk(losses, losses, mask=as_dtype), mrt_risk(losses, losses, mask=mask))


# --- turn_mask ---------------------------------------------------------------------------

@st.composite
def conversations(draw: st.DrawFn) -> tuple[list[list[int]], list[list[bool]], int]:
    num_turns = draw(st.integers(0, 4))
    rows = draw(st.integers(1, 4))
    lengths = [draw(st.lists(st.integers(0, 3), min_size=num_turns, max_size=num_turns)) for _ in range(rows)]
    scored = [draw(st.lists(st.booleans(), min_size=num_turns, max_size=num_turns)) for _ in range(rows)]
    max_len = max((sum(row) for row in lengths), default=0) + draw(st.integers(0, 2))
    return lengths, scored, max_len


@loss_settings
@given(conversations())
def test_turn_mask_matches_python_reference(case):
    lengths, scored, max_len = case
    num_turns = len(lengths[0])
    got = turn_mask(torch.tensor(lengths, dtype=torch.long).view(len(lengths), num_turns),
                    torch.tensor(scored, dtype=torch.bool).view(len(lengths), num_turns), max_len)
    expected = []
    for row_lengths, row_scored in zip(lengths, scored):
        row = [flag for length, flag in zip(row_lengths, row_scored) for _ in range(length)]
        expected.append(row + [False] * (max_len - len(row)))
    assert got.dtype == torch.bool
    assert got.tolist() == expected


@pytest.mark.parametrize("dtype", [torch.long, torch.int32, torch.uint8])
def test_turn_mask_accepts_integer_scored_turns_as_the_boolean_ones(dtype):
    # The package rule: masks may be boolean or integer 0/1 (what Hugging Face and TRL pass).
    lengths = torch.tensor([[3, 2, 2, 1], [2, 3, 0, 0]])
    scored = torch.tensor([[False, True, False, True], [False, True, False, False]])
    expected = [[0, 0, 0, 1, 1, 0, 0, 1], [0, 0, 1, 1, 1, 0, 0, 0]]    # by hand from the lengths
    assert turn_mask(lengths, scored.to(dtype)).int().tolist() == expected
    assert torch.equal(turn_mask(lengths, scored.to(dtype)), turn_mask(lengths, scored))


def test_turn_mask_of_a_two_turn_conversation_is_the_response_mask():
    # a prompt turn and a response turn are exactly response_mask's case
    lengths = torch.tensor([[3, 2], [1, 4]])
    got = turn_mask(lengths, torch.tensor([[False, True], [False, True]]), 6)
    assert torch.equal(got, response_mask(lengths[:, 0], lengths.sum(-1), 6))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: turn_mask(torch.tensor([[1.0]]), torch.tensor([[True]])), TypeError, "turn_lengths must be an integer"),
        (lambda: turn_mask(torch.tensor([[1]]), torch.tensor([[1.0]])), TypeError,
         r"scored_turns must be a boolean tensor or an integer tensor of 0s and 1s .* got dtype torch.float32"),
        (lambda: turn_mask(torch.tensor([[1, 1]]), torch.tensor([[1, 2]])), ValueError,
         "scored_turns must hold only 0 and 1, got 2"),
        (lambda: turn_mask(torch.tensor([1, 2]), torch.tensor([True, False])), ValueError, "turn_lengths must be 2-D"),
        (lambda: turn_mask(torch.tensor([[1, 2]]), torch.tensor([[True]])), ValueError, "scored_turns must have shape"),
        (lambda: turn_mask(torch.tensor([[1, -2]]), torch.tensor([[True, False]])), ValueError, "turn_lengths must be >= 0"),
        (lambda: turn_mask(torch.tensor([[2, 2]]), torch.tensor([[True, False]]), 3), ValueError, "must be <= max_len=3"),
    ],
)
def test_turn_mask_names_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()
