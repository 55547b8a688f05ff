"""The shared argument checks of coursekit.data, coursekit.models and the training loop, at their public boundary."""

from __future__ import annotations

import pytest
import torch

from coursekit.data.batching import stream_values, tbptt_windows, token_budget_batches, token_stream
from coursekit.data.translation import number_to_words, translation_task
from coursekit.data.vocab import Vocab
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


HUGE = 10**5000
HUGE_TEXT = "an int of 16610 bits"

#: Every coursekit.data message that shows a received int it formats itself, called with an int of
#: more than 4300 digits: each must name its argument and describe the int, not raise str()'s error.
HUGE_INT_MESSAGES = [
    ("number_to_words", lambda: number_to_words(HUGE), rf"number must lie in \[0, 9999\], got {HUGE_TEXT}$"),
    ("translation_task target_noise", lambda: translation_task(target_noise=10**300),
     r"target_noise must lie in \[0, 1\], got an int of 997 bits$"),
    ("translation_task num_train", lambda: translation_task(num_train=HUGE),
     rf"num_train \+ num_valid \+ num_test must be <= \d+ numbers, got {HUGE_TEXT}$"),
    ("translation_task num_ood", lambda: translation_task(num_ood=HUGE), rf"num_ood must be <= \d+ numbers, got {HUGE_TEXT}$"),
    ("token_budget_batches negative length", lambda: token_budget_batches([3, -HUGE], 8, seed=0),
     rf"lengths must be >= 0, got a negative int of 16610 bits$"),
    ("token_budget_batches long length", lambda: token_budget_batches([3, HUGE], 8, seed=0),
     rf"every length must fit the budget max_tokens=8, got a length of {HUGE_TEXT}$"),
    ("tbptt_windows step", lambda: tbptt_windows(torch.zeros(1, 4, dtype=torch.long), HUGE, 1),
     rf"bptt must be >= step={HUGE_TEXT} .*, got 1$"),
    ("token_stream batch_size", lambda: token_stream([[5, 6]], HUGE), rf"batch_size={HUGE_TEXT} is too large"),
    ("stream_values batch_size", lambda: stream_values([[0.5, 0.1]], HUGE), rf"batch_size={HUGE_TEXT} is too large"),
    ("Vocab.id_token", lambda: Vocab(["a", "b"]).id_token(HUGE), rf"token_id must lie in \[0, \d+\), got {HUGE_TEXT}$"),
    ("Vocab.decode", lambda: Vocab(["a", "b"]).decode([HUGE]), rf"ids must lie in \[0, \d+\), got {HUGE_TEXT}$"),
]


@pytest.mark.parametrize(("case", "call", "message"), HUGE_INT_MESSAGES, ids=[c[0] for c in HUGE_INT_MESSAGES])
def test_every_data_message_describes_a_huge_int_by_its_size(case, call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_a_data_message_still_prints_a_small_int_as_given() -> None:
    with pytest.raises(ValueError, match=r"number must lie in \[0, 9999\], got 10000$"):
        number_to_words(10000)
    with pytest.raises(ValueError, match=r"bptt must be >= step=3 .*, got 2$"):
        tbptt_windows(torch.zeros(1, 4, dtype=torch.long), 3, 2)
