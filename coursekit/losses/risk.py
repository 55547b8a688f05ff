"""Sequence-level risk: train on the cost of whole outputs, not on per-token likelihood.

Minimum risk training (Shen et al. 2016) minimises the expected cost of
sampled candidates under the model's distribution renormalised over the
candidates; REINFORCE (Williams 1992) follows the score-function gradient of
the expected reward.
"""

from __future__ import annotations

import torch

from coursekit.losses._autocast import promoted_dtype
from coursekit.losses._checks import (
    REAL_NUMBER,
    as_real,
    reads_values,
    require_float,
    require_mask,
    require_number,
    require_positive,
    require_same_device,
    require_same_devices,
    require_shape,
)


def mrt_risk(
    sequence_log_probs: torch.Tensor,
    costs: torch.Tensor,
    *,
    alpha: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Minimum-risk-training objective (Shen et al. 2016): expected cost over candidates.

    Row :math:`b` holds the log-probabilities :math:`\\log p_\\theta(\\hat y \\mid x_b)`
    of the candidates :math:`\\hat y \\in \\mathcal{S}(x_b)` of input :math:`x_b`
    and their costs :math:`\\Delta(\\hat y, y_b)` (e.g. 1 - sentence BLEU against
    the reference :math:`y_b`). The model's distribution is sharpened by
    :math:`\\kappa` (``alpha``) and renormalised over the candidate set,

    .. math::

        Q_\\kappa(\\hat y \\mid x_b) = \\frac{p_\\theta(\\hat y \\mid x_b)^{\\kappa}}
            {\\sum_{y' \\in \\mathcal{S}(x_b)} p_\\theta(y' \\mid x_b)^{\\kappa}}
            = \\operatorname{softmax}_{\\mathcal{S}(x_b)}\\big(\\kappa \\log p_\\theta(\\hat y \\mid x_b)\\big),
        \\qquad
        \\tilde R = \\frac{1}{B} \\sum_{b=1}^{B} \\sum_{\\hat y \\in \\mathcal{S}(x_b)}
            Q_\\kappa(\\hat y \\mid x_b)\\, \\Delta(\\hat y, y_b)

    computed with a stable softmax. Costs are treated as constants. With ``mask``,
    only a row's True candidates are in its set :math:`\\mathcal{S}(x_b)` (rows
    may have different numbers of candidates); every row needs at least one.

    Args:
        sequence_log_probs: candidate log-probabilities (sums of token log-probabilities).
        costs: candidate costs :math:`\\Delta`, lower is better.
        alpha: the sharpness :math:`\\kappa > 0` (Shen et al. use 5e-3 over raw log-probabilities).
        mask: True (or 1) on real candidates, boolean or integer 0/1; ``None`` counts all.

    Returns:
        A scalar, :math:`\\tilde R`: the mean over rows of each row's expected
        cost, in the dtype ``sequence_log_probs`` and ``costs`` promote to
        (``torch.result_type``): bfloat16 log-probabilities with float32 costs
        give float32, the softmax computed in float32. A row whose counted
        candidates all have log-probability ``-inf`` has no distribution
        :math:`Q` (0 / 0) and makes the result ``nan``; it is not refused, as
        that would read the values.

    Shapes:
        sequence_log_probs, costs, mask: ``(..., S)`` with S candidates per row; result: ``()``.

    Raises:
        TypeError: a tensor is not float (``mask``: neither boolean nor integer), ``alpha`` not a number.
        ValueError: mismatched shapes, ``alpha`` not a finite number > 0, no candidate axis, no row, or a
            row with no candidate under ``mask``, or a ``mask`` holding a value
            other than 0 and 1 (both checked where values are read; see
            :mod:`coursekit.losses`). Tensor arguments on two devices.

    Example:
        >>> import math
        >>> log_p = torch.tensor([[math.log(0.75), math.log(0.25)]])
        >>> costs = torch.tensor([[0.0, 1.0]])
        >>> mrt_risk(log_p, costs)                  # 0.75 * 0 + 0.25 * 1
        tensor(0.2500)
        >>> mrt_risk(log_p, costs, alpha=2.0)       # kappa = 2: Q = (0.9, 0.1)
        tensor(0.1000)
    """
    require_float("sequence_log_probs", sequence_log_probs)
    require_float("costs", costs)
    alpha = require_positive("alpha", alpha)
    if sequence_log_probs.dim() < 1 or sequence_log_probs.shape[-1] < 1:
        raise ValueError(
            "sequence_log_probs must have a non-empty candidate axis (..., S), "
            f"got shape {tuple(sequence_log_probs.shape)}"
        )
    if sequence_log_probs.numel() == 0:
        # the mean over no rows would be nan, as reinforce_loss's over no sequences
        raise ValueError(
            f"sequence_log_probs must hold at least one row of candidates, got shape {tuple(sequence_log_probs.shape)}"
        )
    require_shape("costs", costs, sequence_log_probs.shape, "sequence_log_probs.shape")
    require_same_devices("sequence_log_probs", sequence_log_probs, costs=costs, mask=mask)
    # In the promoted dtype, as PyTorch's arithmetic on the two: float32 costs are not rounded to the
    # dtype of bfloat16 log-probabilities (which are cast up, differentiably).
    dtype = promoted_dtype(sequence_log_probs, costs)
    scores = alpha * sequence_log_probs.to(dtype)
    costs = costs.detach().to(dtype)
    if mask is not None:
        counted = require_mask("mask", mask, sequence_log_probs.shape, "sequence_log_probs.shape")
        if reads_values(counted) and not bool(counted.any(dim=-1).all()):
            empty = (~counted.any(dim=-1)).nonzero()
            where = f"row {tuple(empty[0].tolist())}" if counted.dim() > 1 else "its only row"
            raise ValueError(f"mask must mark at least one candidate in every row, got none in {where}")
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
    """REINFORCE surrogate loss with a baseline: :math:`-\\frac1G\\sum_i (r^{(i)} - v^{(i)})\\log p_\\theta(y^{(i)})`.

    Over :math:`G` sampled sequences :math:`y^{(i)}` with rewards :math:`r^{(i)}`,
    its gradient is the score-function estimate of :math:`-\\nabla \\mathbb{E}[r]`;
    the advantage :math:`r^{(i)} - v^{(i)}` is a constant (detached), so a
    learned baseline receives no gradient from this loss. A baseline
    :math:`v^{(i)}` that does not depend on :math:`y^{(i)}` leaves the expected
    gradient unchanged, and lowers its variance when it is close to the
    expected reward (one far from the rewards raises it). The batch mean
    (``baseline="mean"``) is not such a baseline: it contains :math:`r^{(i)}`
    itself, which shrinks the expected gradient by the factor
    :math:`(G-1)/G` (for independent samples); the mean of the *other*
    samples (``"leave_one_out"``, as in RLOO, Kool et al. 2019, and
    Ahmadian et al. 2024) is, and gives the unbiased gradient. GRPO's group
    mean has the same bias as ``"mean"``.

    Args:
        sequence_log_probs: :math:`\\log p_\\theta(y^{(i)})` of each sampled sequence.
        rewards: rewards :math:`r^{(i)}` (higher is better).
        baseline: ``None`` (:math:`v = 0`), a number, ``"mean"`` (the mean
            reward of all :math:`G` samples), ``"leave_one_out"``
            (:math:`v^{(i)} = \\frac{1}{G-1}\\sum_{j \\ne i} r^{(j)}`, needs
            :math:`G \\ge 2`), or a tensor broadcastable to ``rewards`` (e.g.
            per-sample values). The two names treat every element of
            ``rewards`` as one group of :math:`G` = ``rewards.numel()``
            samples, whatever its shape; for one group per prompt, as RLOO
            and GRPO form them from a ``(B, G)`` tensor, pass
            ``baseline=leave_one_out_baseline(rewards)`` (groups on the last
            axis) or a tensor of per-prompt means.

    Returns:
        A scalar, in the dtype ``sequence_log_probs``, ``rewards`` and a tensor
        ``baseline`` promote to (``torch.result_type``), as PyTorch's
        ``-((rewards - baseline) * sequence_log_probs).mean()`` gives it:
        bfloat16 log-probabilities with float32 rewards give float32.

    Shapes:
        sequence_log_probs, rewards: ``(...)``, equal; result: ``()``.

    Raises:
        TypeError: a tensor is not float, or ``baseline`` of another type.
        ValueError: mismatched shapes, ``baseline`` not broadcastable, an unknown
            baseline name, a number ``baseline`` that is not finite, empty input,
            or ``"leave_one_out"`` with one sample. Tensor arguments on two devices.

    Example:
        >>> log_p = torch.tensor([-1.0, -2.0])
        >>> rewards = torch.tensor([1.0, 0.0])
        >>> reinforce_loss(log_p, rewards)                  # -(1 * -1 + 0 * -2) / 2
        tensor(0.5000)
        >>> reinforce_loss(log_p, rewards, baseline="mean")  # -(0.5 * -1 - 0.5 * -2) / 2
        tensor(-0.2500)
        >>> reinforce_loss(log_p, rewards, baseline="leave_one_out")  # -(1 * -1 - 1 * -2) / 2
        tensor(-0.5000)
    """
    require_float("sequence_log_probs", sequence_log_probs)
    require_float("rewards", rewards)
    require_shape("rewards", rewards, sequence_log_probs.shape, "sequence_log_probs.shape")
    require_same_devices("sequence_log_probs", sequence_log_probs, rewards=rewards)
    if sequence_log_probs.numel() == 0:
        raise ValueError("sequence_log_probs must hold at least one sequence, got an empty tensor")
    # In the dtype the tensors promote to, as PyTorch's arithmetic on them: float32 rewards (or a baseline)
    # are not rounded to the dtype of bfloat16 log-probabilities (which are cast up, differentiably).
    # (a baseline tensor that is not float is refused below)
    floating_baseline = isinstance(baseline, torch.Tensor) and baseline.is_floating_point()
    tensors = (sequence_log_probs, rewards) + ((baseline,) if floating_baseline else ())
    dtype = promoted_dtype(*tensors)
    sequence_log_probs = sequence_log_probs.to(dtype)
    rewards = rewards.detach().to(dtype)
    if baseline is None:
        advantage = rewards
    elif isinstance(baseline, str):
        if baseline not in ("mean", "leave_one_out"):
            raise ValueError(
                f"baseline must be None, {REAL_NUMBER}, 'mean', 'leave_one_out' or a tensor, got {baseline!r}"
            )
        if baseline == "mean":
            advantage = rewards - rewards.mean()
        else:
            count = rewards.numel()
            if count < 2:
                raise ValueError(f"baseline='leave_one_out' needs at least 2 samples, got {count}")
            # r_i - (sum - r_i) / (G - 1) = G / (G - 1) * (r_i - mean)
            advantage = (rewards - rewards.mean()) * (count / (count - 1))
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
        require_same_device("baseline", baseline, rewards, "rewards", cpu_scalar=True)
        advantage = rewards - baseline.detach().to(rewards.dtype)
    elif as_real(baseline) is not None:
        advantage = rewards - require_number("baseline", baseline)
    else:
        raise TypeError(
            f"baseline must be None, {REAL_NUMBER}, 'mean', 'leave_one_out' or a tensor, got {type(baseline).__name__}"
        )
    return -(advantage * sequence_log_probs).mean()


def leave_one_out_baseline(rewards: torch.Tensor) -> torch.Tensor:
    """The leave-one-out baseline of a group of samples (RLOO): the mean reward of the *other* samples.

    For a group of :math:`G` samples :math:`y^{(1)}, \\dots, y^{(G)}` of one input (the
    last axis), with rewards :math:`r(y^{(j)})`,

    .. math::

        v_i = \\frac{1}{G - 1} \\sum_{j \\ne i} r(y^{(j)}),
        \\qquad r(y^{(i)}) - v_i = \\frac{G}{G - 1}\\Bigl(r(y^{(i)}) - \\frac{1}{G}\\sum_j r(y^{(j)})\\Bigr).

    :math:`v_i` does not depend on sample :math:`y^{(i)}`, so subtracting it leaves the
    REINFORCE estimate unbiased (Kool et al. 2019; Ahmadian et al. 2024), where
    the group mean, which contains :math:`r(y^{(i)})`, shrinks it by :math:`(G - 1)/G`.
    Pass the result as ``baseline=`` to :func:`reinforce_loss`.

    Args:
        rewards: rewards of the samples, grouped on the last axis.

    Returns:
        One baseline per sample, detached from the graph.

    Shapes:
        rewards: ``(..., G)`` with :math:`G \\ge 2`; result: same.

    Raises:
        TypeError: ``rewards`` is not a float tensor.
        ValueError: fewer than two samples in a group.

    Example:
        >>> leave_one_out_baseline(torch.tensor([[1.0, 2.0, 6.0]]))
        tensor([[4.0000, 3.5000, 1.5000]])
    """
    require_float("rewards", rewards)
    if rewards.dim() < 1 or rewards.shape[-1] < 2:
        raise ValueError(
            f"rewards must have a group axis (..., G) with G >= 2 samples, got shape {tuple(rewards.shape)}"
        )
    rewards = rewards.detach()
    return (rewards.sum(dim=-1, keepdim=True) - rewards) / (rewards.shape[-1] - 1)
