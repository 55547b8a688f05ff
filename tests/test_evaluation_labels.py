"""coursekit.evaluation: edit distance, label error rate and the unigram overlap reward."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coursekit.evaluation import edit_distance, label_error_rate, unigram_overlap

pytestmark = pytest.mark.models

short_lists = st.lists(st.integers(0, 3), max_size=5)


def edit_distance_by_search(a: list[int], b: list[int]) -> int:
    """The fewest edits, by trying every number of edits k and every way of making k edits (tiny inputs)."""
    frontier, seen = {tuple(a)}, {tuple(a)}
    symbols = set(a) | set(b) | {0}
    for k in itertools.count():
        if tuple(b) in frontier:
            return k
        grown = set()
        for word in frontier:
            for i in range(len(word) + 1):
                grown.update(word[:i] + (s,) + word[i:] for s in symbols)             # insertions
                if i < len(word):
                    grown.add(word[:i] + word[i + 1:])                               # deletions
                    grown.update(word[:i] + (s,) + word[i + 1:] for s in symbols)    # substitutions
        frontier = grown - seen
        seen |= grown
    raise AssertionError("unreachable")


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(a=short_lists, b=st.lists(st.integers(0, 3), max_size=4))
def test_edit_distance_is_the_fewest_edits(a: list[int], b: list[int]) -> None:
    assert edit_distance(a, b) == edit_distance_by_search(a, b) == edit_distance(b, a)


def test_label_error_rate_divides_summed_edits_by_summed_reference_length() -> None:
    assert label_error_rate([[1, 2, 3], []], [[1, 3], [4, 4]]) == pytest.approx((1 + 2) / 4)
    assert label_error_rate([[1, 1, 1, 1]], [[1]]) == 3.0
    with pytest.raises(ValueError, match="references must hold at least one label in total"):
        label_error_rate([[1]], [[]])
    with pytest.raises(ValueError, match="hypotheses must have one entry per reference"):
        label_error_rate([[1]], [[1], [2]])


@settings(max_examples=40, deadline=None)
@given(hypothesis=short_lists, reference=st.lists(st.integers(0, 3), min_size=1, max_size=5))
def test_clipped_overlap_is_the_multiset_intersection_over_the_reference_length(
    hypothesis: list[int], reference: list[int]
) -> None:
    common = sum(min(hypothesis.count(k), reference.count(k)) for k in set(reference))
    assert unigram_overlap(hypothesis, reference) == pytest.approx(common / len(reference))
    assert 0.0 <= unigram_overlap(hypothesis, reference) <= 1.0
    assert unigram_overlap(hypothesis, reference, clipped=False) >= unigram_overlap(hypothesis, reference)


def test_unclipped_overlap_grows_with_every_repeated_reference_token() -> None:
    reference = [4, 0, 0, 7]
    scores = [unigram_overlap(reference + [0] * extra, reference, clipped=False) for extra in range(5)]
    assert scores == [1.0, 1.25, 1.5, 1.75, 2.0]
    assert unigram_overlap(reference + [0] * 4, reference) == 1.0
    with pytest.raises(ValueError, match="reference must hold at least one token"):
        unigram_overlap([1], [])
