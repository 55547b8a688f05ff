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


# --- bad input names the argument, what came in and what was expected (losses review r23, F3, F7b) ------------

@pytest.mark.parametrize(
    ("pairs", "error", "message"),
    [
        ([("x", "")], ValueError, r"^pairs\[0\]\[1\] must hold at least one digit, got ''$"),
        ([("twelve", "1 2"), ("x", "  ")], ValueError, r"^pairs\[1\]\[1\] must hold at least one digit, got '  '$"),
        ([("x", 12)], TypeError, r"^pairs\[0\]\[1\] must be a str of digits, got int$"),
        ([(12, "1 2")], TypeError, r"^pairs\[0\]\[0\] must be a str, got int$"),
        ([("x", "1 2", "3")], TypeError, r"^pairs\[0\] must be a \(source, reference\) pair of str, got a tuple of 3 items$"),
        ([("twelve", "1 2"), ["x"]], TypeError, r"^pairs\[1\] must be a \(source, reference\) pair of str, got a list of 1 item$"),
        (["xy"], TypeError, r"^pairs\[0\] must be a \(source, reference\) pair of str, got str$"),
        ([7], TypeError, r"^pairs\[0\] must be a \(source, reference\) pair of str, got int$"),
        ("xy", TypeError, r"^pairs must be a sequence of \(source, reference\) pairs of str, got str$"),
        (5, TypeError, r"^pairs must be a sequence of \(source, reference\) pairs of str, got int$"),
        ((p for p in []), ValueError, r"^pairs must hold at least one \(source, reference\) pair, got an empty sequence$"),
    ],
    ids=["empty reference", "whitespace reference", "int reference", "int source", "three items", "one item",
         "str pair", "int pair", "str pairs", "int pairs", "empty generator"],
)
def test_preference_pairs_refuses_bad_pairs_naming_their_position(pairs, error, message):
    # "target must hold ...", naming one_digit_edit's parameter; "too many values to unpack"; AttributeError on .split
    with pytest.raises(error, match=message):
        preference_pairs(pairs)


def test_preference_pairs_takes_a_generator_of_pairs_as_its_list():
    # len() of the generator raised "object of type 'generator' has no len()"
    pairs = [("twelve", "1 2"), ("three", "3"), ("forty", "4 0")]
    assert preference_pairs((p for p in pairs), seed=4) == preference_pairs(pairs, seed=4)


@pytest.mark.parametrize(("seed", "error", "message"),
                         [(1.5, TypeError, r"^seed must be a Python int, got float$"),
                          (-1, ValueError, r"^seed must be an int >= 0, got -1$")])
def test_preference_pairs_refuses_a_bad_seed_naming_it(seed, error, message):
    with pytest.raises(error, match=message):
        preference_pairs([("twelve", "1 2")], seed=seed)


@pytest.mark.parametrize(
    ("target", "edit", "rng", "error", "message"),
    [
        (3012, "insert", random.Random(0), TypeError, r"^target must be a str of digits, got int$"),
        ("3 0", "insert", 0, TypeError, r"^rng must be a random\.Random, got int$"),
        ("  ", "insert", random.Random(0), ValueError, r"^target must hold at least one digit, got '  '$"),
        ("", "substitute", random.Random(0), ValueError, r"^target must hold at least one digit, got ''$"),
        ("7", "delete", random.Random(0), ValueError, r"^edit='delete' needs a target of two digits or more, got '7'$"),
    ],
    ids=["int target", "int rng", "whitespace target", "empty target", "delete one digit"],
)
def test_one_digit_edit_names_a_bad_argument_and_what_it_got(target, edit, rng, error, message):
    # an int target or rng raised AttributeError ('int' object has no attribute 'split' / 'randrange'),
    # and a whitespace-only target was reported as "an empty string"
    with pytest.raises(error, match=message):
        one_digit_edit(target, edit, rng)


def test_training_noise_is_the_substitution_one_digit_edit_makes():
    # _corrupt was a copy of the "substitute" edit; translation_task now calls the one definition, and with
    # the same draws: every corrupted target differs from its reference in exactly one digit
    noisy, clean = translation_task(seed=0, target_noise=0.5), translation_task(seed=0)
    changed = [(a, b) for (_, a), (_, b) in zip(noisy.train, clean.train, strict=True) if a != b]
    assert 0.45 < len(changed) / len(clean.train) < 0.55
    assert all(len(a.split()) == len(b.split()) and sum(x != y for x, y in zip(a.split(), b.split())) == 1
               for a, b in changed)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"num_train": 1.0}, r"^num_train must be an int, got float$"),
     ({"num_ood": "5"}, r"^num_ood must be an int, got str$"),
     ({"max_in_distribution_words": 2.0}, r"^max_in_distribution_words must be an int, got float$"),
     ({"seed": 1.5}, r"^seed must be a Python int, got float$"),
     ({"target_noise": "0.1"}, r"^target_noise must be a real number \(int, float or a NumPy real scalar\), got str$")],
    ids=["float num_train", "str num_ood", "float max words", "float seed", "str target_noise"],
)
def test_translation_task_refuses_a_wrong_type_with_the_type_error_its_raises_section_lists(kwargs, message):
    with pytest.raises(TypeError, match=message):
        translation_task(**kwargs)


# --- messages name what the caller passed and show a long str by its start (losses review r24, F3, F5) ----------

def test_too_few_ood_numbers_names_max_in_distribution_words_as_well_as_num_ood():
    # with every source in distribution the message said "num_ood must be <= 0 numbers, got 500", blaming
    # the default num_ood the caller never passed
    with pytest.raises(ValueError, match=r"^num_ood must be <= 0 \(the numbers whose source has more than "
                                         r"max_in_distribution_words words, here 6\), got 500$"):
        translation_task(max_in_distribution_words=6)
    with pytest.raises(ValueError, match=r"^num_train \+ num_valid \+ num_test must be <= \d+ \(the numbers whose "
                                         r"source has at most max_in_distribution_words words, here 1\), got 3900$"):
        translation_task(max_in_distribution_words=1)


LONG_BLANK = " " * 10000


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: one_digit_edit(LONG_BLANK, "insert", random.Random(0)),
         r"^target must hold at least one digit, got ' {40}'\.\.\. \(10000 characters\)$"),
        (lambda: one_digit_edit("7" + LONG_BLANK, "delete", random.Random(0)),
         r"^edit='delete' needs a target of two digits or more, got '7 {39}'\.\.\. \(10001 characters\)$"),
        (lambda: preference_pairs([("x", LONG_BLANK)]),
         r"^pairs\[0\]\[1\] must hold at least one digit, got ' {40}'\.\.\. \(10000 characters\)$"),
    ],
    ids=["blank target", "delete one digit", "blank reference"],
)
def test_a_long_target_in_a_message_is_shown_by_its_start_and_length(call, message):
    with pytest.raises(ValueError, match=message) as caught:
        call()
    assert len(str(caught.value)) < 150
