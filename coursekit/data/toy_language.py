"""A toy language whose true entropy is known exactly.

The language is a *deterministic probabilistic finite automaton*: in each state
the next word is drawn from a fixed distribution, and the word alone decides
the next state. Because the path through the states is a function of the
words, the probability of a sentence is a plain product along that path,

.. math::

    P(y_1, \\dots, y_T, \\texttt{<eos>}) = \\prod_{t=1}^{T+1} P(y_t \\mid s_{t-1}),
    \\qquad s_t = \\delta(s_{t-1}, y_t),

and the entropy of the whole language has a closed form. With :math:`Q` the
state-to-state transition matrix of the non-final states, the expected number
of visits to each state starting from ``start`` is :math:`N = e_{\\text{start}}^\\top (I - Q)^{-1}`;
every visit emits exactly one token (``<eos>`` included), so

.. math::

    H(Y) = \\sum_s N_s H_s, \\qquad \\mathbb{E}[|Y|] = \\sum_s N_s, \\qquad
    h = \\frac{H(Y)}{\\mathbb{E}[|Y|]},

where :math:`H_s` is the entropy of the word distribution in state :math:`s`.
:math:`h` is the per-token entropy floor: the lowest expected per-token loss
(token-mean over a large corpus, ``<eos>`` counted) that any model can reach.

The default grammar (:func:`default_language`) is a tiny English fragment with
singular/plural agreement between a subject and its verb across an optional
prepositional phrase ("the cat near the dogs sleeps"), so a bigram model cannot
reach the floor but a recurrent or attention model can.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from coursekit.data._checks import derived_seed, require_int, require_number, require_seed, shown
from coursekit.data.vocab import EOS
from coursekit.losses._checks import type_text

#: a state's arcs: (word, probability, next state); next state ``None`` ends the sentence
Arcs = Sequence[tuple[str, float, "str | None"]]


def _require_words(sentence: object) -> None:
    """Refuse a str where a sequence of words is expected: iterated, it would give characters."""
    if isinstance(sentence, str):
        raise TypeError("sentence must be a sequence of words, got a str (split it first)")


def _sentence_text(sentence: Sequence[object]) -> str:
    """``sentence``'s words joined by spaces, as a message shows a str (:func:`shown`: a long one by its start)."""
    return shown(" ".join(word if isinstance(word, str) else shown(word) for word in sentence))


