"""Label-smoothed negative log-likelihood (Szegedy et al. 2016).

Instead of the one-hot target, the loss uses a target distribution :math:`q`
that keeps :math:`1-\\varepsilon` of the mass on the true class and spreads
:math:`\\varepsilon` over the vocabulary. Two spreadings are in common use and
give different numbers, so the variant is named explicitly.

fairseq itself changed from one to the other: up to release v0.10.2 its
``label_smoothed_nll_loss`` spread :math:`\\varepsilon/V` over every class
(PyTorch's convention); commit ``791ab7c20831a76a9196aaf0db3a2cb1cf906dde``
(pull request #3182, "More accurate label smoothing loss computation",
3 February 2021), first released in v0.12.0, made it spread
:math:`\\varepsilon/(V-1)` over the other classes, which fairseq has done
since. ``variant="fairseq"`` is that present fairseq.
"""

from __future__ import annotations

import warnings

import torch

from coursekit.losses._checks import (
    REAL_NUMBER_KINDS,
    require_choice,
    require_class_indices,
    require_classes,
    require_float,
    require_in_interval,
    require_int,
    require_same_devices,
    require_shape,
    require_targets_in_range,
    type_text,
)
from coursekit.losses.nll import _divide_exactly, _log_softmax

SMOOTHING_REDUCTIONS = ("none", "sum", "mean")
SMOOTHING_VARIANTS = ("pytorch", "fairseq")
#: Old spellings still accepted, with a FutureWarning naming the new one.
DEPRECATED_VARIANTS = {"fairseq_legacy": "fairseq"}


#: What ``epsilon`` may be, for its ``TypeError``.
EPSILON_EXPECTED = f"a real number in [0, 1) ({REAL_NUMBER_KINDS}) or a 0-d real tensor"


def _require_epsilon(epsilon: object) -> float:
    if isinstance(epsilon, torch.Tensor):
        # The type is checked before the value is read: float() of a complex tensor drops (or
        # fails on) the imaginary part with an error that names no argument.
        if epsilon.dim() != 0 or epsilon.is_complex() or epsilon.dtype == torch.bool:
            raise TypeError(f"epsilon must be {EPSILON_EXPECTED}, got {type_text(epsilon)}")
        epsilon = epsilon.item()
    return require_in_interval("epsilon", epsilon, 0, 1, type_expected=EPSILON_EXPECTED)


