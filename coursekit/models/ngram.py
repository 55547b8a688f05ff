"""A count-based n-gram language model with add-k smoothing, in closed form.

.. math::

    P(y_t \\mid y_{t-n+1:t-1}) = \\frac{c(y_{t-n+1:t}) + k}{c(y_{t-n+1:t-1}) + kV}

with counts :math:`c` from the training sentences, each padded on the left with
:math:`n-1` ``<bos>`` tokens and ended by ``<eos>``. The distribution is over all
:math:`V` ids of the vocabulary (specials included), so it sums to one exactly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

from coursekit.data._checks import require_int, require_number
from coursekit.data.vocab import BOS_ID, EOS_ID


class NGramLM:
    """An add-k smoothed n-gram model over ``vocab_size`` ids.

    Args:
        vocab_size: :math:`V` (>= 2).
        order: :math:`n` (>= 1; 2 is a bigram model).
        k: the add-k pseudo-count (> 0; 1 is Laplace smoothing).

    Raises:
        TypeError: ``vocab_size`` or ``order`` not a Python or NumPy integer, ``k`` not a real number.
        ValueError: ``vocab_size < 2``, ``order < 1``, or ``k <= 0`` or not finite.

    Example:
        >>> model = NGramLM(vocab_size=6, order=2, k=1.0).fit([[4, 5], [4]])
        >>> round(model.prob([BOS_ID], 4), 4)        # (2 + 1) / (2 + 6)
        0.375
        >>> round(float(model.next_token_probs([4]).sum()), 6)
        1.0
    """

    def __init__(self, vocab_size: int, *, order: int = 2, k: float = 1.0) -> None:
        self.vocab_size = require_int("vocab_size", vocab_size, minimum=2)
        self.order = require_int("order", order, minimum=1)
        self.k = require_number("k", k, low=0.0, low_inclusive=False)
        self._ngrams: Counter[tuple[int, ...]] = Counter()
        self._contexts: Counter[tuple[int, ...]] = Counter()

    def _check_ids(self, name: str, ids: Sequence[int]) -> list[int]:
        out = [int(i) for i in ids]
        for i in out:
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"{name} must hold ids in [0, {self.vocab_size}), got {i}")
        return out

    def fit(self, sentences: Sequence[Sequence[int]]) -> "NGramLM":
        """Count the n-grams of ``sentences`` (ids, without ``<bos>``/``<eos>``). Returns ``self``.

        Raises:
            ValueError: no sentences, or an id outside ``[0, vocab_size)``.
        """
        if len(sentences) == 0:
            raise ValueError("sentences must hold at least one sentence, got an empty sequence")
        for sentence in sentences:
            padded = [BOS_ID] * (self.order - 1) + self._check_ids("sentences", sentence) + [EOS_ID]
            for t in range(self.order - 1, len(padded)):
                context = tuple(padded[t - self.order + 1:t])
                self._ngrams[(*context, padded[t])] += 1
                self._contexts[context] += 1
        return self

    def _context(self, history: Sequence[int]) -> tuple[int, ...]:
        padded = [BOS_ID] * (self.order - 1) + list(history)
        return tuple(padded[len(padded) - self.order + 1:]) if self.order > 1 else ()

    def prob(self, history: Sequence[int], token: int) -> float:
        """:math:`P(\\text{token} \\mid \\text{history})`; the history starts after ``<bos>``
        (pass ``[BOS_ID]`` or ``[]`` for the first token: both mean the start)."""
        history = [t for t in self._check_ids("history", history) if t != BOS_ID]
        (token,) = self._check_ids("token", [token])
        context = self._context(history)
        return (self._ngrams[(*context, token)] + self.k) / (self._contexts[context] + self.k * self.vocab_size)

    def next_token_probs(self, history: Sequence[int]) -> torch.Tensor:
        """The whole next-token distribution, a float64 tensor of shape ``(V,)``."""
        history = [t for t in self._check_ids("history", history) if t != BOS_ID]
        context = self._context(history)
        counts = torch.tensor([self._ngrams[(*context, v)] for v in range(self.vocab_size)], dtype=torch.float64)
        return (counts + self.k) / (self._contexts[context] + self.k * self.vocab_size)

    def sentence_log_prob(self, sentence: Sequence[int]) -> float:
        """:math:`\\log P(y\\ \\texttt{<eos>})` of a sentence of ids (without ``<bos>``/``<eos>``)."""
        ids = self._check_ids("sentence", sentence) + [EOS_ID]
        return math.fsum(math.log(self.prob(ids[:t], ids[t])) for t in range(len(ids)))

    def token_nll(self, sentences: Sequence[Sequence[int]]) -> tuple[float, int]:
        """Total NLL (nats) and token count (``<eos>`` included) over sentences."""
        if len(sentences) == 0:
            raise ValueError("sentences must hold at least one sentence, got an empty sequence")
        total = math.fsum(-self.sentence_log_prob(s) for s in sentences)
        return total, sum(len(s) + 1 for s in sentences)
