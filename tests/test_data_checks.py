"""The shared argument checks of coursekit.data, coursekit.models and the training loop, at their public boundary."""

from __future__ import annotations

import pytest

from coursekit.models.rnn import RNNLM

pytestmark = pytest.mark.models


@pytest.mark.parametrize("huge", [10**400, -(10**400), 10**5000], ids=["1e400", "-1e400", "1e5000"])
def test_an_int_beyond_the_float_range_is_a_value_error_naming_the_argument(huge: int) -> None:
    size = f"{'a negative' if huge < 0 else 'an'} int of {huge.bit_length()} bits"
    with pytest.raises(ValueError, match=rf"dropout must be a number in the float range, got {size}$"):
        RNNLM(vocab_size=10, dropout=huge)


def test_a_huge_int_below_the_minimum_is_described_by_its_size_not_printed() -> None:
    # str() of an int of more than 4300 digits raises a ValueError of its own, about the digits.
    # The sign stays: "must be an int >= 2, got an int of 16610 bits" would read as a large positive value.
    with pytest.raises(ValueError, match=r"vocab_size must be an int >= 2, got a negative int of 16610 bits$"):
        RNNLM(vocab_size=-(10**5000))


def test_a_small_int_is_still_printed_as_it_was_given() -> None:
    with pytest.raises(ValueError, match=r"vocab_size must be an int >= 2, got 1$"):
        RNNLM(vocab_size=1)