def label_smoothed_nll(
    logits: torch.Tensor,
    targets: torch.Tensor,
    epsilon: float,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    variant: str = "pytorch",
) -> torch.Tensor:
    """Cross-entropy against a label-smoothed target distribution.

    With :math:`\\ell_t = -\\log p_\\theta(y_t \\mid y_{<t})` (the plain NLL) and
    :math:`\\ell^{\\text{all}}_t = -\\sum_{k=1}^{V} \\log p_{t,k}` (the NLL summed
    over all classes):

    * ``variant="pytorch"``: :math:`q^{\\text{pt}}_k = (1-\\varepsilon)[k = y_t] + \\varepsilon / V`, so

      .. math:: \\ell^{\\text{pt}}_t = (1-\\varepsilon)\\,\\ell_t + \\frac{\\varepsilon}{V}\\, \\ell^{\\text{all}}_t

      exactly ``F.cross_entropy(..., label_smoothing=epsilon)`` per token (its
      ``"sum"`` and ``"mean"`` in half precision: see Returns; also under
      CPU ``torch.autocast``, where both compute in float32; under CUDA
      autocast ``F.cross_entropy`` rounds the log-probabilities of
      half-precision logits to their dtype first): the uniform
      prior :math:`u(k) = 1/V` of Szegedy et al. (2016), and fairseq up to v0.10.2.
    * ``variant="fairseq"``: :math:`q^{\\text{fs}}_{y_t} = 1-\\varepsilon` and
      :math:`q^{\\text{fs}}_k = \\varepsilon/(V-1)` for :math:`k \\ne y_t`, so

      .. math:: \\ell^{\\text{fs}}_t = \\Big(1-\\varepsilon-\\frac{\\varepsilon}{V-1}\\Big)\\,\\ell_t
                      + \\frac{\\varepsilon}{V-1}\\, \\ell^{\\text{all}}_t

      as in fairseq's ``label_smoothed_nll_loss`` since v0.12.0 (pull request
      #3182; see the module docstring). tensor2tensor's ``smoothing_cross_entropy``,
      the code of Vaswani et al. (2017), whose paper states only
      :math:`\\varepsilon = 0.1`, uses the same target distribution but subtracts
      its entropy :math:`H(q^{\\text{fs}})`, a constant: the same gradient, a value
      lower by :math:`H(q^{\\text{fs}})`. Needs :math:`V \\ge 2`. The
      old name ``"fairseq_legacy"`` still selects it, with a ``FutureWarning``.

    transformers' ``LabelSmoother`` (what ``Trainer`` applies for
    ``label_smoothing_factor``; transformers 5.24) computes the ``"pytorch"``
    variant's ``"mean"``, or, given ``num_items_in_batch``, its ``"sum"``
    divided by that count (with ``shift_labels=True`` on logits and labels
    shifted by one position, as :func:`causal_lm_loss` shifts them). Its dtypes
    differ: it sums the smoothing term :math:`\\ell^{\\text{all}}_t` in float32
    and leaves the NLL term in the logits' dtype, so half-precision logits give
    a float32 result (here one in their own dtype) and float64 logits have
    their smoothing term rounded to float32 (here float64 throughout). On
    float32 logits the two agree. In float16 the values differ too once the
    vocabulary is large: :math:`\\ell^{\\text{all}}_t \\ge V \\ln V` passes
    float16's largest value (65504) from about V = 7,000, so every smoothed
    loss is ``inf`` here, as ``F.cross_entropy``'s is, where ``LabelSmoother``'s
    float32 sum stays finite; smooth float32 logits, or run under autocast.

    Reductions follow PyTorch: ``"none"`` returns :math:`\\ell^{\\text{pt}}_t` or
    :math:`\\ell^{\\text{fs}}_t` (0 where the target
    is ``ignore_index``), ``"sum"`` their sum, ``"mean"`` the sum divided by the
    number of non-ignored targets, which is ``nan`` when every target is
    ignored, exactly as PyTorch. Under ``torch.autocast`` the log-softmax and
    the result are float32 (float64 logits stay float64), as ``F.cross_entropy``'s
    under CPU autocast (see "Mixed precision" in :mod:`coursekit.losses` for CUDA's).

    Args:
        logits: unnormalised scores.
        targets: class indices; ``ignore_index`` entries are skipped.
        epsilon: smoothing mass :math:`\\varepsilon \\in [0, 1)`, a number or a
            0-d real tensor (read with ``.item()``, which on an accelerator waits
            for the device); 0 gives the plain NLL, finite even where a logit
            is ``-inf`` (a masked vocabulary entry), as PyTorch's.
        ignore_index: target value that is skipped.
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.
        variant: ``"pytorch"`` or ``"fairseq"`` (``"fairseq_legacy"``: deprecated
            spelling of ``"fairseq"``).

    Returns:
        A scalar, or the shape of ``targets`` for ``"none"``, in the dtype of
        the per-token losses. ``"sum"`` and ``"mean"`` add
        the per-token losses into a total of that dtype (``Tensor.sum``, which
        accumulates in float32 and rounds the total once; PyTorch's CPU
        ``F.cross_entropy`` rounds in the half dtype as it adds, so in float16 and
        bfloat16 the two reduced values can differ, this one most often the
        closer to float64's: 3.906 where ``F.cross_entropy`` gives 3.969 and float64 3.912,
        for 1000 bfloat16 rows of 50 zero logits; per-token values are equal).
        A float16 total of 65520 or more, what
        float16 rounds to ``inf``, is ``inf`` here, and a mean loss of 2.4 nats
        (with every token's loss finite: a small V, see above) reaches it at about 27,300 tokens; ``F.cross_entropy``'s running sum,
        rounded as it adds, reaches ``inf`` a little sooner or later (its mean
        is ``nan`` from 65520 tokens on). The total is then divided by the number
        of counted tokens in float32 or wider, which holds it exactly up to 2**24, and
        rounds the quotient to that dtype (PyTorch's CPU ``F.cross_entropy``
        counts in float16: for the mean of 65520 or more float16 tokens whose
        total stays finite it gives 0 without smoothing and ``inf`` with it).

    Shapes:
        logits: ``(..., V)``; targets: ``(...)``; result: ``()`` or ``(...)``.

    Raises:
        TypeError: ``logits`` not float, ``targets`` not integer, ``epsilon``
            neither a number nor a 0-d real (floating or integer) tensor,
            ``ignore_index`` not an integer (``operator.index`` fails) or a bool.
            ``reduction`` or ``variant`` not a str.
        ValueError: mismatched shapes, ``logits`` with no class (V = 0), ``ignore_index`` beyond int64, a target outside ``[0, V)`` that is not
            ``ignore_index``, ``epsilon`` outside ``[0, 1)``, ``V < 2`` with
            ``"fairseq"``, or an unknown ``reduction``/``variant``. Tensor arguments on two devices.

    Example:
        >>> logits = torch.zeros(2, 10)                 # uniform over V = 10
        >>> targets = torch.tensor([3, 7])
        >>> label_smoothed_nll(logits, targets, 0.1)    # smoothing cannot help a uniform model
        tensor(2.3026)
        >>> logits = torch.tensor([[2.0, 0.0, 0.0]])
        >>> label_smoothed_nll(logits, torch.tensor([0]), 0.3, variant="pytorch")
        tensor(0.6395)
        >>> label_smoothed_nll(logits, torch.tensor([0]), 0.3, variant="fairseq")
        tensor(0.8395)
    """
    require_float("logits", logits)
    targets = require_class_indices("targets", targets)
    epsilon = _require_epsilon(epsilon)
    require_choice("reduction", reduction, SMOOTHING_REDUCTIONS)
    if isinstance(variant, str) and variant in DEPRECATED_VARIANTS:  # a list or an array is unhashable
        new_name = DEPRECATED_VARIANTS[variant]
        warnings.warn(
            f"label_smoothed_nll(variant={variant!r}) is deprecated: it is fairseq's present convention, "
            f"now spelled variant={new_name!r}",
            FutureWarning,
            stacklevel=2,
        )
        variant = new_name
    require_choice("variant", variant, SMOOTHING_VARIANTS)
    if logits.dim() < 1:
        raise ValueError(f"logits must have at least one dimension (..., V), got shape {tuple(logits.shape)}")
    require_classes("logits", logits)
    require_shape("targets", targets, logits.shape[:-1], "logits.shape[:-1]")
    require_same_devices("logits", logits, targets=targets)
    num_classes = logits.shape[-1]
    if variant == "fairseq" and num_classes < 2:
        raise ValueError(f"logits must have V >= 2 classes for variant='fairseq', got V={num_classes}")
    ignore_index = require_int("ignore_index", ignore_index, type_expected="an int (a target value)")
    require_targets_in_range("targets", targets, num_classes, ignore_index)

    ignored = targets == ignore_index
    log_probs = _log_softmax(logits)
    nll = -log_probs.gather(-1, targets.masked_fill(ignored, 0).unsqueeze(-1)).squeeze(-1)
    if epsilon == 0.0:
        # No smoothing term at all, as PyTorch: with a logit of -inf (a masked
        # vocabulary entry) the summed NLL is +inf, and 0 * inf would be nan.
        losses = nll
    elif variant == "pytorch":
        losses = (1.0 - epsilon) * nll + (epsilon / num_classes) * -log_probs.sum(dim=-1)
    else:
        spread = epsilon / (num_classes - 1)
        losses = (1.0 - epsilon - spread) * nll + spread * -log_probs.sum(dim=-1)
    losses = torch.where(ignored, torch.zeros_like(losses), losses)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return _divide_exactly(losses.sum(), (~ignored).sum(), losses.dtype)
