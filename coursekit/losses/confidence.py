"""The confidence penalty (Pereyra et al. 2017): the NLL minus a multiple of the model's entropy.

Label smoothing pulls the model towards the uniform distribution :math:`q^{\\text{unif}}` with
the *forward* divergence: its extra term is, up to a constant,
:math:`\\varepsilon\\,\\mathrm{KL}(q^{\\text{unif}} \\,\\|\\, p)`. The confidence penalty pulls with
the *reverse* one, since :math:`-H(p) = \\mathrm{KL}(p \\,\\|\\, q^{\\text{unif}}) - \\log V`:

.. math::

    \\ell^{\\text{CP}}_t = \\ell_t - \\lambda_{\\text{conf}}\\, H(p_t)
    = \\ell_t + \\lambda_{\\text{conf}}\\, \\mathrm{KL}(p_t \\,\\|\\, q^{\\text{unif}}) - \\lambda_{\\text{conf}} \\log V .

It penalises confident output distributions whatever the target; its KL term
vanishes only when :math:`p_t` is the uniform distribution.
"""

from __future__ import annotations

import torch

from coursekit.losses._checks import (
    require_choice,
    require_class_indices,
    require_classes,
    require_float,
    require_int,
    require_nonnegative,
    require_same_devices,
    require_shape,
    require_targets_in_range,
)
from coursekit.losses.nll import _divide_exactly, _log_softmax

CONFIDENCE_REDUCTIONS = ("none", "sum", "mean")


def confidence_penalty_nll(
    logits: torch.Tensor,
    targets: torch.Tensor,
    weight: float,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """The NLL minus ``weight`` times the entropy of the model's distribution, per position.

    .. math:: \\ell^{\\text{CP}}_t = -\\log p_{t,y_t} + \\lambda_{\\text{conf}} \\sum_{k=1}^{V} p_{t,k} \\log p_{t,k}

    with :math:`\\lambda_{\\text{conf}}` = ``weight`` and :math:`0 \\log 0 = 0`, so a logit of ``-inf``
    (a masked vocabulary entry) contributes nothing, and its gradient is 0. The value can be negative; it is
    bounded below by :math:`-\\lambda_{\\text{conf}} \\log V`. Reductions as :func:`coursekit.losses.label_smoothed_nll`:
    ``"none"`` (0 where the target is ``ignore_index``), ``"sum"``, or ``"mean"`` over the
    non-ignored positions (``nan`` if there are none, as PyTorch). Under
    ``torch.autocast`` it computes and returns float32 (float64 logits stay
    float64), as ``F.cross_entropy`` under CPU autocast, which it equals
    there for ``weight=0`` (CUDA's: see "Mixed precision" in :mod:`coursekit.losses`).

    Args:
        logits: unnormalised scores.
        targets: class indices; ``ignore_index`` entries are skipped.
        weight: :math:`\\lambda_{\\text{conf}} \\ge 0`, finite; 0 gives the plain NLL.
        ignore_index: target value that is skipped.
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.

    Returns:
        A scalar, or the shape of ``targets`` for ``"none"``, in the dtype of
        the per-token losses. ``"sum"`` and ``"mean"`` add
        the per-token losses into a total of that dtype (``Tensor.sum``, which
        accumulates in float32 and rounds the total once; PyTorch's CPU
        ``F.cross_entropy`` rounds in the half dtype as it adds, so in float16 and
        bfloat16 the two reduced values can differ, this one most often the
        closer to float64's: 3.906 where ``F.cross_entropy`` gives 3.969 and float64 3.912,
        for 1000 bfloat16 rows of 50 zero logits at ``weight=0``; per-token values are equal).
        A float16 total of 65520 or more, what
        float16 rounds to ``inf``, is ``inf`` here, and a mean loss of 2.4 nats
        reaches it at about 27,300 tokens; ``F.cross_entropy``'s running sum,
        rounded as it adds, reaches ``inf`` a little sooner or later (its mean
        is ``nan`` from 65520 tokens on). The total is then divided by the number
        of counted tokens in float32 or wider, which holds it exactly up to 2**24, and
        rounds the quotient to that dtype (PyTorch's CPU ``F.cross_entropy``
        counts in float16, and gives 0 for the mean of 65520 or more float16
        tokens whose total stays finite).

    Shapes:
        logits: ``(..., V)``; targets: ``(...)``; result: ``()`` or ``(...)``.

    Raises:
        TypeError: ``logits`` not float, ``targets`` not integer, ``weight`` not a number,
            ``ignore_index`` not an integer (``operator.index`` fails) or a bool. ``reduction`` not a str.
        ValueError: mismatched shapes, ``logits`` with no class (V = 0), ``ignore_index`` beyond int64, a target outside ``[0, V)`` that is not ``ignore_index``,
            a negative or non-finite ``weight``, or an unknown ``reduction``. Tensor arguments on two devices.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, 0.0]])
        >>> confidence_penalty_nll(logits, torch.tensor([0]), 0.0)    # the plain NLL
        tensor(0.2395)
        >>> confidence_penalty_nll(logits, torch.tensor([0]), 0.5)    # minus half the entropy, 0.6656
        tensor(-0.0932)
    """
    require_float("logits", logits)
    targets = require_class_indices("targets", targets)
    weight = require_nonnegative("weight", weight)
    require_choice("reduction", reduction, CONFIDENCE_REDUCTIONS)
    if logits.dim() < 1:
        raise ValueError(f"logits must have at least one dimension (..., V), got shape {tuple(logits.shape)}")
    require_classes("logits", logits)
    require_shape("targets", targets, logits.shape[:-1], "logits.shape[:-1]")
    require_same_devices("logits", logits, targets=targets)
    ignore_index = require_int("ignore_index", ignore_index, type_expected="an int (a target value)")
    require_targets_in_range("targets", targets, logits.shape[-1], ignore_index)

    ignored = targets == ignore_index
    log_probs = _log_softmax(logits)
    nll = -log_probs.gather(-1, targets.masked_fill(ignored, 0).unsqueeze(-1)).squeeze(-1)
    if weight == 0:
        penalised = nll
    else:
        probs = log_probs.exp()
        # p log p -> 0 as p -> 0. Where p is 0 (a logit of -inf, a masked vocabulary entry) the log is
        # replaced by 0 *before* the product: 0 * (-inf) would be nan in the value and, through the
        # product's backward, in every gradient of the row.
        negative_entropy = (probs * torch.where(probs > 0, log_probs, torch.zeros_like(log_probs))).sum(dim=-1)
        penalised = nll + weight * negative_entropy
    losses = torch.where(ignored, torch.zeros_like(nll), penalised)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return _divide_exactly(losses.sum(), (~ignored).sum(), losses.dtype)
