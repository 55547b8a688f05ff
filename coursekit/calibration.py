"""Calibration: confidence against accuracy, the expected calibration error, temperature scaling.

A model is *calibrated* when, among the predictions it makes with confidence
about :math:`c`, a fraction :math:`c` is right. The reliability diagram and the
expected calibration error (ECE) of Guo et al. (2017) measure this for the top
prediction: sort the :math:`N` predictions into :math:`M` bins
:math:`\\mathcal{I}_1, \\dots, \\mathcal{I}_M` by confidence and average the gap,

.. math::

    \\mathrm{ECE} = \\sum_{j=1}^{M} \\frac{|\\mathcal{I}_j|}{N}
    \\big|\\operatorname{acc}(\\mathcal{I}_j) - \\operatorname{conf}(\\mathcal{I}_j)\\big| .

The bins are either of equal width on :math:`[0, 1]` (Guo et al.) or of equal
mass, each holding the same number of predictions (the "adaptive" bins of
Nixon et al., 2019). Temperature scaling (Guo et al.) divides all logits by one
scalar :math:`\\tau` fitted on held-out data by minimising the NLL; it changes
no prediction, only the confidence.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from coursekit.data._checks import require_int, require_number, require_one_of
from coursekit.losses._checks import require_float, require_integer, require_shape, require_targets_in_range

BINNINGS = ("width", "mass")


class ReliabilityBins(NamedTuple):
    """The non-empty bins of a reliability diagram.

    Attributes:
        confidence: ``(M',)`` mean confidence of each bin.
        accuracy: ``(M',)`` fraction of correct predictions in each bin.
        count: ``(M',)`` predictions in each bin (long).
    """

    confidence: torch.Tensor
    accuracy: torch.Tensor
    count: torch.Tensor


def top_label(logits: torch.Tensor, targets: torch.Tensor, *,
              temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The confidence of the top prediction and whether it is right, position by position.

    Args:
        logits: unnormalised scores.
        targets: the observed class of every position.
        temperature: :math:`\\tau > 0`; the confidence is :math:`\\max_k \\operatorname{softmax}(z/\\tau)_k`.
            The top class, and so ``correct``, does not depend on it.

    Returns:
        ``(confidence, correct)``, flattened: float ``(N,)`` and bool ``(N,)``.

    Shapes:
        logits: ``(..., V)``; targets: ``(...)``; results: ``(N,)`` with ``N`` the number of positions.

    Raises:
        TypeError: ``logits`` not float, ``targets`` not integer, ``temperature`` not a number.
        ValueError: mismatched shapes, a target outside ``[0, V)``, ``temperature <= 0`` or not finite.

    Example:
        >>> top_label(torch.tensor([[2.0, 0.0], [0.0, 0.0]]), torch.tensor([0, 1]))
        (tensor([0.8808, 0.5000]), tensor([ True, False]))
    """
    _check_logits(logits, targets)
    temperature = require_number("temperature", temperature, low=0.0, low_inclusive=False)
    probs = torch.softmax(logits.detach() / temperature, dim=-1).reshape(-1, logits.shape[-1])
    confidence, prediction = probs.max(dim=-1)
    return confidence, prediction == targets.reshape(-1)


def reliability_bins(confidence: torch.Tensor, correct: torch.Tensor, *, num_bins: int = 10,
                     binning: str = "width") -> ReliabilityBins:
    """Sort predictions into confidence bins and return each non-empty bin's confidence, accuracy and size.

    With ``binning="width"`` bin :math:`j` holds the confidences in :math:`((j-1)/M, j/M]`
    (a confidence of exactly 0 goes to the first bin); with ``"mass"`` the predictions, sorted
    by confidence, are cut into :math:`M` groups whose sizes differ by at most one.

    Args:
        confidence: ``(N,)`` confidences in ``[0, 1]``.
        correct: ``(N,)`` bool, whether each prediction is right.
        num_bins: :math:`M \\ge 1`.
        binning: ``"width"`` or ``"mass"``.

    Returns:
        A :class:`ReliabilityBins` over the non-empty bins, in order of confidence.

    Shapes:
        confidence, correct: ``(N,)``; results: ``(M',)`` with ``M' <= M``.

    Raises:
        TypeError: ``confidence`` not float or ``correct`` not bool.
        ValueError: shapes that are not ``(N,)`` with ``N >= 1``, a confidence outside ``[0, 1]``,
            ``num_bins < 1`` or an unknown ``binning``.

    Example:
        >>> bins = reliability_bins(torch.tensor([0.9, 0.8, 0.3, 0.2]),
        ...                         torch.tensor([True, False, False, False]), num_bins=2)
        >>> bins.confidence, bins.accuracy, bins.count
        (tensor([0.2500, 0.8500]), tensor([0.0000, 0.5000]), tensor([2, 2]))
    """
    which = _bin_index(confidence, correct, num_bins, binning)
    count = torch.bincount(which, minlength=num_bins)
    conf_sum = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, which, confidence.double())
    hits = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, which, correct.double())
    used = count > 0
    n = count[used].double()
    return ReliabilityBins(confidence=(conf_sum[used] / n).to(confidence.dtype),
                           accuracy=(hits[used] / n).to(confidence.dtype), count=count[used])


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, *, num_bins: int = 10,
                               binning: str = "width") -> float:
    """The expected calibration error of Guo et al. (2017) with :math:`M` bins.

    .. math:: \\mathrm{ECE} = \\sum_{j} \\frac{|\\mathcal{I}_j|}{N}
              \\big|\\operatorname{acc}(\\mathcal{I}_j) - \\operatorname{conf}(\\mathcal{I}_j)\\big|

    Arguments, shapes and errors as :func:`reliability_bins`.

    Returns:
        The ECE, a float in ``[0, 1]``.

    Example:
        >>> ece = expected_calibration_error(torch.tensor([0.9, 0.8, 0.3, 0.2]),
        ...                                  torch.tensor([True, False, False, False]), num_bins=2)
        >>> round(ece, 6)                   # half the predictions 0.25 off, half 0.35 off
        0.3
    """
    bins = reliability_bins(confidence, correct, num_bins=num_bins, binning=binning)
    weights = bins.count.double() / bins.count.sum()
    gaps = (bins.accuracy.double() - bins.confidence.double()).abs()
    return float((weights * gaps).sum())


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, *, low: float = 0.05,
                    high: float = 20.0, tolerance: float = 1e-6) -> float:
    """The temperature that minimises the token-mean NLL of ``softmax(logits / tau)`` on held-out data.

    Temperature scaling (Guo et al., 2017). With :math:`\\beta = 1/\\tau` the mean NLL
    :math:`\\frac{1}{N}\\sum_i \\bigl(-\\beta z_{i,y_i} + \\log\\sum_k e^{\\beta z_{i,k}}\\bigr)` is convex in
    :math:`\\beta`, with derivative :math:`\\frac{1}{N}\\sum_i \\bigl(\\mathbb{E}_{k \\sim p_\\beta}[z_{i,k}] - z_{i,y_i}\\bigr)`,
    which increases with :math:`\\beta`; the minimum is found by bisection on that derivative, in
    double precision.

    Args:
        logits: the model's scores on held-out positions (not those it was trained on).
        targets: the observed classes.
        low, high: the range searched for :math:`\\tau`, ``0 < low < high``; the result is clipped to it.
        tolerance: bisection stops when the bracket for :math:`\\beta` is narrower than this.

    Returns:
        The fitted :math:`\\tau`; above 1 softens an over-confident model, below 1 sharpens.

    Shapes:
        logits: ``(..., V)``; targets: ``(...)``.

    Raises:
        TypeError: ``logits`` not float, ``targets`` not integer.
        ValueError: mismatched shapes, a target outside ``[0, V)``, no positions, a bad range
            (``low``, ``high`` or ``tolerance`` not above its bound, or not finite).

    Example:
        >>> logits = torch.tensor([[4.0, 0.0], [4.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
        >>> targets = torch.tensor([0, 0, 1, 1])        # right 3 times in 4, yet 98 % confident
        >>> round(fit_temperature(logits, targets), 3)  # softmax(4 / tau) = 3/4: tau = 4 / ln 3
        3.641
    """
    _check_logits(logits, targets)
    low = require_number("low", low, low=0.0, low_inclusive=False)
    high = require_number("high", high, low=low, low_inclusive=False)
    tolerance = require_number("tolerance", tolerance, low=0.0, low_inclusive=False)
    z = logits.detach().double().reshape(-1, logits.shape[-1])
    if z.shape[0] == 0:
        raise ValueError("logits must hold at least one position, got none")
    observed = z.gather(1, targets.reshape(-1, 1)).squeeze(1)

    def slope(beta: float) -> float:
        expected = (torch.softmax(beta * z, dim=-1) * z).sum(dim=-1)
        return float((expected - observed).mean())

    beta_low, beta_high = 1.0 / high, 1.0 / low
    if slope(beta_low) >= 0:  # the NLL already rises at the softest end: tau = high
        return high
    if slope(beta_high) <= 0:  # it still falls at the sharpest end: tau = low
        return low
    while beta_high - beta_low > tolerance:
        middle = 0.5 * (beta_low + beta_high)
        if slope(middle) < 0:
            beta_low = middle
        else:
            beta_high = middle
    return 1.0 / (0.5 * (beta_low + beta_high))


