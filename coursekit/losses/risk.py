"""Sequence-level risk: train on the cost of whole outputs, not on per-token likelihood.

Minimum risk training (Shen et al. 2016) minimises the expected cost of
sampled candidates under the model's distribution renormalised over the
candidates; REINFORCE (Williams 1992) follows the score-function gradient of
the expected reward.
"""

from __future__ import annotations

import torch

from coursekit.losses._checks import reads_values, require_float, require_mask, require_positive, require_shape


def mrt_risk(
    sequence_log_probs: torch.Tensor,
    costs: torch.Tensor,
    *,
    alpha: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Minimum-risk-training objective (Shen et al. 2016): expected cost over candidates.

    Row :math:`i` holds the log-probabilities :math:`\\log P(y_{i,k} \\mid x_i)`
    of its candidates :math:`k = 1 \\dots K` and their costs :math:`\\Delta_{i,k}`
    (e.g. 1 - sentence BLEU). The candidates' distribution is sharpened by
    :math:`\\alpha` and renormalised over the row,

    .. math::

        Q_{i,k} = \\frac{P(y_{i,k} \\mid x_i)^{\\alpha}}{\\sum_{k'} P(y_{i,k'} \\mid x_i)^{\\alpha}}
                = \\operatorname{softmax}_k(\\alpha \\log P(y_{i,k} \\mid x_i)),
        \\qquad
        R = \\frac{1}{N} \\sum_{i=1}^{N} \\sum_k Q_{i,k}\\, \\Delta_{i,k}

    computed with a stable softmax. Costs are treated as constants. With ``mask``,
    only a row's True candidates enter its renormalisation (rows may have
    different numbers of candidates); every row needs at least one.

    Args:
        sequence_log_probs: candidate log-probabilities (sums of token log-probabilities).
        costs: candidate costs :math:`\\Delta`, lower is better.
        alpha: sharpness :math:`\\alpha > 0` (Shen et al. use 5e-3 over raw log-probabilities).
        mask: True (or 1) on real candidates, boolean or integer 0/1; ``None`` counts all.

    Returns:
        A scalar: the mean over rows of each row's expected cost.

    Shapes:
        sequence_log_probs, costs, mask: ``(..., K)``; result: ``()``.

    Raises:
        TypeError: a tensor is not float (``mask``: neither boolean nor integer), ``alpha`` not a number.
        ValueError: mismatched shapes, ``alpha <= 0``, no candidate axis, or a
            row with no candidate under ``mask`` (checked where values are
            read; see :mod:`coursekit.losses`).

    Example:
        >>> import math
        >>> log_p = torch.tensor([[math.log(0.75), math.log(0.25)]])
        >>> costs = torch.tensor([[0.0, 1.0]])
        >>> mrt_risk(log_p, costs)                  # 0.75 * 0 + 0.25 * 1
        tensor(0.2500)
        >>> mrt_risk(log_p, costs, alpha=2.0)       # Q = (0.9, 0.1)
        tensor(0.1000)
    """
    require_float("sequence_log_probs", sequence_log_probs)
    require_float("costs", costs)
    alpha = require_positive("alpha", alpha)
    if sequence_log_probs.dim() < 1 or sequence_log_probs.shape[-1] < 1:
        raise ValueError(
            "sequence_log_probs must have a non-empty candidate axis (..., K), "
            f"got shape {tuple(sequence_log_probs.shape)}"
        )
    require_shape("costs", costs, sequence_log_probs.shape, "sequence_log_probs.shape")
    scores = alpha * sequence_log_probs
    costs = costs.detach().to(scores.dtype)
    if mask is not None:
        counted = require_mask("mask", mask, sequence_log_probs.shape, "sequence_log_probs.shape")
        if reads_values(counted) and not bool(counted.any(dim=-1).all()):
            raise ValueError("mask must mark at least one candidate in every row, got a row with none")
        scores = torch.where(counted, scores, torch.full_like(scores, float("-inf")))
        costs = torch.where(counted, costs, torch.zeros_like(costs))
    weights = torch.softmax(scores, dim=-1)
    return (weights * costs).sum(dim=-1).mean()


def reinforce_loss(
    sequence_log_probs: torch.Tensor,
    rewards: torch.Tensor,
    *,
    baseline: torch.Tensor | float | str | None = None,
) -> torch.Tensor:
    """REINFORCE surrogate loss with an optional baseline: :math:`-\\frac1N\\sum_i (r_i - b)\\log p(y_i)`.

    Its gradient is the score-function estimate of :math:`-\\nabla \\mathbb{E}[r]`;
    the advantage :math:`r_i - b` is a constant (detached), so a learned
    baseline receives no gradient from this loss. A baseline that does not
    depend on :math:`y_i` leaves the expected gradient unchanged and lowers its
    variance.

    Args:
        sequence_log_probs: :math:`\\log p(y_i)` of each sampled sequence.
        rewards: rewards :math:`r_i` (higher is better).
        baseline: ``None`` (:math:`b = 0`), a number, ``"mean"`` (the batch mean
            reward), or a tensor broadcastable to ``rewards`` (e.g. per-sample values).

    Returns:
        A scalar.

    Shapes:
        sequence_log_probs, rewards: ``(...)``, equal; result: ``()``.

    Raises:
        TypeError: a tensor is not float, or ``baseline`` of another type.
        ValueError: mismatched shapes, ``baseline`` not broadcastable, an unknown
            baseline name, or empty input.

    Example:
        >>> log_p = torch.tensor([-1.0, -2.0])
        >>> rewards = torch.tensor([1.0, 0.0])
        >>> reinforce_loss(log_p, rewards)                  # -(1 * -1 + 0 * -2) / 2
        tensor(0.5000)
        >>> reinforce_loss(log_p, rewards, baseline="mean")  # -(0.5 * -1 - 0.5 * -2) / 2
        tensor(-0.2500)
    """
    require_float("sequence_log_probs", sequence_log_probs)
    require_float("rewards", rewards)
    require_shape("rewards", rewards, sequence_log_probs.shape, "sequence_log_probs.shape")
    if sequence_log_probs.numel() == 0:
        raise ValueError("sequence_log_probs must hold at least one sequence, got an empty tensor")
    rewards = rewards.detach().to(sequence_log_probs.dtype)
    if baseline is None:
        advantage = rewards
    elif isinstance(baseline, str):
        if baseline != "mean":
            raise ValueError(f"baseline must be None, a number, 'mean' or a tensor, got {baseline!r}")
        advantage = rewards - rewards.mean()
    elif isinstance(baseline, torch.Tensor):
        require_float("baseline", baseline)
        try:
            torch.broadcast_shapes(baseline.shape, rewards.shape)
        except RuntimeError:
            raise ValueError(
                f"baseline must be broadcastable to rewards.shape {tuple(rewards.shape)}, "
                f"got shape {tuple(baseline.shape)}"
            ) from None
        if torch.broadcast_shapes(baseline.shape, rewards.shape) != rewards.shape:
            raise ValueError(
                f"baseline must broadcast to rewards.shape {tuple(rewards.shape)} without enlarging it, "
                f"got shape {tuple(baseline.shape)}"
            )
        advantage = rewards - baseline.detach().to(rewards.dtype)
    elif isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        advantage = rewards - float(baseline)
    else:
        raise TypeError(f"baseline must be None, a number, 'mean' or a tensor, got {type(baseline).__name__}")
    return -(advantage * sequence_log_probs).mean()