class ToyLanguage:
    """A deterministic probabilistic finite automaton over words.

    Args:
        arcs: for each state, its outgoing ``(word, probability, next_state)``;
            the word ``"<eos>"`` must have ``next_state=None`` and is the only way to end.
        start: the start state.

    Raises:
        TypeError: a probability is not a real number.
        ValueError: a probability is not finite or not positive, probabilities of a state
            do not sum to 1, a word appears twice in one state, a next state is undefined,
            or the language cannot terminate (a state, reachable or not, has no path of
            arcs to ``<eos>``).

    Example:
        >>> lang = ToyLanguage({"s": [("a", 0.5, "s"), ("<eos>", 0.5, None)]}, start="s")
        >>> lang.log_prob(["a", "a"]) == 3 * math.log(0.5)
        True
        >>> round(lang.entropy_per_token() / math.log(2), 6)    # one fair coin per token
        1.0
    """

    def __init__(self, arcs: Mapping[str, Arcs], *, start: str) -> None:
        try:
            known = start in arcs
        except TypeError:  # unhashable
            raise TypeError(f"start must be a state of arcs (a str), got {type_text(start)}") from None
        if not known:
            raise ValueError(f"start must be a state of arcs, got {shown(start)}")
        self.start = start
        self._arcs: dict[str, list[tuple[str, float, str | None]]] = {}
        for state, state_arcs in arcs.items():
            words = [w for w, _, _ in state_arcs]
            twice = next((i for i, w in enumerate(words) if w in words[:i]), None)
            if twice is not None:
                raise ValueError(f"arcs[{shown(state)}] uses the word {shown(words[twice])} twice")
            # each probability is checked before the sum: fsum raises for a str without naming the
            # argument, and a nan fails no comparison, so it reached the termination check's wrong reason
            probabilities = [require_number(f"arcs[{shown(state)}] probability of {shown(w)}", p, low=0.0, low_inclusive=False)
                             for w, p, _ in state_arcs]
            total = math.fsum(probabilities)
            if abs(total - 1.0) > 1e-9:
                raise ValueError(f"arcs[{shown(state)}] must have positive probabilities summing to 1, got sum {total}")
            for word, _, nxt in state_arcs:
                if (word == EOS) != (nxt is None):
                    raise ValueError(f"arcs[{shown(state)}]: only {EOS!r} may end a sentence, got {shown(word)} -> {shown(nxt)}")
                if nxt is not None and nxt not in arcs:
                    raise ValueError(f"arcs[{shown(state)}]: next state {shown(nxt)} is not defined")
            self._arcs[state] = [(w, p, n) for (w, _, n), p in zip(state_arcs, probabilities)]
        self._states = sorted(self._arcs)
        self._index = {s: i for i, s in enumerate(self._states)}
        self._table = {s: {w: (p, n) for w, p, n in a} for s, a in self._arcs.items()}
        self._cumulative = {s: np.cumsum([p for _, p, _ in a]).tolist() for s, a in self._arcs.items()}
        self._visits = self._expected_visits()

    @property
    def words(self) -> list[str]:
        """Every word the language can produce (``<eos>`` excluded), sorted."""
        return sorted({w for a in self._arcs.values() for w, _, _ in a if w != EOS})

    def _require_termination(self) -> None:
        """Refuse a language with a state from which no path of arcs reaches ``<eos>``.

        Decided on the graph (every probability is positive), not by the solve in
        :meth:`_expected_visits`: there, a trapped state whose probabilities round to a
        sum just below 1 leaves ``I - Q`` singular only up to rounding, and the solve
        returns huge finite visit counts instead of failing.
        """
        predecessors: dict[str, set[str]] = {state: set() for state in self._arcs}
        can_end = set()
        for state, arcs in self._arcs.items():
            for word, _, nxt in arcs:
                if word == EOS:
                    can_end.add(state)
                else:
                    predecessors[nxt].add(state)
        frontier = list(can_end)
        while frontier:
            for before in predecessors[frontier.pop()] - can_end:
                can_end.add(before)
                frontier.append(before)
        trapped = sorted(set(self._arcs) - can_end)
        if trapped:
            listed = ", ".join(shown(state) for state in trapped[:5])
            more = f", ... ({len(trapped)} states)" if len(trapped) > 5 else ""
            raise ValueError(f"arcs: the language cannot terminate from every state: no path to {EOS!r} from "
                             f"[{listed}{more}]")

    def _expected_visits(self) -> np.ndarray:
        self._require_termination()
        n = len(self._states)
        q = np.zeros((n, n))
        for state, arcs in self._arcs.items():
            for _, p, nxt in arcs:
                if nxt is not None:
                    q[self._index[state], self._index[nxt]] += p
        start = np.zeros(n)
        start[self._index[self.start]] = 1.0
        try:
            visits = np.linalg.solve((np.eye(n) - q).T, start)
        except np.linalg.LinAlgError as error:
            raise ValueError("arcs: the language cannot terminate from every state") from error
        if not np.all(np.isfinite(visits)) or np.any(visits < -1e-9):
            raise ValueError("arcs: the language cannot terminate from every state")
        return visits

    def expected_length(self) -> float:
        """Expected number of tokens per sentence, ``<eos>`` included."""
        return float(self._visits.sum())

    def sentence_entropy(self) -> float:
        """Entropy of the distribution over whole sentences, :math:`H(Y)`, in nats."""
        per_state = np.array([-math.fsum(p * math.log(p) for _, p, _ in self._arcs[s]) for s in self._states])
        return float(self._visits @ per_state)

    def entropy_per_token(self) -> float:
        """The per-token entropy floor :math:`h = H(Y) / \\mathbb{E}[|Y|]`, in nats."""
        return self.sentence_entropy() / self.expected_length()

    def log_prob(self, sentence: Sequence[str]) -> float:
        """Exact :math:`\\log P(\\text{sentence}\\ \\texttt{<eos>})`; ``-inf`` if the language cannot produce it.

        Args:
            sentence: the words, without ``<eos>``.
        """
        _require_words(sentence)
        state: str | None = self.start
        total = 0.0
        for word in [*sentence, EOS]:
            if state is None or word not in self._table[state]:
                return -math.inf
            p, state = self._table[state][word]
            total += math.log(p)
        return total if state is None else -math.inf

    def token_log_probs(self, sentence: Sequence[str]) -> list[float]:
        """Exact per-token :math:`\\log P(y_t \\mid y_{<t})` for every word and the final ``<eos>``.

        Args:
            sentence: the words, without ``<eos>``.

        Raises:
            TypeError: ``sentence`` is a str (as in :meth:`log_prob`: its characters are not words).
        """
        _require_words(sentence)
        state: str | None = self.start
        out: list[float] = []
        for word in [*sentence, EOS]:
            if state is None or word not in self._table[state]:
                out.append(-math.inf)
                return out
            p, state = self._table[state][word]
            out.append(math.log(p))
        return out

    def sample(self, num_sentences: int, *, seed: int, max_words: int = 200) -> list[list[str]]:
        """Draw sentences (lists of words, without ``<eos>``).

        The draw uses Python's ``random.Random(seed)``, whose stream is the same on
        every platform, so one seed gives byte-identical sentences everywhere.

        Args:
            num_sentences: how many sentences (>= 0).
            seed: the seed (int >= 0).
            max_words: safety limit on a sentence's length (>= 1).

        Raises:
            ValueError: a negative count or seed, or a sentence longer than ``max_words``.
        """
        num_sentences = require_int("num_sentences", num_sentences, minimum=0)
        require_seed("seed", seed)
        max_words = require_int("max_words", max_words, minimum=1)
        rng = random.Random(seed)
        sentences = []
        for _ in range(num_sentences):
            state: str | None = self.start
            words: list[str] = []
            while state is not None:
                arcs = self._arcs[state]
                cumulative = self._cumulative[state]
                pick = min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(arcs) - 1)
                word, _, state = arcs[pick]
                if state is not None:
                    words.append(word)
                    if len(words) > max_words:
                        raise ValueError(f"max_words={shown(max_words)} exceeded while sampling")
            sentences.append(words)
        return sentences


