"""coursekit.data.translation: number words, disjoint splits, the out-of-distribution test."""

from __future__ import annotations

import random

import pytest

from coursekit.data import (
    number_to_digits,
    number_to_words,
    one_digit_edit,
    preference_pairs,
    translation,
    translation_task,
)

pytestmark = pytest.mark.models


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (0, "zero"), (7, "seven"), (13, "thirteen"), (20, "twenty"), (42, "forty two"),
        (100, "one hundred"), (312, "three hundred twelve"), (1000, "one thousand"),
        (2005, "two thousand five"), (9999, "nine thousand nine hundred ninety nine"),
    ],
)
def test_number_words_match_hand_written_english(number, words):
    assert number_to_words(number) == words


def test_digits_are_space_separated():
    assert number_to_digits(2005) == "2 0 0 5"


def test_words_are_unique_per_number():
    assert len({number_to_words(n) for n in range(10000)}) == 10000


def test_splits_are_disjoint_and_ood_is_longer():
    task = translation_task(seed=0)
    sources = [{s for s, _ in split} for split in (task.train, task.valid, task.test, task.ood)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not sources[i] & sources[j]
    longest_in = max(len(s.split()) for split in (task.train, task.valid, task.test) for s, _ in split)
    assert longest_in <= task.max_in_distribution_words
    assert min(len(s.split()) for s, _ in task.ood) > longest_in
    training_words = {w for s, _ in task.train for w in s.split()}
    assert {w for s, _ in task.ood for w in s.split()} <= training_words
    for source, target in task.test:
        assert number_to_digits(int(target.replace(" ", ""))) == target
        assert number_to_words(int(target.replace(" ", ""))) == source


def test_same_seed_same_splits_other_seed_other_splits():
    assert translation_task(seed=1) == translation_task(seed=1)
    assert translation_task(seed=1).train != translation_task(seed=2).train


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"seed": -1}, "seed"), ({"num_train": -5}, "num_train"), ({"num_train": 5000}, "num_train"),
     ({"num_ood": 10**6}, "num_ood"), ({"max_in_distribution_words": 0}, "max_in_distribution_words")],
)
def test_bad_arguments_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        translation_task(**kwargs)


def test_number_out_of_range_raises():
    with pytest.raises(ValueError, match="number"):
        number_to_words(10000)
    with pytest.raises(ValueError, match="number"):
        number_to_words(-1)


# --- preference pairs ----------------------------------------------------------------------

def test_one_digit_edits_change_the_number_and_the_length_as_named():
    rng = random.Random(5)
    for target in ("3 0 1 2", "7 5", "9 9 9"):
        digits = target.split()
        for edit, length_change in (("substitute", 0), ("insert", 1), ("delete", -1)):
            edited = one_digit_edit(target, edit, rng)
            assert edited != target and all(d in "0123456789" for d in edited.split())
            assert len(edited.split()) == len(digits) + length_change
            if edit == "substitute":
                assert sum(a != b for a, b in zip(edited.split(), digits)) == 1


@pytest.mark.parametrize(
    ("target", "edit", "message"),
    [("1 2", "swap", "edit"), ("", "insert", "target must hold at least one digit"),
     ("7", "delete", "needs a target of two digits or more")],
)
def test_one_digit_edit_rejects_bad_arguments(target, edit, message):
    with pytest.raises(ValueError, match=message):
        one_digit_edit(target, edit, random.Random(0))


def test_preference_pairs_choose_the_reference_and_cycle_through_the_edits():
    task = translation_task(seed=0, num_train=30, num_valid=1, num_test=1, num_ood=1)
    pairs = preference_pairs(task.train, seed=2)
    assert [p.chosen for p in pairs] == [t for _, t in task.train]
    assert [p.source for p in pairs] == [s for s, _ in task.train]
    expected = ["substitute", "insert", "delete"] * 10
    for pair, edit in zip(pairs, expected):
        want = "insert" if edit == "delete" and len(pair.chosen.split()) == 1 else edit
        assert pair.edit == want and pair.rejected != pair.chosen
    assert preference_pairs(task.train, seed=2) == pairs
    assert preference_pairs(task.train, seed=3) != pairs
    with pytest.raises(ValueError, match="pairs must hold at least one"):
        preference_pairs([])


def _unseen_ood_words(task) -> set[str]:
    return {w for s, _ in task.ood for w in s.split()} - {w for s, _ in task.train for w in s.split()}


@pytest.mark.parametrize("seed", range(20))
def test_with_the_default_sizes_the_ood_test_uses_only_training_words(seed):
    # The module docstring's condition, for the seeds it names.
    assert not _unseen_ood_words(translation_task(seed=seed))


def test_the_module_docstring_counts_the_words_an_ood_source_can_hold():
    # Losses review round 22, F2: the docstring said 28. Counted from the word tables: ten ones, ten
    # teens, eight tens, "hundred" and "thousand", less "zero" (only the one-word source of 0 holds it).
    tables = set(translation.ONES) | set(translation.TEENS) | {w for w in translation.TENS if w}
    words = tables | {"hundred", "thousand"}
    assert words == {w for n in range(translation.MAX_NUMBER + 1) for w in number_to_words(n).split()}
    count = len(words - {"zero"})
    assert f"the {count} words other than \"zero\"" in " ".join(translation.__doc__.split())


def test_with_one_word_sources_the_ood_test_holds_words_never_seen_in_training():
    # The docstring's counter-example: no one-word source holds "hundred" or "thousand".
    task = translation_task(max_in_distribution_words=1, num_train=20, num_valid=5, num_test=3)
    assert {"hundred", "thousand"} <= _unseen_ood_words(task)
