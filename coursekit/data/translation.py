"""The toy translation task: English number words to digits.

``"three thousand twelve"`` -> ``"3 0 1 2"``. The source is a sequence of words,
the target a sequence of digit tokens, and both vary in length. The task is
rule-based, so every target is exactly right and exact match is a fair score.

Splits: the numbers ``0 .. 9999`` whose source has at most
``max_in_distribution_words`` words are shuffled (by seed) and cut into
disjoint train, validation and test sets. The numbers with *longer* sources
(more words than any training example) form the out-of-distribution test:
longer combinations of the same words. They use only words seen in training
when every one of the 29 words other than "zero" (30 in all; only the source of
0 holds "zero") occurs in the training split, which holds for the default sizes
(3,000 training sources of up to 5 words: checked for seeds 0 to 19) but is not
guaranteed otherwise: with a small ``num_train`` (50: some out-of-distribution
word unseen in training for 3 seeds of 20) or ``max_in_distribution_words=1``
(no one-word source holds "hundred" or "thousand") some out-of-distribution
words never occur in training, and :func:`translation_task` neither checks nor prevents it
(compare the words of ``task.ood`` with those of ``task.train``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from coursekit.data._checks import (
    pair_items,
    require_int,
    require_one_of,
    require_probability,
    require_seed,
    row_list,
    shown,
)
from coursekit.losses._checks import type_text

ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen")
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
MAX_NUMBER = 9999

Pair = tuple[str, str]
DIGIT_EDITS = ("substitute", "insert", "delete")


def number_to_words(number: int) -> str:
    """English words for an integer in ``[0, 9999]`` (no "and", no hyphens).

    Raises:
        ValueError: ``number`` outside ``[0, 9999]``.

    Example:
        >>> number_to_words(3012), number_to_words(115), number_to_words(0)
        ('three thousand twelve', 'one hundred fifteen', 'zero')
    """
    number = require_int("number", number, minimum=0)
    if number > MAX_NUMBER:
        raise ValueError(f"number must lie in [0, {MAX_NUMBER}], got {shown(number)}")
    if number == 0:
        return "zero"
    words: list[str] = []
    thousands, rest = divmod(number, 1000)
    hundreds, rest = divmod(rest, 100)
    if thousands:
        words += [ONES[thousands], "thousand"]
    if hundreds:
        words += [ONES[hundreds], "hundred"]
    if 10 <= rest < 20:
        words.append(TEENS[rest - 10])
    else:
        tens, ones = divmod(rest, 10)
        if tens:
            words.append(TENS[tens])
        if ones:
            words.append(ONES[ones])
    return " ".join(words)


def number_to_digits(number: int) -> str:
    """The target side: digits separated by spaces, e.g. ``312 -> "3 1 2"``.

    Example:
        >>> number_to_digits(3012)
        '3 0 1 2'
    """
    number = require_int("number", number, minimum=0)
    return " ".join(str(number))


@dataclass(frozen=True)
class TranslationTask:
    """The splits of the number translation task; each pair is ``(source words, target digits)``."""

    train: list[Pair]
    valid: list[Pair]
    test: list[Pair]
    ood: list[Pair]
    max_in_distribution_words: int
    target_noise: float = 0.0


def translation_task(
    *,
    seed: int = 0,
    num_train: int = 3000,
    num_valid: int = 300,
    num_test: int = 600,
    num_ood: int = 500,
    max_in_distribution_words: int = 5,
    target_noise: float = 0.0,
) -> TranslationTask:
    """Generate the number-words -> digits splits.

    Args:
        seed: shuffles which numbers go to which split (int >= 0).
        num_train, num_valid, num_test: sizes of the disjoint in-distribution splits.
        num_ood: size of the out-of-distribution test (sources longer than
            ``max_in_distribution_words``).
        max_in_distribution_words: the longest source (in words) of the in-distribution splits.
        target_noise: probability that a *training* target gets one digit replaced by a wrong
            one, drawn for each target independently, so about (not exactly) that fraction of
            them is corrupted (noisy references, as real parallel data has; validation and test
            stay clean).

    Returns:
        A :class:`TranslationTask`.

    Raises:
        TypeError: a ``seed`` that is not a Python int, a size or ``max_in_distribution_words`` that is not
            a Python or NumPy int (``num_train=1.0``), or a ``target_noise`` that is not a real number.
        ValueError: a seed outside ``[0, 2**63)``, a negative size, ``max_in_distribution_words < 1``, more
            examples asked for than exist (the message names ``max_in_distribution_words`` too, which decides
            how many exist), or a ``target_noise`` outside ``[0, 1]`` or not finite.

    Example:
        >>> task = translation_task(seed=0, num_train=5, num_valid=2, num_test=2, num_ood=2)
        >>> len(task.train), len(task.ood), max(len(s.split()) for s, _ in task.ood) > 5
        (5, 2, True)
    """
    require_seed("seed", seed)
    # The checked Python ints are kept: a NumPy int8 size would overflow in the sums below.
    num_train, num_valid, num_test, num_ood = (
        require_int(name, value, minimum=0)
        for name, value in (("num_train", num_train), ("num_valid", num_valid),
                            ("num_test", num_test), ("num_ood", num_ood)))
    max_in_distribution_words = require_int("max_in_distribution_words", max_in_distribution_words, minimum=1)
    noise = require_probability("target_noise", target_noise)
    inside, outside = [], []
    for number in range(MAX_NUMBER + 1):
        source = number_to_words(number)
        (inside if len(source.split()) <= max_in_distribution_words else outside).append(number)
    wanted = num_train + num_valid + num_test
    # Both bounds depend on max_in_distribution_words, which the caller may have passed instead of the sizes.
    words = f"max_in_distribution_words words, here {shown(max_in_distribution_words)}"
    if wanted > len(inside):
        raise ValueError(f"num_train + num_valid + num_test must be <= {len(inside)} (the numbers whose source "
                         f"has at most {words}), got {shown(wanted)}")
    if num_ood > len(outside):
        raise ValueError(f"num_ood must be <= {len(outside)} (the numbers whose source has more than {words}), "
                         f"got {shown(num_ood)}")
    rng = random.Random(seed)
    rng.shuffle(inside)
    rng.shuffle(outside)

    def pairs(numbers: list[int]) -> list[Pair]:
        return [(number_to_words(n), number_to_digits(n)) for n in numbers]

    train = pairs(inside[:num_train])
    if noise > 0:
        noise_rng = random.Random(seed + 1)
        train = [(src, _edited(tgt.split(), "substitute", noise_rng) if noise_rng.random() < noise else tgt)
                 for src, tgt in train]
    return TranslationTask(
        train=train,
        valid=pairs(inside[num_train:num_train + num_valid]),
        test=pairs(inside[num_train + num_valid:wanted]),
        ood=pairs(outside[:num_ood]),
        max_in_distribution_words=max_in_distribution_words,
        target_noise=noise,
    )


def one_digit_edit(target: str, edit: str, rng: random.Random) -> str:
    """A wrong translation: ``target`` with one digit substituted, inserted or deleted.

    ``"substitute"`` keeps the length, ``"insert"`` adds a digit (one token
    longer), ``"delete"`` removes one (one token shorter); the position and the
    new digit come from ``rng``.

    Args:
        target: the digits, separated by whitespace (``"3 0 1 2"``); at least one.
        edit: one of ``DIGIT_EDITS``: ``"substitute"``, ``"insert"`` or ``"delete"``.
        rng: draws the position and the new digit.

    Returns:
        The edited digits, separated by single spaces.

    Raises:
        TypeError: ``target`` is not a str, ``rng`` is not a ``random.Random``, or ``edit`` is an array or
            a tensor.
        ValueError: an unknown ``edit``, a ``target`` holding no digit (empty or only whitespace), or
            ``"delete"`` on a one-digit target.

    Example:
        >>> rng = random.Random(0)
        >>> [one_digit_edit("3 0 1 2", edit, rng) for edit in DIGIT_EDITS]
        ['3 0 1 7', '4 3 0 1 2', '3 0 1']
        >>> one_digit_edit("  ", "insert", rng)
        Traceback (most recent call last):
        ...
        ValueError: target must hold at least one digit, got '  '
    """
    edit = require_one_of("edit", edit, DIGIT_EDITS)
    digits = _digits("target", target)
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {type_text(rng)}")
    if edit == "delete" and len(digits) == 1:
        raise ValueError(f"edit='delete' needs a target of two digits or more, got {shown(target)}")
    return _edited(digits, edit, rng)


def _digits(name: str, target: object) -> list[str]:
    """The whitespace-separated tokens (the digits) of ``target``, if it is a str holding at least one.

    ``name`` names ``target`` in messages: ``target`` for :func:`one_digit_edit`, ``pairs[i][1]`` for
    :func:`preference_pairs`.
    """
    if not isinstance(target, str):
        raise TypeError(f"{name} must be a str of digits, got {type_text(target)}")
    digits = target.split()
    if not digits:
        raise ValueError(f"{name} must hold at least one digit, got {shown(target)}")
    return digits


def _edited(digits: list[str], edit: str, rng: random.Random) -> str:
    """``digits`` (checked: at least one, two for ``"delete"``) with one of them edited, joined by spaces."""
    digits = list(digits)
    if edit == "substitute":
        position = rng.randrange(len(digits))
        digits[position] = rng.choice([d for d in "0123456789" if d != digits[position]])
    elif edit == "insert":
        digits.insert(rng.randrange(len(digits) + 1), rng.choice("0123456789"))
    else:
        del digits[rng.randrange(len(digits))]
    return " ".join(digits)


@dataclass(frozen=True)
class PreferencePair:
    """A source with a preferred (chosen) and a dispreferred (rejected) translation, and the edit between them."""

    source: str
    chosen: str
    rejected: str
    edit: str


def preference_pairs(pairs: Iterable[Pair], *, seed: int = 0) -> list[PreferencePair]:
    """Preference data for the translation task: the reference is chosen, a one-digit edit of it rejected.

    The edits take turns, ``"substitute"``, ``"insert"``, ``"delete"``, so a third of
    the rejected translations are as long as the chosen one, a third one token
    longer and a third one token shorter (a one-digit target gets an insertion
    instead of a deletion).

    Args:
        pairs: ``(source, reference)`` pairs of str, e.g. ``translation_task().train``: a sequence (or
            other iterable, a generator too) of them; a reference holds at least one digit.
        seed: seeds the positions and digits of the edits (a Python int in ``[0, 2**63)``).

    Returns:
        One :class:`PreferencePair` per pair, in order.

    Raises:
        TypeError: ``pairs`` is not iterable or is a str; a pair is not two items (the message names it,
            e.g. ``pairs[2]``, and what it is); a source or reference is not a str (``pairs[2][1]``); or
            ``seed`` is not a Python int.
        ValueError: no pairs, a reference holding no digit (empty or only whitespace: ``pairs[2][1]``),
            or a seed outside ``[0, 2**63)``.

    Example:
        >>> [(p.chosen, p.rejected, p.edit) for p in preference_pairs([("twelve", "1 2")] * 3)]
        [('1 2', '1 7', 'substitute'), ('1 2', '4 1 2', 'insert'), ('1 2', '1', 'delete')]
        >>> preference_pairs([("twelve", "1 2"), ("three", "3", "4")])
        Traceback (most recent call last):
        ...
        TypeError: pairs[1] must be a (source, reference) pair of str, got a tuple of 3 items
    """
    require_seed("seed", seed)
    rows = row_list("pairs", pairs, "(source, reference) pairs of str")
    if len(rows) == 0:
        raise ValueError("pairs must hold at least one (source, reference) pair, got an empty sequence")
    checked = []
    for i, row in enumerate(rows):
        source, reference = pair_items(f"pairs[{i}]", row, "a (source, reference) pair of str")
        if not isinstance(source, str):
            raise TypeError(f"pairs[{i}][0] must be a str, got {type_text(source)}")
        checked.append((source, reference, _digits(f"pairs[{i}][1]", reference)))
    rng = random.Random(seed)
    result = []
    for index, (source, reference, digits) in enumerate(checked):
        edit = DIGIT_EDITS[index % len(DIGIT_EDITS)]
        if edit == "delete" and len(digits) == 1:
            edit = "insert"
        result.append(PreferencePair(source, reference, _edited(digits, edit, rng), edit))
    return result
