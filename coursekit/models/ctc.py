"""A tiny CTC recogniser and the two classic ways to read its outputs.

:class:`CTCRecognizer` is a bidirectional GRU over feature frames with a linear
layer to :math:`V` classes (the labels and the blank): at every frame
:math:`t` it gives a distribution :math:`p_t(k)`, and the frames are
conditionally independent given the input, as CTC assumes.

Decoding looks for the most probable label sequence
:math:`\\arg\\max_y p(y \\mid x)`, where :math:`p(y \\mid x)` sums over all
alignments. Two decoders, both for one utterance's ``(T, V)`` log-probabilities:

- :func:`ctc_best_path`: the most probable *path* (the best class at every
  frame), collapsed. Fast, and the answer whenever one alignment dominates.
- :func:`ctc_prefix_beam_search`: keeps the ``beam_size`` most probable label
  *prefixes*, each with the total probability of the alignments that read it
  (split into those ending in a blank and those ending in its last label), so
  that alignments of one labelling add up (Hannun et al. 2014, after the prefix
  search of Graves et al. 2006).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from coursekit.data._checks import require_int, shown


class CTCRecognizer(nn.Module):
    """Bidirectional GRU over frames, then a linear layer to per-frame log-probabilities.

    Args:
        feature_dim: features per frame.
        num_classes: :math:`V`, the labels plus the blank.
        hidden_size: GRU state size per direction.

    Shapes:
        features: ``(B, T, F)``; input_lengths: ``(B,)``; result: ``(B, T, V)`` log-probabilities
        (rows past an input's length are padding and mean nothing).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = CTCRecognizer(feature_dim=3, num_classes=4, hidden_size=5)
        >>> log_probs = model(torch.randn(2, 6, 3), torch.tensor([6, 4]))
        >>> tuple(log_probs.shape), bool(torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 6)))
        ((2, 6, 4), True)
    """

    def __init__(self, feature_dim: int, num_classes: int, *, hidden_size: int = 32) -> None:
        super().__init__()
        feature_dim = require_int("feature_dim", feature_dim, minimum=1)
        num_classes = require_int("num_classes", num_classes, minimum=2)
        hidden_size = require_int("hidden_size", hidden_size, minimum=1)
        self.config = {"feature_dim": feature_dim, "num_classes": num_classes, "hidden_size": hidden_size}
        self.rnn = nn.GRU(feature_dim, hidden_size, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden_size, num_classes)

    def forward(self, features: torch.Tensor, input_lengths: torch.Tensor) -> torch.Tensor:
        """Per-frame log-probabilities ``(B, T, V)``.

        Raises:
            ValueError: ``features`` not ``(B, T, F)`` with the model's ``F``, or lengths
                that are not one per utterance within ``[1, T]``.
        """
        if features.dim() != 3 or features.shape[2] != self.config["feature_dim"]:
            raise ValueError(f"features must have shape (B, T, {self.config['feature_dim']}), "
                             f"got {tuple(features.shape)}")
        if input_lengths.shape != (features.shape[0],) or int(input_lengths.min()) < 1 \
                or int(input_lengths.max()) > features.shape[1]:
            raise ValueError(f"input_lengths must hold {features.shape[0]} lengths in [1, {features.shape[1]}], "
                             f"got {input_lengths.tolist()}")
        packed = pack_padded_sequence(features, input_lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=features.shape[1])
        return torch.log_softmax(self.out(states), dim=-1)


def _check_log_probs(log_probs: torch.Tensor, blank: int) -> int:
    """Check one utterance's ``(T, V)`` log-probabilities and return ``blank`` as a Python int in ``[0, V)``."""
    if not isinstance(log_probs, torch.Tensor) or not log_probs.is_floating_point() or log_probs.dim() != 2:
        raise ValueError(f"log_probs must be a float tensor of shape (T, V) for one utterance, got "
                         f"{getattr(log_probs, 'shape', type(log_probs).__name__)}")
    blank = require_int("blank", blank, minimum=0)
    if blank >= log_probs.shape[1]:
        raise ValueError(f"blank must lie in [0, {log_probs.shape[1]}) (V = log_probs.shape[1]), got {shown(blank)}")
    return blank


def ctc_collapse(path: list[int], *, blank: int = 0) -> list[int]:
    """The collapsing map :math:`\\mathcal{B}`: merge repeated symbols, then delete blanks.

    Example:
        >>> ctc_collapse([0, 1, 1, 0, 1, 2, 2, 0])
        [1, 1, 2]
    """
    merged = [k for i, k in enumerate(path) if i == 0 or k != path[i - 1]]
    return [k for k in merged if k != blank]


