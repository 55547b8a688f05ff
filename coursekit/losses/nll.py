"""Token-level negative log-likelihood and its aggregation into sequence losses.

Notation (the book's): a sequence :math:`y = (y_1, \\dots, y_T)`, model
probabilities :math:`p_\\theta(y_t \\mid y_{<t})`, per-token loss
:math:`\\ell_t = -\\log p_\\theta(y_t \\mid y_{<t})`, and a boolean mask
:math:`m_t` that is True on the tokens that count.
"""

from __future__ import annotations

import math
import sys
import warnings

import torch

from coursekit.losses._autocast import float32_under_autocast, promoted_dtype
from coursekit.losses._checks import (
    REAL_NUMBER,
    require_same_devices,
    as_real,
    int_text,
    require_choice,
    require_class_indices,
    require_classes,
    require_float,
    require_int,
    reads_values,
    require_mask,
    require_shape,
    require_targets_in_range,
    type_text,
)

SEQUENCE_REDUCTIONS = ("sum", "mean")
BATCH_REDUCTIONS = ("token_mean", "sequence_mean", "sum")


def token_nll(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int = -100,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token negative log-likelihood of ``targets`` under ``softmax(logits)``.

    .. math::

        \\ell_t = -\\log \\operatorname{softmax}(z_t)_{y_t}
                = \\log \\sum_k e^{z_{t,k}} - z_{t,y_t}

    computed through a log-softmax (a log-sum-exp shifted by the largest
    logit), so large logits do not overflow. Equal to
    ``F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction="none",
    ignore_index=ignore_index, weight=weight)`` reshaped to ``targets.shape``,
    in value, dtype and gradient, also under CPU ``torch.autocast``, where
    both compute and return float32 (float64 logits stay float64). Under CUDA
    autocast both return float32, but for half-precision logits
    ``F.cross_entropy`` rounds its log-probabilities to their dtype first, and
    this value is the closer to the float64 one (see "Mixed precision" in :mod:`coursekit.losses`).

    Args:
        logits: unnormalised scores :math:`z`, any float dtype.
        targets: class indices :math:`y`; entries equal to ``ignore_index`` are skipped.
        ignore_index: target value whose loss is defined as 0 (PyTorch's default -100).
        weight: optional per-class weights :math:`\\lambda_k`; each token's loss is
            multiplied by :math:`\\lambda_{y_t}`, as in PyTorch. A weight of another float dtype
            than the log-probabilities is cast to theirs, where ``F.cross_entropy`` raises.

    Returns:
        The per-token losses, 0 where the target is ``ignore_index``.

    Shapes:
        logits: ``(..., V)``; targets: ``(...)``; weight: ``(V,)``; result: ``(...)``.

    Raises:
        TypeError: ``logits`` or ``weight`` is not a float tensor, ``targets`` not an integer tensor,
            or ``ignore_index`` not an integer (``operator.index`` fails) or a bool.
        ValueError: the shapes disagree, ``logits`` has no class (V = 0), ``ignore_index`` lies beyond int64, or a target
            lies outside ``[0, V)`` and is not ``ignore_index`` (a value check: on the
            CPU; see :mod:`coursekit.losses`). Tensor arguments on two devices.

    Example:
        >>> logits = torch.zeros(1, 3, 10)            # uniform over V = 10
        >>> token_nll(logits, torch.tensor([[1, 2, -100]]))
        tensor([[2.3026, 2.3026, 0.0000]])
    """
    require_float("logits", logits)
    targets = require_class_indices("targets", targets)
    if logits.dim() < 1:
        raise ValueError(f"logits must have at least one dimension (..., V), got shape {tuple(logits.shape)}")
    require_classes("logits", logits)
    require_shape("targets", targets, logits.shape[:-1], "logits.shape[:-1]")
    num_classes = logits.shape[-1]
    ignore_index = require_int("ignore_index", ignore_index, type_expected="an int (a target value)")
    if weight is not None:
        require_float("weight", weight)
        require_shape("weight", weight, (num_classes,), "(V,) with V = logits.shape[-1]")
    require_same_devices("logits", logits, targets=targets, weight=weight)
    require_targets_in_range("targets", targets, num_classes, ignore_index)
    return _token_nll(logits, targets, targets == ignore_index, weight)


def _token_nll(
    logits: torch.Tensor, targets: torch.Tensor, ignored: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """:func:`token_nll` for arguments already checked, with the ignored positions given as a mask.

    For the other losses of this package, which validate their own arguments
    once. What the ignored positions' targets hold is never used as an index.
    """
    # gather indexes with int64 (or int32) only; the checks accept every INTEGER_DTYPES.
    safe_targets = targets.masked_fill(ignored, 0).long().unsqueeze(-1)
    losses = -_log_softmax(logits).gather(-1, safe_targets).squeeze(-1)
    if weight is not None:
        losses = losses * weight.to(losses.dtype)[safe_targets.squeeze(-1)]
    return losses.masked_fill(ignored, 0.0)


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """The log-softmax over the last axis, in float32 under autocast, else in the logits' dtype.

    float64 stays float64. Under CPU autocast that is what ``F.cross_entropy``
    computes in (while ``torch.log_softmax`` alone keeps bfloat16 there), so
    the losses built on it return what ``F.cross_entropy`` returns, in value,
    dtype and gradient. Under CUDA autocast ``F.cross_entropy`` keeps its
    log-probabilities in the autocast dtype before a float32 ``nll_loss``;
    these are float32 from the logits on, the closer to float64; see
    "Mixed precision" in :mod:`coursekit.losses`.
    """
    # log_softmax is z - logsumexp(z) in one fused, stable kernel; it is about
    # twice as fast as logsumexp and a separate subtraction, forward and backward.
    return torch.log_softmax(float32_under_autocast(logits), dim=-1)


def _token_mask(token_losses: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return torch.ones_like(token_losses, dtype=torch.bool)
    require_same_devices("token_losses", token_losses, mask=mask)
    return require_mask("mask", mask, token_losses.shape, "token_losses.shape")


def sequence_loss(
    token_losses: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    reduction: str = "sum",
) -> torch.Tensor:
    """One loss per sequence, from its per-token losses.

    .. math::

        L^{\\text{sum}}(y) = \\sum_{t} m_t \\ell_t, \\qquad
        L^{\\text{mean}}(y) = \\frac{\\sum_t m_t \\ell_t}{\\sum_t m_t}

    The sum is the sequence's negative log-likelihood :math:`-\\log p_\\theta(y)`;
    the mean is the loss per token. Masked tokens contribute nothing, whatever
    value they hold (also ``nan`` or ``inf``). A sequence with no unmasked token
    has sum 0 and mean ``nan`` (0/0), as ``torch.mean`` of an empty tensor.

    Args:
        token_losses: per-token losses :math:`\\ell_t`; the last axis is time.
        mask: True (or 1) on tokens that count, boolean or integer 0/1; ``None`` counts every token.
        reduction: ``"sum"`` or ``"mean"``.

    Returns:
        One value per sequence, in the dtype of ``token_losses``. The mean
        sums and counts in float32 or wider, which holds every count up to
        2**24 exactly, and rounds once, as ``torch.mean`` of a half-precision row does (a
        count kept in float16 would be rounded above 2048 tokens and ``inf``
        from 65520, and in bfloat16 rounded above 256). In float16 a row whose
        sum reaches 65520 therefore has a finite mean here, while
        :func:`batch_loss`'s ``"sequence_mean"`` over the same rows is ``inf``:
        that one sums each row in the losses' dtype, to match the PyTorch and
        TRL expressions it reproduces. ``"sum"`` is taken in the losses' dtype
        (``inf`` from 65520 in float16).

    Shapes:
        token_losses, mask: ``(..., T)``; result: ``(...)``.

    Raises:
        ValueError: unknown ``reduction``, 0-d ``token_losses`` (no time axis), ``mask`` of
            another shape or holding a value other than 0 and 1. Tensor arguments on two devices.
        TypeError: ``token_losses`` not a floating-point tensor, ``mask`` neither boolean nor
            integer. ``reduction`` not a str.

    Example:
        >>> fox = torch.tensor([0.1, 0.3, 0.2, 0.4])   # "The quick brown fox"
        >>> sequence_loss(fox, reduction="sum"), sequence_loss(fox, reduction="mean")
        (tensor(1.), tensor(0.2500))
    """
    require_float("token_losses", token_losses)
    require_choice("reduction", reduction, SEQUENCE_REDUCTIONS)
    if token_losses.dim() < 1:
        raise ValueError(f"token_losses must have a time axis (..., T), got shape {tuple(token_losses.shape)}")
    counted = _token_mask(token_losses, mask)
    # book excerpt (chapter 1) starts: sequence_loss masked sum
    kept = torch.where(counted, token_losses, torch.zeros_like(token_losses))
    total = kept.sum(dim=-1)
    # book excerpt (chapter 1) ends: sequence_loss masked sum
    if reduction == "sum":
        return total
    # As torch.mean: summed in float32 or wider too, so a float16 row whose sum reaches 65520 is not inf.
    count_dtype = _count_dtype(token_losses.dtype, token_losses.dtype)
    return _divide_exactly(kept.sum(dim=-1, dtype=count_dtype), counted.sum(dim=-1), token_losses.dtype)


def batch_loss(
    token_losses: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    reduction: str = "token_mean",
    token_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Aggregate per-token losses of a padded batch into one scalar.

    With per-sequence sums :math:`S_b = \\sum_t m_{b,t}\\ell_{b,t}` and counts
    :math:`T_b = \\sum_t m_{b,t}`:

    .. math::

        L^{\\text{sum}} = \\sum_b S_b, \\qquad
        L^{\\text{token\\_mean}} = \\frac{\\sum_b S_b}{\\sum_b T_b}, \\qquad
        L^{\\text{sequence\\_mean}} = \\frac{1}{|\\{b : T_b > 0\\}|}
            \\sum_{b : T_b > 0} \\frac{S_b}{T_b}

    ``token_mean`` weights every token equally, so long sequences weigh more;
    ``sequence_mean`` weights every sequence equally, so a token of a short
    sequence weighs more. Sequences with no unmasked token are left out of
    ``sequence_mean``. With ``token_weights`` :math:`\\lambda_{b,t}`, every
    :math:`\\ell_{b,t}` becomes :math:`\\lambda_{b,t}\\ell_{b,t}` and every count
    :math:`T_b` becomes :math:`\\sum_t m_{b,t}\\lambda_{b,t}` (so ``token_mean`` is
    PyTorch's class-weighted mean), also in the condition :math:`T_b > 0`: a
    sequence whose counted tokens all weigh 0 is left out of ``sequence_mean``
    (unlike a mask, a weight of 0 does not remove an infinite loss: 0 times
    ``inf`` is ``nan``, as in PyTorch).

    When no token at all is unmasked, or with ``token_weights`` every counted
    token weighs 0, the means (``token_mean``, ``sequence_mean``) are defined
    as 0 (still connected to the graph, so ``backward()`` works and gives zero
    gradients) and a ``RuntimeWarning`` is issued: an empty batch should not
    crash a training loop, but it should not pass unnoticed either.
    (``F.cross_entropy``'s mean is ``nan`` for a batch whose class weights all
    are 0, and for an empty one.) ``"sum"`` is then 0 without a warning, as
    ``F.cross_entropy``'s sum is. (The warning needs
    the mask's values, so on an accelerator it is issued only with
    ``COURSEKIT_CHECK_VALUES=1``; see :mod:`coursekit.losses`. The value is 0
    everywhere, computed without reading any value.)

    Args:
        token_losses: per-token losses; the last axis is time.
        mask: True (or 1) on tokens that count, boolean or integer 0/1; ``None`` counts every token.
        reduction: ``"token_mean"``, ``"sequence_mean"`` or ``"sum"``.
        token_weights: optional per-token weights, finite and >= 0 on the counted tokens.

    Returns:
        A scalar tensor, in the dtype of ``token_losses``, or with
        ``token_weights`` the dtype the two promote to (``torch.result_type``):
        bfloat16 losses with float32 weights give float32. The means count
        (and sum the weights) in float32 or wider, which holds every count up
        to 2**24 exactly, and round the quotient once, as PyTorch's
        ``(losses * mask).sum() / mask.sum()`` with an integer count: half-precision
        losses are averaged over their true count where float16 would round it
        (above 2048) or make it ``inf`` (from 65520) and bfloat16 round it (above
        256). The sum itself is taken in the losses' dtype, as in that
        expression (a float16 total of 65520 or more, what float16 rounds to
        ``inf``, is ``inf`` in both). So are ``sequence_mean``'s row sums
        :math:`S_b`, as in TRL's GRPO line
        ``((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()``, which
        :func:`~coursekit.losses.policy_loss_aggregate` reproduces through this function but for
        the clamp (TRL counts an empty response as 0, ``"sequence_mean"`` leaves it out). In
        float16 a row whose sum reaches 65520 makes ``sequence_mean`` ``inf``, where the mean of
        :func:`sequence_loss` with ``reduction="mean"`` (which sums in float32) stays finite.

    Shapes:
        token_losses, mask, token_weights: ``(..., T)``; result: ``()``.

    Raises:
        ValueError: unknown ``reduction``, 0-d ``token_losses`` (no time axis), a
            ``mask``/``token_weights`` of another shape, a ``mask`` holding a value other
            than 0 and 1, or a counted token's weight that is negative or not finite (value
            checks: on the CPU; see :mod:`coursekit.losses`). Tensor arguments on two devices.
        TypeError: ``token_losses`` or ``token_weights`` not a floating-point tensor, ``mask``
            neither boolean nor integer. ``reduction`` not a str.

    Example:
        >>> losses = torch.tensor([[1., 1., 1., 1.], [3., 3., 0., 0.]])
        >>> mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
        >>> [round(batch_loss(losses, mask, reduction=r).item(), 6)
        ...  for r in ("token_mean", "sequence_mean", "sum")]
        [1.666667, 2.0, 10.0]
    """
    require_float("token_losses", token_losses)
    require_choice("reduction", reduction, BATCH_REDUCTIONS)
    if token_losses.dim() < 1:
        raise ValueError(f"token_losses must have a time axis (..., T), got shape {tuple(token_losses.shape)}")
    counted = _token_mask(token_losses, mask)
    weights = None
    if token_weights is not None:
        require_float("token_weights", token_weights)
        require_shape("token_weights", token_weights, token_losses.shape, "token_losses.shape")
        require_same_devices("token_losses", token_losses, token_weights=token_weights)
        _require_token_weights(token_weights, counted)
        # in the promoted dtype, as PyTorch's (token_weights * token_losses): float64 weights are not rounded
        dtype = promoted_dtype(token_losses, token_weights)
        token_losses = token_losses.to(dtype)
        weights = torch.where(counted, token_weights.to(dtype), torch.zeros_like(token_losses))
    return _reduce_batch(token_losses, counted, reduction, weights=weights, caller="batch_loss")


def _require_token_weights(token_weights: torch.Tensor, counted: torch.Tensor) -> None:
    """Refuse a negative or non-finite weight on a counted token, where values are read.

    A negative weight would make a count :math:`T_b` negative, and a sequence
    of negative total weight would be left out of ``"sequence_mean"``'s count
    but not of its sum. Weights on masked tokens are never used, so any
    value may stand there, as in ``token_losses``.
    """
    if not (token_weights.numel() and reads_values(token_weights)):
        return
    weights = token_weights[counted]
    # written as "not >= 0" so that nan fails it too
    bad = ~(weights >= 0) | torch.isinf(weights)
    if bool(bad.any()):
        raise ValueError(f"token_weights must be finite and >= 0 on counted tokens, got {weights[bad][0].item()}")


def _reduce_batch(
    token_losses: torch.Tensor,
    counted: torch.Tensor,
    reduction: str,
    *,
    weights: torch.Tensor | None = None,
    caller: str,
    called_with: str | None = None,
    stacklevel: int = 3,
    result_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """:func:`batch_loss` for checked arguments (``counted`` boolean), without a host synchronisation.

    ``weights`` are already zero where not counted. Denominators that are 0
    (nothing counted) are replaced by 1, so the result is then 0 and the
    gradient 0 instead of ``nan``; the warning that says so is issued where
    reading ``counted`` costs nothing (see :func:`reads_values`). ``caller``
    names the public function in that warning and ``called_with`` the public
    argument that chose the reduction (default ``reduction=...``);
    ``stacklevel`` points it at the line that called that function (3 when it
    calls this helper directly). The means are divided in a dtype that holds
    every count up to 2**24 exactly (:func:`_count_dtype`) and returned in ``result_dtype``
    (``None``: the dtype of ``token_losses``); ``"sum"`` stays in the losses' dtype.
    """
    # book excerpt (chapter 3) starts: batch_loss masked selection
    losses = torch.where(counted, token_losses, torch.zeros_like(token_losses))
    # book excerpt (chapter 3) ends: batch_loss masked selection
    weighted = weights is not None
    if weights is None:
        weights = counted
    else:
        losses = losses * weights
    if reduction == "sum":
        return losses.sum()
    result_dtype = token_losses.dtype if result_dtype is None else result_dtype
    # Counts in a dtype that holds them exactly up to 2**24: float16 rounds a count above 2048
    # and makes one of 65520 or more inf (so the loss would be 0); bfloat16 rounds those above 256.
    count_dtype = _count_dtype(token_losses.dtype, result_dtype)
    weights = weights.to(count_dtype)
    if reads_values(counted):
        if not bool(counted.any()):
            empty = "every token is masked"
        elif weighted and not bool(weights.sum() != 0):
            empty = "every counted token weighs 0"
        else:
            empty = None
        if empty is not None:
            warnings.warn(
                f"{caller}({called_with or f'reduction={reduction!r}'}): {empty}; returning 0",
                RuntimeWarning,
                stacklevel=stacklevel,
            )
    if reduction == "token_mean":
        return _divide_exactly(losses.sum(), _nonzero(weights.sum()), result_dtype)
    sequence_weights = weights.sum(dim=-1)
    per_sequence_mean = losses.sum(dim=-1).to(count_dtype) / _nonzero(sequence_weights)
    # Empty sequences (no counted token, or counted tokens of total weight 0) have
    # mean 0 here and are left out of the count.
    num_nonempty = (sequence_weights > 0).sum()
    return _divide_exactly(per_sequence_mean.sum(), _nonzero(num_nonempty), result_dtype)


def _count_dtype(losses_dtype: torch.dtype, result_dtype: torch.dtype) -> torch.dtype:
    """The dtype to count and divide in: at least float32, which holds every count up to 2**24 exactly."""
    return torch.promote_types(torch.promote_types(losses_dtype, torch.float32), result_dtype)


def _divide_exactly(total: torch.Tensor, count: torch.Tensor, result_dtype: torch.dtype) -> torch.Tensor:
    """``total / count`` divided in :func:`_count_dtype`, rounded once to ``result_dtype``.

    As PyTorch divides a half-precision sum by an integer (``F.kl_div``'s
    ``"batchmean"``, ``tensor.sum() / mask.sum()``): the quotient is computed
    in float32 or wider and rounded once, never a count rounded to the half dtype.
    """
    dtype = _count_dtype(total.dtype, result_dtype)
    return (total.to(dtype) / count.to(dtype)).to(result_dtype)


def _nonzero(denominator: torch.Tensor) -> torch.Tensor:
    """``denominator`` with its zeros replaced by 1 (their numerators are 0 too)."""
    return torch.where(denominator != 0, denominator, torch.ones_like(denominator))


def perplexity(mean_nll: torch.Tensor | float) -> torch.Tensor:
    """Perplexity from a mean per-token NLL in nats: :math:`\\mathrm{PPL} = e^{\\bar\\ell}`.

    Args:
        mean_nll: mean negative log-likelihood per token :math:`\\bar\\ell`, in nats.

    Returns:
        A tensor of the same shape (a 0-d tensor for a number: a Python or NumPy scalar).

    Shapes:
        mean_nll: any (``()`` for a number); result: the same.

    Raises:
        TypeError: ``mean_nll`` is neither a float tensor nor a number.
        ValueError: ``mean_nll`` is an int beyond the float range (``inf`` itself is taken).

    Example:
        >>> perplexity(torch.tensor(6 * math.log(2) / 3))
        tensor(4.)
    """
    return torch.exp(_as_float_tensor("mean_nll", mean_nll))


def bits_per_token(mean_nll: torch.Tensor | float) -> torch.Tensor:
    """Convert a mean per-token NLL from nats to bits: :math:`\\bar\\ell / \\ln 2`.

    Args:
        mean_nll: mean negative log-likelihood per token :math:`\\bar\\ell`, in nats.

    Returns:
        The bits per token, a tensor of the same shape (a 0-d tensor for a number: a Python or NumPy scalar).

    Shapes:
        mean_nll: any (``()`` for a number); result: the same.

    Raises:
        TypeError: ``mean_nll`` is neither a float tensor nor a number.
        ValueError: ``mean_nll`` is an int beyond the float range (``inf`` itself is taken).

    Example:
        >>> bits_per_token(torch.tensor(math.log(4)))
        tensor(2.)
    """
    return _as_float_tensor("mean_nll", mean_nll) / math.log(2)


def _as_float_tensor(name: str, value: torch.Tensor | float) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return require_float(name, value)
    real = as_real(value)
    if real is None:
        raise TypeError(f"{name} must be a float tensor or {REAL_NUMBER}, got {type_text(value)}")
    if isinstance(real, int) and abs(real) > sys.float_info.max:
        # float() would raise OverflowError; an infinite mean NLL is meaningful, but only as a float
        raise ValueError(f"{name} must be a number in the float range, got {int_text(real)}")
    return torch.tensor(float(real), dtype=torch.get_default_dtype())