@dataclass(frozen=True)
class ToyCorpus:
    """Train/validation/test sentences of a :class:`ToyLanguage` (lists of words, no ``<eos>``)."""

    language: ToyLanguage = field(compare=False)
    train: list[list[str]]
    valid: list[list[str]]
    test: list[list[str]]


SINGULAR_NOUNS = ("cat", "dog", "bird", "fox", "child", "farmer")
PLURAL_NOUNS = ("cats", "dogs", "birds", "foxes", "children", "farmers")
ADJECTIVES = ("big", "small", "red", "old")
TRANSITIVE = {"sg": ("sees", "likes", "chases"), "pl": ("see", "like", "chase")}
INTRANSITIVE = {"sg": ("sleeps", "runs"), "pl": ("sleep", "run")}
PREPOSITIONS = ("near", "with")


def _noun_phrase(prefix: str, after: Mapping[str, str], arcs: dict[str, list[tuple[str, float, str | None]]]) -> str:
    """Add the states of a noun phrase; ``after[number]`` is where a sg/pl noun leads. Returns the entry state."""
    entry, any_num, sg, pl = f"{prefix}", f"{prefix}.any", f"{prefix}.sg", f"{prefix}.pl"
    arcs[entry] = [("the", 0.6, any_num), ("a", 0.25, sg), ("many", 0.15, pl)]
    adj = [(a, 0.06, None) for a in ADJECTIVES]  # next state filled below
    arcs[any_num] = [(a, p, any_num) for a, p, _ in adj] + \
        [(n, 0.38 / len(SINGULAR_NOUNS), after["sg"]) for n in SINGULAR_NOUNS] + \
        [(n, 0.38 / len(PLURAL_NOUNS), after["pl"]) for n in PLURAL_NOUNS]
    arcs[sg] = [(a, p, sg) for a, p, _ in adj] + [(n, 0.76 / len(SINGULAR_NOUNS), after["sg"]) for n in SINGULAR_NOUNS]
    arcs[pl] = [(a, p, pl) for a, p, _ in adj] + [(n, 0.76 / len(PLURAL_NOUNS), after["pl"]) for n in PLURAL_NOUNS]
    return entry


