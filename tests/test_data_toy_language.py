"""coursekit.data.toy_language: exact log-probabilities, the entropy floor, determinism."""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter

import numpy as np
import pytest

from coursekit.data import ToyLanguage, default_language, subject_and_verb, toy_corpus
from coursekit.data.toy_language import INTRANSITIVE, PLURAL_NOUNS, SINGULAR_NOUNS, TRANSITIVE

pytestmark = pytest.mark.models


def test_geometric_language_has_hand_computed_entropy_and_probabilities():
    # P(a^n <eos>) = 0.25^n * 0.75; per token entropy H(0.25) since each token is one Bernoulli(0.25) draw
    lang = ToyLanguage({"s": [("a", 0.25, "s"), ("<eos>", 0.75, None)]}, start="s")
    assert lang.log_prob(["a", "a"]) == pytest.approx(2 * math.log(0.25) + math.log(0.75))
    binary = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert lang.expected_length() == pytest.approx(1 / 0.75)
    assert lang.entropy_per_token() == pytest.approx(binary)
    assert lang.sentence_entropy() == pytest.approx(binary / 0.75)


def test_exact_probabilities_agree_with_monte_carlo_frequencies():
    lang = default_language()
    n = 40000
    counts = Counter(" ".join(s) for s in lang.sample(n, seed=123))
    for sentence, count in counts.most_common(8):
        p = math.exp(lang.log_prob(sentence.split()))
        sigma = math.sqrt(p * (1 - p) / n)
        assert abs(count / n - p) < 5 * sigma + 1e-4, sentence


def test_entropy_floor_agrees_with_monte_carlo_estimate():
    lang = default_language()
    sample = lang.sample(20000, seed=7)
    nll = np.array([-lang.log_prob(s) for s in sample])
    tokens = np.array([len(s) + 1 for s in sample])
    assert nll.mean() == pytest.approx(lang.sentence_entropy(), rel=0.02)
    assert tokens.mean() == pytest.approx(lang.expected_length(), rel=0.01)
    assert nll.sum() / tokens.sum() == pytest.approx(lang.entropy_per_token(), rel=0.02)


def test_token_log_probs_sum_to_sentence_log_prob():
    lang = default_language()
    for sentence in lang.sample(20, seed=1):
        assert math.fsum(lang.token_log_probs(sentence)) == pytest.approx(lang.log_prob(sentence))


def test_agreement_violations_and_unknown_words_are_impossible():
    lang = default_language()
    assert lang.log_prob("many cats near a dog chase a bird".split()) > -math.inf
    assert lang.log_prob("many cats near a dog chases a bird".split()) == -math.inf
    assert lang.log_prob("the unicorn sleeps".split()) == -math.inf
    assert lang.log_prob("the cat".split()) == -math.inf  # not a whole sentence


def test_sampling_matches_an_independent_walk_of_the_automaton():
    # re-implements the documented sampler (random.Random(seed), one uniform per token, arcs in order)
    lang = default_language()
    arcs = lang._arcs
    rng = random.Random(5)
    expected = []
    for _ in range(30):
        state, words = lang.start, []
        while state is not None:
            cumulative = list(np.cumsum([p for _, p, _ in arcs[state]]))
            pick = min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(arcs[state]) - 1)
            word, _, state = arcs[state][pick]
            if state is not None:
                words.append(word)
        expected.append(words)
    assert lang.sample(30, seed=5) == expected


def test_same_seed_gives_identical_corpus_and_other_seed_differs():
    a, b = toy_corpus(num_train=200, seed=3), toy_corpus(num_train=200, seed=3)
    assert repr(a.train).encode() == repr(b.train).encode()
    assert a.valid == b.valid and a.test == b.test
    assert toy_corpus(num_train=200, seed=4).train != a.train


@pytest.mark.parametrize("seed", [0, 5, 2**61 - 1])
def test_toy_corpus_splits_of_a_seed_below_2_61_are_sampled_with_seeds_3s_3s_plus_1_3s_plus_2(seed):
    # the book's numbers depend on these samples: reducing the derived seeds must not change them
    corpus, language = toy_corpus(num_train=20, num_valid=5, num_test=5, seed=seed), default_language()
    assert corpus.train == language.sample(20, seed=3 * seed)
    assert corpus.valid == language.sample(5, seed=3 * seed + 1)
    assert corpus.test == language.sample(5, seed=3 * seed + 2)


