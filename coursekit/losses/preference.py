"""Direct preference optimisation (Rafailov et al. 2023).

Given a prompt, a preferred ("chosen") and a dispreferred ("rejected")
response, DPO raises the policy's log-ratio to a frozen reference model on the
chosen response relative to the rejected one, through a logistic loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from coursekit.losses._checks import require_choice, require_float, require_positive, require_shape

DPO_REDUCTIONS = ("mean", "sum", "none")


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    reduction: str = "mean",
) -> torch.Tensor:
    """DPO loss: :math:`-\\log\\sigma\\big(\\beta[(\\log\\pi_c - \\log\\pi^{\\mathrm{ref}}_c) - (\\log\\pi_r - \\log\\pi^{\\mathrm{ref}}_r)]\\big)`.

    Each argument holds one sequence log-probability per pair,
    :math:`\\log \\pi(y \\mid x)` summed over the response tokens (e.g.
    ``-causal_lm_loss(..., loss_mask=response_mask(...), reduction="none")``).
    With the margin
    :math:`h_i = (\\log\\pi_{c,i} - \\log\\pi^{\\mathrm{ref}}_{c,i}) - (\\log\\pi_{r,i} - \\log\\pi^{\\mathrm{ref}}_{r,i})`,

    .. math:: L_i = -\\log \\sigma(\\beta h_i) = \\operatorname{softplus}(-\\beta h_i)

    computed with ``logsigmoid`` so large margins neither overflow nor lose
    precision. At :math:`h = 0` (policy equals reference) the loss is
    :math:`\\ln 2`.

    Args:
        policy_chosen_logps: :math:`\\log\\pi_\\theta(y_c \\mid x)`.
        policy_rejected_logps: :math:`\\log\\pi_\\theta(y_r \\mid x)`.
        reference_chosen_logps: :math:`\\log\\pi^{\\mathrm{ref}}(y_c \\mid x)`.
        reference_rejected_logps: :math:`\\log\\pi^{\\mathrm{ref}}(y_r \\mid x)`.
        beta: :math:`\\beta > 0`, the strength of the implicit KL penalty.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (one loss per pair).

    Returns:
        A scalar, or one loss per pair for ``"none"``.

    Shapes:
        all four inputs: ``(N,)`` (any equal shape); result: ``()`` or ``(N,)``.

    Raises:
        TypeError: an input is not a float tensor, ``beta`` not a number.
        ValueError: mismatched shapes, ``beta <= 0``, unknown ``reduction``.

    Example:
        >>> zero = torch.zeros(3)
        >>> dpo_loss(zero, zero, zero, zero)              # policy = reference: ln 2
        tensor(0.6931)
        >>> dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]),
        ...          torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5, reduction="none")
        tensor([0.3133])
    """
    require_float("policy_chosen_logps", policy_chosen_logps)
    shape = policy_chosen_logps.shape
    for name, value in (
        ("policy_rejected_logps", policy_rejected_logps),
        ("reference_chosen_logps", reference_chosen_logps),
        ("reference_rejected_logps", reference_rejected_logps),
    ):
        require_float(name, value)
        require_shape(name, value, shape, "policy_chosen_logps.shape")
    beta = require_positive("beta", beta)
    require_choice("reduction", reduction, DPO_REDUCTIONS)
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    losses = -F.logsigmoid(beta * margin)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.mean()