def default_language() -> ToyLanguage:
    """The course's toy language: 31 words, subject-verb agreement across a prepositional phrase.

    Sentences look like ``the big cat near many dogs chases a bird`` or
    ``many children sleep``. The verb agrees in number with the subject, even when
    a prepositional phrase with a noun of the other number comes in between.

    Example:
        >>> lang = default_language()
        >>> round(lang.entropy_per_token(), 4), round(lang.expected_length(), 3)
        (1.5843, 6.766)
        >>> lang.log_prob("the cat near many dogs sleeps".split()) > -math.inf
        True
        >>> lang.log_prob("the cat near many dogs sleep".split())
        -inf
    """
    arcs: dict[str, list[tuple[str, float, str | None]]] = {}
    for num in ("sg", "pl"):
        verb = f"verb.{num}"
        arcs[f"subj_done.{num}"] = [("near", 0.15, f"pp.{num}"), ("with", 0.1, f"pp.{num}")] + \
            [(v, 0.75 * 0.7 / len(TRANSITIVE[num]), "object") for v in TRANSITIVE[num]] + \
            [(v, 0.75 * 0.3 / len(INTRANSITIVE[num]), "end") for v in INTRANSITIVE[num]]
        arcs[verb] = [(v, 0.7 / len(TRANSITIVE[num]), "object") for v in TRANSITIVE[num]] + \
            [(v, 0.3 / len(INTRANSITIVE[num]), "end") for v in INTRANSITIVE[num]]
        _noun_phrase(f"pp.{num}", {"sg": verb, "pl": verb}, arcs)
    _noun_phrase("start", {"sg": "subj_done.sg", "pl": "subj_done.pl"}, arcs)
    _noun_phrase("object", {"sg": "end", "pl": "end"}, arcs)
    arcs["end"] = [(EOS, 1.0, None)]
    return ToyLanguage(arcs, start="start")


class Agreement(NamedTuple):
    """Where a sentence of :func:`default_language` puts its subject noun and the verb that agrees with it.

    Attributes:
        subject: index of the subject noun (0-based, in the list of words).
        verb: index of the verb.
    """

    subject: int
    verb: int

    @property
    def distance(self) -> int:
        """How many tokens the verb comes after its subject noun."""
        return self.verb - self.subject


def subject_and_verb(sentence: Sequence[str]) -> Agreement:
    """The subject noun and the agreeing verb of a sentence of :func:`default_language`.

    In that grammar the subject is the first noun and the verb is the first verb;
    the nouns of a prepositional phrase in between never carry the agreement.

    Args:
        sentence: the words, without ``<eos>``.

    Returns:
        An :class:`Agreement`; ``distance`` is the gap a model must bridge to choose
        the verb's number.

    Raises:
        TypeError: ``sentence`` is a ``str``.
        ValueError: the sentence has no noun, or no verb after its first noun.

    Example:
        >>> found = subject_and_verb("the big cat near many dogs chases a bird".split())
        >>> found, found.distance
        (Agreement(subject=2, verb=6), 4)
    """
    _require_words(sentence)
    nouns = set(SINGULAR_NOUNS) | set(PLURAL_NOUNS)
    verbs = {v for forms in (TRANSITIVE, INTRANSITIVE) for group in forms.values() for v in group}
    subject = next((i for i, word in enumerate(sentence) if word in nouns), None)
    if subject is None:
        raise ValueError(f"sentence must hold a subject noun, got {_sentence_text(sentence)}")
    verb = next((i for i in range(subject + 1, len(sentence)) if sentence[i] in verbs), None)
    if verb is None:
        raise ValueError(f"sentence must hold a verb after its subject, got {_sentence_text(sentence)}")
    return Agreement(subject=subject, verb=verb)


def toy_corpus(*, num_train: int = 4000, num_valid: int = 500, num_test: int = 500, seed: int = 0) -> ToyCorpus:
    """Sample a train/validation/test corpus from :func:`default_language`.

    The three splits come from independent seeds derived from ``seed``: ``3 * seed``,
    ``3 * seed + 1`` and ``3 * seed + 2``, each modulo 2**63, so every seed in ``[0, 2**63)`` is
    taken (the splits may share frequent short sentences, as samples of a real language do).

    Raises:
        TypeError: ``seed`` not a Python int; a size not an int.
        ValueError: ``seed`` outside ``[0, 2**63)``; a negative ``num_train``, ``num_valid`` or ``num_test``.

    Example:
        >>> corpus = toy_corpus(num_train=3, num_valid=1, num_test=1, seed=0)
        >>> corpus == toy_corpus(num_train=3, num_valid=1, num_test=1, seed=0)
        True
    """
    require_seed("seed", seed)
    num_train, num_valid, num_test = (require_int(name, value, minimum=0) for name, value in
                                      (("num_train", num_train), ("num_valid", num_valid), ("num_test", num_test)))
    language = default_language()
    return ToyCorpus(
        language=language,
        train=language.sample(num_train, seed=derived_seed(3 * seed)),
        valid=language.sample(num_valid, seed=derived_seed(3 * seed + 1)),
        test=language.sample(num_test, seed=derived_seed(3 * seed + 2)),
    )