@pytest.mark.parametrize("seed", [2**62, 2**63 - 1], ids=["2**62", "2**63-1"])
def test_toy_corpus_takes_a_seed_whose_derived_seeds_pass_2_63_reducing_them_modulo_2_63(seed):
    # it raised "seed must be an int in [0, 2**63), got an int of 64 bits" for 3 * seed + 2, a value the
    # caller did not pass, for every seed from (2**63 - 2) / 3 on
    corpus, language = toy_corpus(num_train=20, num_valid=5, num_test=5, seed=seed), default_language()
    assert corpus.train == language.sample(20, seed=(3 * seed) % 2**63)
    assert corpus.valid == language.sample(5, seed=(3 * seed + 1) % 2**63)
    assert corpus.test == language.sample(5, seed=(3 * seed + 2) % 2**63)


@pytest.mark.parametrize(
    ("arcs", "error", "message"),
    [({"s": [("a", 0.5, "s"), ("<eos>", 0.5, None), ("b", math.nan, "s")]}, ValueError,
      r"^arcs\['s'\] probability of 'b' must be a finite number, got nan$"),
     ({"s": [("a", "0.5", "s"), ("<eos>", 0.5, None)]}, TypeError,
      r"^arcs\['s'\] probability of 'a' must be a (real )?number.*got str$"),
     ({"s": [("a", True, "s"), ("<eos>", 0.5, None)]}, TypeError,
      r"^arcs\['s'\] probability of 'a' must be .*got bool$"),
     ({"s": [("a", 0.0, "s"), ("<eos>", 1.0, None)]}, ValueError,
      r"^arcs\['s'\] probability of 'a' must be > 0.0, got 0.0$"),
     ({"s": [("a", math.inf, "s"), ("<eos>", 0.5, None)]}, ValueError,
      r"^arcs\['s'\] probability of 'a' must be a finite number, got inf$")],
    ids=["nan", "str", "bool", "zero", "inf"],
)
def test_each_arc_probability_is_checked_naming_its_state_and_word(arcs, error, message):
    # nan failed no comparison and reached "the language cannot terminate from every state";
    # a str reached math.fsum's "must be real number, not str", which names no argument
    with pytest.raises(error, match=message):
        ToyLanguage(arcs, start="s")


@pytest.mark.parametrize("method", ["log_prob", "token_log_probs"])
def test_a_str_sentence_is_refused_where_a_sequence_of_words_is_expected(method):
    # token_log_probs("the cat") read the characters as words and returned [-inf]
    with pytest.raises(TypeError, match=r"^sentence must be a sequence of words, got a str \(split it first\)$"):
        getattr(default_language(), method)("the cat")


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: toy_corpus(num_train=-1), "num_train"),
        (lambda: toy_corpus(num_test=-1), "num_test"),
        (lambda: default_language().sample(3, seed=-1), "seed"),
        (lambda: default_language().sample(-1, seed=0), "num_sentences"),
        (lambda: toy_corpus(seed=-2), "seed"),
        (lambda: ToyLanguage({"s": [("a", 0.5, "s")]}, start="s"), "sum"),
        (lambda: ToyLanguage({"s": [("a", 1.0, "s")]}, start="t"), "start"),
        (lambda: ToyLanguage({"s": [("a", 0.5, "x"), ("<eos>", 0.5, None)]}, start="s"), "next state"),
        (lambda: ToyLanguage({"s": [("a", 1.0, "s")], "t": [("<eos>", 1.0, None)]}, start="s"), "terminate"),
    ],
)
def test_bad_arguments_raise_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize("reachable", [False, True], ids=["unreachable", "reachable"])
@pytest.mark.parametrize("k", [3, 5, 7, 10, 13])
def test_a_state_with_no_way_to_eos_is_refused_however_its_probabilities_round(k, reachable):
    # Losses review round 22, F4: termination was judged by np.linalg.solve on I - Q, singular only up
    # to rounding when a trapped state's k probabilities 1/k sum to 1 - 1e-16 (k = 7, 10, 13 were
    # accepted, with an expected length of ~1e12). It is decided on the graph now.
    arcs = {"s": [("a", 0.5, "s"), ("<eos>", 0.5, None)], "t": [(f"w{i}", 1 / k, "t") for i in range(k)]}
    if reachable:
        arcs["s"] = [("a", 0.5, "s"), ("<eos>", 0.4999, None), ("go", 0.0001, "t")]
    with pytest.raises(ValueError, match=r"^arcs: the language cannot terminate from every state: "
                                         r"no path to '<eos>' from \['t'\]$"):
        ToyLanguage(arcs, start="s")