def _check_logits(logits: torch.Tensor, targets: torch.Tensor) -> None:
    require_float("logits", logits)
    require_integer("targets", targets)
    if logits.dim() < 1:
        raise ValueError(f"logits must have at least one dimension (..., V), got shape {tuple(logits.shape)}")
    require_shape("targets", targets, logits.shape[:-1], "logits.shape[:-1]")
    require_targets_in_range("targets", targets, logits.shape[-1], None)


def _bin_index(confidence: torch.Tensor, correct: torch.Tensor, num_bins: int, binning: str) -> torch.Tensor:
    require_float("confidence", confidence)
    if not isinstance(correct, torch.Tensor) or correct.dtype != torch.bool:
        raise TypeError(f"correct must be a bool tensor, got {getattr(correct, 'dtype', type(correct).__name__)}")
    if confidence.dim() != 1 or confidence.shape[0] == 0:
        raise ValueError(f"confidence must have shape (N,) with N >= 1, got {tuple(confidence.shape)}")
    require_shape("correct", correct, confidence.shape, "confidence.shape")
    num_bins = require_int("num_bins", num_bins, minimum=1)
    binning = require_one_of("binning", binning, BINNINGS)
    if bool(torch.isnan(confidence).any()):
        raise ValueError("confidence must lie in [0, 1], got nan")
    low, high = float(confidence.min()), float(confidence.max())
    if low < 0 or high > 1:
        raise ValueError(f"confidence must lie in [0, 1], got {low if low < 0 else high}")
    if binning == "width":
        # bin j holds ((j-1)/M, j/M]: ceil(c M) - 1, with c = 0 in the first bin
        return (torch.ceil(confidence.double() * num_bins).long() - 1).clamp(0, num_bins - 1)
    rank = torch.empty_like(confidence, dtype=torch.long)
    rank[torch.argsort(confidence, stable=True)] = torch.arange(confidence.shape[0])
    return rank * num_bins // confidence.shape[0]
