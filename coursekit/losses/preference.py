"""Preference losses: direct preference optimisation and its reference-free, length-normalised cousin.

Given a prompt, a preferred ("chosen") and a dispreferred ("rejected")
response, DPO (Rafailov et al. 2023) raises the policy's log-ratio to a frozen
reference model on the chosen response relative to the rejected one, through a
logistic loss. SimPO (Meng et al. 2024) drops the reference model and compares
the responses' *mean* token log-probabilities: the sum-versus-mean question of
sequence-level losses, in one formula.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from coursekit.losses._autocast import promoted_dtype
from coursekit.losses._checks import (
    reads_values,
    require_choice,
    require_float,
    require_in_interval,
    require_number,
    require_positive,
    require_same_device,
    require_shape,
    require_tensor,
)

PAIR_REDUCTIONS = ("mean", "sum", "none")
DPO_REDUCTIONS = PAIR_REDUCTIONS


class DPORewards(NamedTuple):
    """DPO's implicit rewards of the chosen and the rejected responses (see :func:`dpo_rewards`).

    Attributes:
        chosen: :math:`\\hat r(y_{\\text{c}})` of each pair, shape ``(B,)``.
        rejected: :math:`\\hat r(y_{\\text{r}})` of each pair, shape ``(B,)``.

    Example:
        >>> rewards = DPORewards(torch.tensor([0.5]), torch.tensor([-0.5]))
        >>> (rewards.chosen > rewards.rejected).float().mean()   # TRL's rewards/accuracies
        tensor(1.)
    """

    chosen: torch.Tensor
    rejected: torch.Tensor


def _require_pairs(names_and_values: tuple[tuple[str, object], ...]) -> tuple[torch.Tensor, ...]:
    """Check that every value is a float tensor of the first one's shape; return them."""
    first_name, first = names_and_values[0]
    shape = require_float(first_name, first).shape
    tensors = []
    for name, value in names_and_values:
        tensor = require_float(name, value)
        require_shape(name, tensor, shape, f"{first_name}.shape")
        require_same_device(name, tensor, first, first_name)
        tensors.append(tensor)
    return tuple(tensors)