def test_the_languages_the_course_builds_are_accepted_with_their_expected_lengths():
    # default_language is the only language the book, the assignments and the recipes build (through
    # toy_corpus and recipes); its numbers before the graph check of termination, to 1e-12.
    lang = default_language()
    assert lang.expected_length() == pytest.approx(6.765789473684212, rel=1e-12, abs=0)
    assert lang.entropy_per_token() == pytest.approx(1.5843459152380843, rel=1e-12, abs=0)
    # and a language whose every state can end, though one is not reachable from the start
    lang = ToyLanguage({"s": [("a", 0.25, "s"), ("<eos>", 0.75, None)],
                        "u": [("b", 0.5, "s"), ("c", 0.5, "u")]}, start="s")
    assert lang.expected_length() == pytest.approx(4 / 3, rel=1e-12, abs=0)


def test_seed_must_be_an_int():
    with pytest.raises(TypeError, match="seed"):
        default_language().sample(1, seed=1.5)


def test_subject_and_verb_finds_the_noun_whose_number_the_verb_must_match():
    lang = default_language()
    verbs = {number: set(TRANSITIVE[number]) | set(INTRANSITIVE[number]) for number in ("sg", "pl")}
    swap = {v: w for number, other in (("sg", "pl"), ("pl", "sg"))
            for group in (TRANSITIVE, INTRANSITIVE) for v, w in zip(group[number], group[other])}
    distances = Counter()
    for sentence in lang.sample(400, seed=7):
        found = subject_and_verb(sentence)
        subject, verb = sentence[found.subject], sentence[found.verb]
        number = "sg" if subject in SINGULAR_NOUNS else "pl"
        assert subject in SINGULAR_NOUNS + PLURAL_NOUNS and verb in verbs[number]
        assert found.distance == found.verb - found.subject > 0
        # the language itself says the verb agrees with this noun: the other number is impossible
        flipped = [*sentence[: found.verb], swap[verb], *sentence[found.verb + 1:]]
        assert lang.log_prob(flipped) == -math.inf
        distances[found.distance] += 1
    assert distances[1] > 0 and sum(n for d, n in distances.items() if d >= 3) > 0


@pytest.mark.parametrize("words", ["the big red", "many dogs near the cat", ""])
def test_subject_and_verb_rejects_a_sentence_without_subject_or_verb(words):
    with pytest.raises(ValueError, match="sentence"):
        subject_and_verb(words.split())
    with pytest.raises(TypeError, match="sentence"):
        subject_and_verb("the cat sleeps")


@pytest.mark.parametrize(
    ("build", "message"),
    [(lambda: ToyLanguage({"s": [("a", 0.5, "s"), ("<eos>", 0.5, None)]}, start="x" * 100),
      r"^start must be a state of arcs, got 'x{40}'\.\.\. \(100 characters\)$"),
     (lambda: ToyLanguage({"s": [("a", 0.25, "s"), ("a", 0.25, "s"), ("<eos>", 0.5, None)]}, start="s"),
      r"^arcs\['s'\] uses the word 'a' twice$"),
     (lambda: ToyLanguage({"s": [("a", 0.5, "t" * 1000), ("<eos>", 0.5, None)]}, start="s"),
      r"^arcs\['s'\]: next state 't{40}'\.\.\. \(1000 characters\) is not defined$"),
     (lambda: subject_and_verb(["blah"] * 100_000),
      r"^sentence must hold a subject noun, got 'blah blah .*'\.\.\. \(499999 characters\)$"),
     (lambda: subject_and_verb(["the", "cat", 10**5000]),
      r"^sentence must hold a verb after its subject, got 'the cat an int of 16610 bits'$"),
     (lambda: ToyLanguage({"s": [("a", 0.5, "s"), ("<eos>", 0.5, None)], "t" * 100_000: [("b", 1.0, "t" * 100_000)]},
                          start="s"),
      r"^arcs: the language cannot terminate from every state: no path to '<eos>' from \['t{40}'\.\.\. "
      r"\(100000 characters\)\]$")],
    ids=["long start", "word twice", "long next state", "long sentence", "huge int word", "long trapped state"],
)
def test_messages_show_a_long_str_by_its_start_and_a_huge_int_by_its_size(build, message):
    # losses review r25: these messages printed whole strings (a 100,000-word sentence) and str() of a huge int
    with pytest.raises(ValueError, match=message):
        build()
