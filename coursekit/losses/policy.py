"""How policy-gradient methods for language models turn per-token losses into one number.

GRPO, DAPO and Dr. GRPO compute the same per-token surrogate losses for a group
of sampled responses and differ only in how they average them, and that choice
alone changes which responses the update favours:

* GRPO (Shao et al. 2024) averages each response over its own tokens, then
  over responses, so a token of a long response weighs less;
* DAPO (Yu et al. 2025) averages over all tokens of all responses;
* Dr. GRPO (Liu et al. 2025) divides the sum by a constant, the number of
  responses times the generation budget, so there is no length bias at all.
"""

from __future__ import annotations

import math
import warnings

import torch

from coursekit.losses._checks import require_choice, require_float, require_mask
from coursekit.losses.nll import batch_loss

POLICY_MODES = ("grpo", "dapo", "dr_grpo")


def policy_loss_aggregate(
    token_losses: torch.Tensor,
    mask: torch.Tensor | None,
    *,
    mode: str = "grpo",
    max_len: int | None = None,
) -> torch.Tensor:
    """Aggregate per-token policy losses of ``G`` responses the GRPO, DAPO or Dr. GRPO way.

    With :math:`\\ell_{i,t}` the loss of token :math:`t` of response :math:`i`,
    :math:`m_{i,t}` its mask and :math:`|o_i| = \\sum_t m_{i,t}`:

    .. math::

        L^{\\text{grpo}} = \\frac{1}{G'} \\sum_{i : |o_i| > 0} \\frac{1}{|o_i|} \\sum_t m_{i,t}\\ell_{i,t},
        \\qquad
        L^{\\text{dapo}} = \\frac{\\sum_{i,t} m_{i,t}\\ell_{i,t}}{\\sum_i |o_i|},
        \\qquad
        L^{\\text{dr\\_grpo}} = \\frac{\\sum_{i,t} m_{i,t}\\ell_{i,t}}{G \\cdot L_{\\max}}

    where :math:`G'` counts the non-empty responses (an empty response has no
    token mean and is left out, as in :func:`batch_loss`'s ``"sequence_mean"``;
    implementations that divide by ``clamp(min=1)`` count it as 0 instead) and
    :math:`L_{\\max}` is ``max_len``. ``"grpo"`` is ``batch_loss(...,
    "sequence_mean")``, ``"dapo"`` is ``batch_loss(..., "token_mean")``. When no
    token is unmasked, ``"grpo"`` and ``"dapo"`` give 0 with a ``RuntimeWarning``;
    ``"dr_grpo"`` gives 0 (its denominator never vanishes).

    Args:
        token_losses: per-token losses (any sign, e.g. :math:`-A_i\\,\\rho_{i,t}`).
        mask: boolean, True on response tokens; ``None`` counts every token.
        mode: ``"grpo"``, ``"dapo"`` or ``"dr_grpo"``.
        max_len: :math:`L_{\\max}` for ``"dr_grpo"``, the generation budget;
            ``None`` uses the padded length ``T``. No response may be longer.
            Ignored by the other modes.

    Returns:
        A scalar.

    Shapes:
        token_losses, mask: ``(G, T)`` (or ``(..., T)``: every leading index is a
        response); result: ``()``.

    Raises:
        TypeError: ``token_losses`` not float, ``mask`` not boolean, ``max_len`` not an int.
        ValueError: mismatched shapes, unknown ``mode``, ``max_len < 1``, or a
            response longer than ``max_len``.

    Example:
        >>> losses = torch.tensor([[1., 1., 1., 1.], [3., 3., 0., 0.]])
        >>> mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
        >>> [round(policy_loss_aggregate(losses, mask, mode=m).item(), 4)
        ...  for m in ("grpo", "dapo", "dr_grpo")]
        [2.0, 1.6667, 1.25]
        >>> policy_loss_aggregate(losses, mask, mode="dr_grpo", max_len=10)   # 10 / (2 * 10)
        tensor(0.5000)
    """
    require_float("token_losses", token_losses)
    require_choice("mode", mode, POLICY_MODES)
    if token_losses.dim() < 1:
        raise ValueError(f"token_losses must have a time axis (..., T), got shape {tuple(token_losses.shape)}")
    if mask is None:
        counted = torch.ones_like(token_losses, dtype=torch.bool)
    else:
        counted = require_mask("mask", mask, token_losses.shape, "token_losses.shape")
    if mode == "grpo":
        return _quiet_batch_loss(token_losses, counted, "sequence_mean")
    if mode == "dapo":
        return _quiet_batch_loss(token_losses, counted, "token_mean")

    if max_len is None:
        max_len = token_losses.shape[-1]
    if isinstance(max_len, bool) or not isinstance(max_len, int):
        raise TypeError(f"max_len must be an int or None, got {type(max_len).__name__}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    longest = int(counted.sum(dim=-1).max()) if counted.numel() else 0
    if longest > max_len:
        raise ValueError(f"max_len must be >= the longest response ({longest} tokens), got {max_len}")
    num_responses = math.prod(token_losses.shape[:-1])
    total = torch.where(counted, token_losses, torch.zeros_like(token_losses)).sum()
    return total / (max(num_responses, 1) * max_len)


def _quiet_batch_loss(token_losses: torch.Tensor, counted: torch.Tensor, reduction: str) -> torch.Tensor:
    """``batch_loss`` whose all-masked warning names this function rather than ``batch_loss``."""
    if not bool(counted.any()):
        warnings.warn(
            "policy_loss_aggregate: every token is masked; returning 0",
            RuntimeWarning,
            stacklevel=3,
        )
        return torch.where(counted, token_losses, torch.zeros_like(token_losses)).sum() * 0.0
    return batch_loss(token_losses, counted, reduction=reduction)