def _reduce_pairs(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.mean()


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """DPO loss: :math:`-\\log\\sigma\\big(\\hat r(y_{\\text{c}}) - \\hat r(y_{\\text{r}})\\big)` for each of B pairs.

    Each argument holds one sequence log-probability per pair,
    :math:`\\log p_\\theta(y \\mid x)` or :math:`\\log p_{\\text{ref}}(y \\mid x)`
    summed over the response tokens (e.g.
    ``-causal_lm_loss(..., loss_mask=response_mask(...), reduction="none")``).
    With DPO's implicit reward
    :math:`\\hat r(y) = \\beta\\big(\\log p_\\theta(y \\mid x) - \\log p_{\\text{ref}}(y \\mid x)\\big)`,
    the loss of a pair :math:`(x, y_{\\text{c}}, y_{\\text{r}})` is

    .. math::

        L^{\\mathrm{DPO}} = -(1-\\varepsilon) \\log \\sigma\\big(\\hat r(y_{\\text{c}}) - \\hat r(y_{\\text{r}})\\big)
            - \\varepsilon \\log \\sigma\\big(\\hat r(y_{\\text{r}}) - \\hat r(y_{\\text{c}})\\big)

    where :math:`\\varepsilon` is ``label_smoothing``: conservative DPO
    (Mitchell 2023), for preference labels that are flipped with probability
    :math:`\\varepsilon`. With :math:`\\varepsilon = 0` (the default) it is
    plain DPO, :math:`\\operatorname{softplus}\\big(\\hat r(y_{\\text{r}}) - \\hat r(y_{\\text{c}})\\big)`.
    Computed with ``logsigmoid``, so large margins neither overflow nor lose
    precision. Where the policy equals the reference (both rewards 0) the loss
    is :math:`\\ln 2` for every :math:`\\varepsilon`. The implicit rewards
    that trainers log come from :func:`dpo_rewards`.

    TRL: its ``loss_type="sigmoid"`` is this loss. Up to TRL v0.28 it also
    applied ``label_smoothing`` as here; since v0.29 (the DPO refactor, pull
    request #3906) its ``"sigmoid"`` loss ignores ``label_smoothing``, which
    only its ``"robust"``, ``"exo_pair"`` and ``"aot"`` losses use (the
    ``"aot"`` losses with this same smoothing term).

    Args:
        policy_chosen_logps: :math:`\\log p_\\theta(y_{\\text{c}} \\mid x)`.
        policy_rejected_logps: :math:`\\log p_\\theta(y_{\\text{r}} \\mid x)`.
        reference_chosen_logps: :math:`\\log p_{\\text{ref}}(y_{\\text{c}} \\mid x)`.
        reference_rejected_logps: :math:`\\log p_{\\text{ref}}(y_{\\text{r}} \\mid x)`.
        beta: :math:`\\beta > 0`, the strength of the implicit KL penalty.
        label_smoothing: :math:`\\varepsilon \\in [0, 0.5)`, the assumed
            probability that a preference label is flipped.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (one loss per pair).

    Returns:
        A scalar, or one loss per pair for ``"none"``.

    Shapes:
        all four inputs: ``(B,)`` (any equal shape); result: ``()`` or ``(B,)``.

    Raises:
        TypeError: an input is not a float tensor, ``beta`` or ``label_smoothing`` not a number.
            ``reduction`` not a str.
        ValueError: mismatched shapes, ``beta`` not a finite number > 0, ``label_smoothing`` outside
            ``[0, 0.5)``, unknown ``reduction``. Tensor arguments on two devices.

    Example:
        >>> zero = torch.zeros(3)
        >>> dpo_loss(zero, zero, zero, zero)              # policy = reference: ln 2
        tensor(0.6931)
        >>> chosen, rejected = torch.tensor([-1.0]), torch.tensor([-3.0])
        >>> reference = torch.tensor([-2.0])
        >>> dpo_loss(chosen, rejected, reference, reference, beta=0.5, reduction="none")
        tensor([0.3133])
        >>> dpo_loss(chosen, rejected, reference, reference, beta=0.5, label_smoothing=0.1,
        ...          reduction="none")                    # 0.9 * 0.3133 + 0.1 * 1.3133
        tensor([0.4133])
    """
    policy_chosen, policy_rejected, reference_chosen, reference_rejected = _require_pairs((
        ("policy_chosen_logps", policy_chosen_logps),
        ("policy_rejected_logps", policy_rejected_logps),
        ("reference_chosen_logps", reference_chosen_logps),
        ("reference_rejected_logps", reference_rejected_logps),
    ))
    beta = require_positive("beta", beta)
    label_smoothing = require_in_interval(
        "label_smoothing", label_smoothing, 0.0, 0.5, "the probability that a preference label is flipped"
    )
    require_choice("reduction", reduction, DPO_REDUCTIONS)
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    logits = beta * margin
    losses = -F.logsigmoid(logits)
    if label_smoothing > 0:
        losses = (1.0 - label_smoothing) * losses - label_smoothing * F.logsigmoid(-logits)
    return _reduce_pairs(losses, reduction)


def dpo_rewards(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
) -> DPORewards:
    """DPO's implicit rewards :math:`\\hat r(y) = \\beta(\\log p_\\theta(y \\mid x) - \\log p_{\\text{ref}}(y \\mid x))`.

    DPO's loss is :math:`-\\log\\sigma\\big(\\hat r(y_{\\text{c}}) - \\hat r(y_{\\text{r}})\\big)`:
    the policy is trained as if these were a reward model's scores (Rafailov
    et al. 2023). Trainers log their means, their margin
    :math:`\\hat r(y_{\\text{c}}) - \\hat r(y_{\\text{r}})` and how often it is
    positive (TRL's ``rewards/chosen``, ``rewards/rejected``,
    ``rewards/margins``, ``rewards/accuracies``). They keep the graph; call
    ``.detach()`` to log or plot them, as TRL does.

    Args:
        policy_chosen_logps: :math:`\\log p_\\theta(y_{\\text{c}} \\mid x)`, as in :func:`dpo_loss`.
        policy_rejected_logps: :math:`\\log p_\\theta(y_{\\text{r}} \\mid x)`.
        reference_chosen_logps: :math:`\\log p_{\\text{ref}}(y_{\\text{c}} \\mid x)`.
        reference_rejected_logps: :math:`\\log p_{\\text{ref}}(y_{\\text{r}} \\mid x)`.
        beta: :math:`\\beta > 0`.

    Returns:
        ``DPORewards(chosen, rejected)``, one reward per pair each.

    Shapes:
        all four inputs: ``(B,)`` (any equal shape); ``chosen``, ``rejected``: the same.

    Raises:
        TypeError: an input is not a float tensor, ``beta`` not a number.
        ValueError: mismatched shapes, ``beta`` not a finite number > 0. Tensor arguments on two devices.

    Example:
        >>> rewards = dpo_rewards(torch.tensor([-1.0]), torch.tensor([-3.0]),
        ...                       torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5)
        >>> rewards.chosen, rewards.rejected, rewards.chosen - rewards.rejected
        (tensor([0.5000]), tensor([-0.5000]), tensor([1.]))
    """
    policy_chosen, policy_rejected, reference_chosen, reference_rejected = _require_pairs((
        ("policy_chosen_logps", policy_chosen_logps),
        ("policy_rejected_logps", policy_rejected_logps),
        ("reference_chosen_logps", reference_chosen_logps),
        ("reference_rejected_logps", reference_rejected_logps),
    ))
    beta = require_positive("beta", beta)
    return DPORewards(beta * (policy_chosen - reference_chosen), beta * (policy_rejected - reference_rejected))


def _require_lengths(name: str, value: object, reference: torch.Tensor) -> torch.Tensor:
    """``value`` if it is a real tensor of token counts of ``reference``'s (``chosen_logps``') shape and device."""
    tensor = require_tensor(name, value)
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer or float tensor of token counts, got dtype {tensor.dtype}")
    require_shape(name, tensor, reference.shape, "chosen_logps.shape")
    require_same_device(name, tensor, reference, "chosen_logps")
    if tensor.numel() and reads_values(tensor):
        # written as "not > 0" so that nan fails it; inf is > 0 and is refused separately.
        bad = ~(tensor > 0) | torch.isinf(tensor)
        if bool(bad.any()):
            raise ValueError(
                f"{name} must be finite and > 0 (a response has at least one token), got {tensor[bad][0].item()}"
            )
    return tensor


def simpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    *,
    beta: float = 2.0,
    gamma: float = 0.5,
    reduction: str = "mean",
) -> torch.Tensor:
    """SimPO loss (Meng et al. 2024): reference-free and length-normalised.

    With :math:`\\log p_\\theta(y \\mid x)` summed over the response's :math:`T_y`
    tokens, the loss of a pair :math:`(x, y_{\\text{c}}, y_{\\text{r}})` is

    .. math::

        L^{\\mathrm{SimPO}} = -\\log\\sigma\\Big(\\frac{\\beta}{T_{y_{\\text{c}}}}\\log p_\\theta(y_{\\text{c}} \\mid x)
              - \\frac{\\beta}{T_{y_{\\text{r}}}}\\log p_\\theta(y_{\\text{r}} \\mid x) - \\gamma\\Big)

    The reward :math:`\\frac{\\beta}{T_y}\\log p_\\theta(y \\mid x)` is
    :math:`\\beta` times the *mean* token log-probability, the quantity that generation ranks by. A sum
    of log-probabilities favours short responses; DPO's reward is a sum of
    log-*ratios* against the reference instead, and DPO is known to lengthen
    responses, the length exploitation that SimPO's normalisation is meant to
    stop (Meng et al. 2024, section 2.2). :math:`\\gamma > 0` asks for a margin.
    TRL computes the same in ``CPOTrainer.cpo_loss`` with ``loss_type="simpo"``
    and ``simpo_gamma`` = :math:`\\gamma` (it subtracts :math:`\\gamma/\\beta`
    inside the :math:`\\beta(\\cdot)`, which is the same number); the trainer
    (``trl.experimental.cpo`` in TRL 1.16) adds ``cpo_alpha`` times an NLL term
    (``cpo_alpha`` defaults to 1.0), so pure SimPO with this function's defaults needs
    ``CPOConfig(loss_type="simpo", cpo_alpha=0.0, label_smoothing=0.0, beta=2.0)``
    (``CPOConfig``'s ``beta`` defaults to 0.1, this function's to 2.0; ``simpo_gamma``
    defaults to 0.5 in both).

    Args:
        chosen_logps: :math:`\\log p_\\theta(y_{\\text{c}} \\mid x)`, summed over the response.
        rejected_logps: :math:`\\log p_\\theta(y_{\\text{r}} \\mid x)`, summed over the response.
        chosen_lengths: :math:`T_{y_{\\text{c}}}`, the number of tokens summed (integer or float, > 0).
        rejected_lengths: :math:`T_{y_{\\text{r}}}`.
        beta: :math:`\\beta > 0`, the reward scale.
        gamma: :math:`\\gamma`, the target reward margin (any real number; 0 drops it).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (one loss per pair).

    Returns:
        A scalar, or one loss per pair for ``"none"``, in the dtype the four
        tensors promote to (``torch.result_type``), as PyTorch's ``beta *
        chosen_logps / chosen_lengths`` gives it: integer lengths take the
        log-probabilities' dtype, float64 lengths give float64.

    Shapes:
        all four inputs: ``(B,)`` (any equal shape); result: ``()`` or ``(B,)``.

    Raises:
        TypeError: a log-probability is not a float tensor, a length is not a
            real tensor, ``beta`` or ``gamma`` not a number. ``reduction`` not a str.
        ValueError: mismatched shapes, a length <= 0 or not finite (``nan``,
            ``inf``; checked where values are read, see :mod:`coursekit.losses`), ``beta`` not a finite number > 0, ``gamma`` not
            finite, unknown ``reduction``. Tensor arguments on two devices.

    Example:
        >>> # chosen: 4 tokens, -2 nats in all; rejected: 1 token, -1 nat
        >>> loss = simpo_loss(torch.tensor([-2.0]), torch.tensor([-1.0]),
        ...                   torch.tensor([4]), torch.tensor([1]), beta=2.0, gamma=0.0)
        >>> round(loss.item(), 4)                 # -log sigmoid(2 * (-0.5) - 2 * (-1)) = softplus(-1)
        0.3133
    """
    chosen, rejected = _require_pairs((("chosen_logps", chosen_logps), ("rejected_logps", rejected_logps)))
    chosen_count = _require_lengths("chosen_lengths", chosen_lengths, chosen)
    rejected_count = _require_lengths("rejected_lengths", rejected_lengths, chosen)
    beta = require_positive("beta", beta)
    gamma = require_number("gamma", gamma)
    require_choice("reduction", reduction, PAIR_REDUCTIONS)
    # In the dtype the four promote to, as PyTorch's beta * logps / lengths: integer lengths take the
    # log-probabilities' dtype, and no tensor is rounded to the dtype of chosen_logps.
    dtype = promoted_dtype(chosen, rejected, chosen_count, rejected_count)
    chosen_reward = beta * chosen.to(dtype) / chosen_count.to(dtype)
    rejected_reward = beta * rejected.to(dtype) / rejected_count.to(dtype)
    return _reduce_pairs(-F.logsigmoid(chosen_reward - rejected_reward - gamma), reduction)