def ctc_best_path(log_probs: torch.Tensor, *, blank: int = 0) -> list[int]:
    """Best-path decoding: the most probable class at every frame, collapsed by :func:`ctc_collapse`.

    It finds the most probable *path*, :math:`\\mathcal{B}(\\arg\\max_\\pi \\prod_t p_t(\\pi_t))`,
    which need not read as the most probable *labelling*.

    Args:
        log_probs: one utterance's per-frame log-probabilities.
        blank: index of the blank class.

    Returns:
        The label sequence.

    Shapes:
        log_probs: ``(T, V)``.

    Raises:
        ValueError: ``log_probs`` not a float ``(T, V)`` tensor, or ``blank`` outside ``[0, V)``.

    Example:
        >>> # two frames, each 0.6 blank and 0.4 "1": the best path is "_ _", which reads as nothing,
        >>> # although "1" (paths "1 1", "1 _", "_ 1") has probability 0.64
        >>> ctc_best_path(torch.tensor([[0.6, 0.4], [0.6, 0.4]]).log())
        []
    """
    blank = _check_log_probs(log_probs, blank)
    return ctc_collapse(log_probs.argmax(dim=-1).tolist(), blank=blank)


def ctc_prefix_beam_search(log_probs: torch.Tensor, *, beam_size: int = 8,
                           blank: int = 0) -> list[tuple[list[int], float]]:
    """Prefix beam search: the ``beam_size`` most probable labellings, with their log-probabilities.

    For every kept prefix :math:`\\hat y` of :math:`j` labels it tracks, after frame
    :math:`t`, the probability :math:`p^{\\varnothing}_t(\\hat y)` of the path prefixes
    that read :math:`\\hat y` and end in a blank, and :math:`p^{\\text{lab}}_t(\\hat y)`
    of those that end in its last label :math:`\\hat y_j`. From frame :math:`t - 1` to
    frame :math:`t` (Hannun et al. 2014; the recursion of chapter 7's prefix beam search):

    .. math::

        p^{\\varnothing}_t(\\hat y) = p_t(\\varnothing)\\,\\bigl(p^{\\varnothing}_{t-1}(\\hat y)
            + p^{\\text{lab}}_{t-1}(\\hat y)\\bigr), \\qquad
        p^{\\text{lab}}_t(\\hat y) = p_t(\\hat y_j)\\,\\bigl(p^{\\text{lab}}_{t-1}(\\hat y)
            + p^{\\varnothing}_{t-1}(\\hat y_{<j})
            + [\\hat y_j \\ne \\hat y_{j-1}]\\, p^{\\text{lab}}_{t-1}(\\hat y_{<j})\\bigr),

    starting from :math:`p^{\\varnothing}_0 = 1` for the empty prefix. After every frame
    only the ``beam_size`` prefixes with the largest
    :math:`p^{\\varnothing}_t + p^{\\text{lab}}_t` are kept. If no prefix is ever dropped,
    :math:`p^{\\varnothing}_T(\\hat y) + p^{\\text{lab}}_T(\\hat y)` is exactly the CTC
    probability :math:`p(\\hat y \\mid x)`, the sum over all alignments of
    :math:`\\hat y`; with pruning it is a lower bound.

    Args:
        log_probs: one utterance's per-frame log-probabilities.
        beam_size: prefixes kept after every frame.
        blank: index of the blank class.

    Returns:
        Up to ``beam_size`` ``(labels, log p)`` pairs, most probable first; labellings of
        probability 0 are left out.

    Shapes:
        log_probs: ``(T, V)``.

    Raises:
        ValueError: ``log_probs`` not a float ``(T, V)`` tensor, ``blank`` outside ``[0, V)``,
            or ``beam_size < 1``.

    Example:
        >>> log_probs = torch.tensor([[0.6, 0.4], [0.6, 0.4]]).log()
        >>> [(labels, round(math.exp(lp), 2)) for labels, lp in ctc_prefix_beam_search(log_probs)]
        [([1], 0.64), ([], 0.36)]
    """
    blank = _check_log_probs(log_probs, blank)
    beam_size = require_int("beam_size", beam_size, minimum=1)
    table = log_probs.detach().double().cpu().tolist()
    neg_inf = -math.inf

    def add(a: float, b: float) -> float:
        if a == neg_inf:
            return b
        if b == neg_inf:
            return a
        top = max(a, b)
        return top + math.log(math.exp(a - top) + math.exp(b - top))

    # prefix -> [log p ending in blank, log p ending in its last label]
    beams: dict[tuple[int, ...], list[float]] = {(): [0.0, neg_inf]}
    labels = [k for k in range(len(table[0]) if table else 0) if k != blank]
    for frame in table:
        grown: dict[tuple[int, ...], list[float]] = {}

        def extend(prefix: tuple[int, ...], slot: int, value: float) -> None:
            entry = grown.setdefault(prefix, [neg_inf, neg_inf])
            entry[slot] = add(entry[slot], value)

        for prefix, (ends_blank, ends_label) in beams.items():
            total = add(ends_blank, ends_label)
            extend(prefix, 0, total + frame[blank])
            if prefix:
                extend(prefix, 1, ends_label + frame[prefix[-1]])
            for k in labels:
                source = ends_blank if prefix and prefix[-1] == k else total
                extend(prefix + (k,), 1, source + frame[k])
        ranked = sorted(grown.items(), key=lambda item: -add(*item[1]))
        beams = {prefix: scores for prefix, scores in ranked[:beam_size] if add(*scores) > neg_inf}
    result = [(list(prefix), add(*scores)) for prefix, scores in beams.items()]
    return sorted(result, key=lambda item: -item[1])
