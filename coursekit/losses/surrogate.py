"""The per-token policy-gradient objective of PPO, GRPO, DAPO and GSPO: ratios, clipping, KL penalty.

A policy :math:`p_\\theta` is trained on responses :math:`o_i` sampled from an
older copy :math:`p_{\\theta_{\\text{old}}}` of itself. Each token's loss weighs
its advantage :math:`A` by the importance ratio
:math:`w_{i,t} = p_\\theta(o_{i,t}) / p_{\\theta_{\\text{old}}}(o_{i,t})`, clipped
so that one batch cannot move the policy far (PPO, Schulman et al. 2017); GRPO
(Shao et al. 2024) adds a per-token estimate of the KL divergence to a frozen
reference model :math:`p_{\\text{ref}}`; DAPO (Yu et al. 2025) clips the ratio
higher above than below; GSPO (Zheng et al. 2025) uses one ratio per sequence.
The per-token losses these functions return are then averaged by
:func:`policy_loss_aggregate`, whose choice of average is the other half of
each method.
"""

from __future__ import annotations

import torch

from coursekit.losses._autocast import promoted_dtype
from coursekit.losses._checks import (
    require_choice,
    require_float,
    require_mask,
    require_nonnegative,
    require_same_devices,
    require_shape,
)

KL_ESTIMATORS = ("k1", "k2", "k3")


def _require_time_axis(name: str, tensor: torch.Tensor) -> None:
    if tensor.dim() < 1:
        raise ValueError(f"{name} must have a time axis (..., T), got shape {tuple(tensor.shape)}")


def clipped_surrogate(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float | None = None,
) -> torch.Tensor:
    """Per-token clipped surrogate loss of PPO and GRPO, with DAPO's asymmetric clip.

    With the importance ratio
    :math:`w_{i,t} = \\exp\\big(\\log p_\\theta(o_{i,t}) - \\log p_{\\theta_{\\text{old}}}(o_{i,t})\\big)`
    of token :math:`t` of response :math:`i` and its advantage :math:`A_{i,t}`,

    .. math::

        \\ell_{i,t} = -\\min\\big(w_{i,t} A_{i,t},\\;
            \\operatorname{clip}(w_{i,t}, 1 - \\xi_{\\text{low}}, 1 + \\xi_{\\text{high}})\\, A_{i,t}\\big)

    The minimum makes the objective pessimistic: a token whose ratio has left
    the clip range in the direction its advantage pushes gets no gradient.
    :math:`\\xi_{\\text{high}}` defaults to :math:`\\xi_{\\text{low}}`
    (PPO, GRPO); DAPO's clip-higher sets it larger (e.g. 0.28) so that
    unlikely tokens with a positive advantage can grow. This is TRL's
    ``GRPOTrainer`` per-token loss for its ``"grpo"``, ``"bnpo"``,
    ``"dr_grpo"``, ``"dapo"`` and ``"luspo"`` loss types (``epsilon``, ``epsilon_high``),
    before its KL term (see :func:`kl_penalty` for TRL's default correction
    of that term by its importance ratio: :math:`w_{i,t}` at token level, the
    sequence ratio with ``importance_sampling_level="sequence"``), with
    ``GRPOConfig``'s default ``delta=None``: a ``delta`` also caps TRL's
    unclipped ratio at ``delta`` (what TRL calls two-sided clipping, which
    bounds the loss of a negative advantage), which is not implemented here.

    ``old_log_probs`` and ``advantages`` are constants of the update (the
    sampling policy, and the returns of the samples): they are detached, so no
    gradient reaches them. Positions that are padding should hold finite values
    (0, say): :func:`policy_loss_aggregate` removes them from the value, but a
    ``nan`` there would reach the gradient through :math:`w`. For GSPO, pass a
    sequence ratio's logarithm (see :func:`sequence_importance_ratio`).

    Args:
        log_probs: :math:`\\log p_\\theta` of each sampled token.
        old_log_probs: :math:`\\log p_{\\theta_{\\text{old}}}` of the same tokens.
        advantages: :math:`A`, one per response (broadcast over its tokens) or one per token.
        eps_low: :math:`\\xi_{\\text{low}} \\ge 0`.
        eps_high: :math:`\\xi_{\\text{high}} \\ge 0`; ``None`` uses ``eps_low``.

    Returns:
        The per-token losses :math:`\\ell_{i,t}`, in the dtype the three
        tensors promote to (``torch.result_type``), as TRL's lines compute
        them: bfloat16 ``log_probs`` with float32 ``old_log_probs`` give
        float32, the ratio computed from the float32 difference.

    Shapes:
        log_probs, old_log_probs: ``(B, T)`` (or ``(..., T)``); advantages:
        ``(B,)`` or ``(B, T)``; result: ``(B, T)``.

    Raises:
        TypeError: a tensor is not float, ``eps_low``/``eps_high`` not a number.
        ValueError: mismatched shapes, ``log_probs`` with no time axis (0-d), a negative or infinite clip.
            Tensor arguments on two devices.

    Example:
        >>> log_probs = torch.log(torch.tensor([[1.5, 0.5, 1.0]]))   # ratios 1.5, 0.5, 1.0 ...
        >>> old = torch.zeros(1, 3)                                  # ... against p_old = 1
        >>> clipped_surrogate(log_probs, old, torch.tensor([1.0]))   # clipped to 1.2 above
        tensor([[-1.2000, -0.5000, -1.0000]])
        >>> clipped_surrogate(log_probs, old, torch.tensor([-1.0]))  # clipped to 0.8 below
        tensor([[1.5000, 0.8000, 1.0000]])
    """
    require_float("log_probs", log_probs)
    _require_time_axis("log_probs", log_probs)
    require_float("old_log_probs", old_log_probs)
    require_shape("old_log_probs", old_log_probs, log_probs.shape, "log_probs.shape")
    require_float("advantages", advantages)
    if tuple(advantages.shape) not in (tuple(log_probs.shape[:-1]), tuple(log_probs.shape)):
        raise ValueError(
            f"advantages must have shape {tuple(log_probs.shape[:-1])} (one per response, log_probs.shape[:-1]) "
            f"or {tuple(log_probs.shape)} (one per token), got {tuple(advantages.shape)}"
        )
    require_same_devices("log_probs", log_probs, old_log_probs=old_log_probs, advantages=advantages)
    eps_low = require_nonnegative("eps_low", eps_low)
    eps_high = eps_low if eps_high is None else require_nonnegative("eps_high", eps_high)
    # In the promoted dtype, as TRL's exp(logps - old_logps) * advantages: a float32 partner of bfloat16
    # log_probs is not rounded to bfloat16 (log_probs is cast up, differentiably).
    dtype = promoted_dtype(log_probs, old_log_probs, advantages)
    advantages = advantages.detach().to(dtype)
    if advantages.dim() < log_probs.dim():
        advantages = advantages.unsqueeze(-1)
    ratio = torch.exp(log_probs.to(dtype) - old_log_probs.detach().to(dtype))
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    return -torch.minimum(ratio * advantages, clipped * advantages)


def kl_penalty(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, *, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of :math:`\\mathrm{KL}(p_\\theta \\,\\|\\, p_{\\text{ref}})` from sampled tokens.

    For a token :math:`o_{i,t}` sampled from :math:`p_\\theta` (Schulman's three
    estimators, ``k1``, ``k2``, ``k3``):

    .. math::

        \\widehat{\\mathrm{KL}}_1 = \\log\\frac{p_\\theta(o_{i,t})}{p_{\\text{ref}}(o_{i,t})}, \\qquad
        \\widehat{\\mathrm{KL}}_2 = \\tfrac12 \\Big(\\log\\frac{p_{\\text{ref}}(o_{i,t})}{p_\\theta(o_{i,t})}\\Big)^2, \\qquad
        \\widehat{\\mathrm{KL}}_3 = \\frac{p_{\\text{ref}}(o_{i,t})}{p_\\theta(o_{i,t})}
            - \\log\\frac{p_{\\text{ref}}(o_{i,t})}{p_\\theta(o_{i,t})} - 1

    As estimates of the *value*, on-policy (tokens sampled from :math:`p_\\theta`
    itself), :math:`\\widehat{\\mathrm{KL}}_1` is unbiased but often negative,
    :math:`\\widehat{\\mathrm{KL}}_2` is biased with low variance, and
    :math:`\\widehat{\\mathrm{KL}}_3` is unbiased and never negative (0 exactly
    where the two log-probabilities agree; computed as ``expm1(d) - d``, which
    stays >= 0 after rounding too, where TRL's ``exp(d) - d - 1`` can round
    below 0 for small :math:`|d|`). The *gradient* the loss uses is
    another matter: :math:`\\nabla\\widehat{\\mathrm{KL}}_3 = (1 - p_{\\text{ref}}/p_\\theta)\\,
    \\nabla\\log p_\\theta`, whose expectation under :math:`p_\\theta` is
    :math:`\\nabla\\mathrm{KL}(p_{\\text{ref}} \\,\\|\\, p_\\theta)`, the gradient of the
    *other* direction. Off-policy (tokens from :math:`p_{\\theta_{\\text{old}}}`)
    neither is unbiased without the importance ratio.

    GRPO uses :math:`\\widehat{\\mathrm{KL}}_3`. TRL's ``GRPOTrainer`` (v1.16)
    multiplies it by its importance ratio (the token ratio :math:`w_{i,t}`;
    with ``importance_sampling_level="sequence"``, GSPO, the sequence ratio of
    :func:`sequence_importance_ratio` instead) when
    ``use_bias_correction_kl`` is set, which is its default: its KL term is
    ``beta * w * k3``, with :math:`w_{i,t}` not detached, so it has the value of
    :math:`\\widehat{\\mathrm{KL}}_3` on-policy (:math:`w = 1`) but the gradient
    :math:`\\nabla(w\\,\\widehat{\\mathrm{KL}}_3) = \\log(p_\\theta/p_{\\text{ref}})\\,\\nabla\\log p_\\theta`
    there, that of :math:`\\mathrm{KL}(p_\\theta \\,\\|\\, p_{\\text{ref}})`. To reproduce
    it, multiply: ``kl_penalty(log_probs, ref) * torch.exp(log_probs - old_log_probs)``
    (the example below) at token level, and at sequence level
    ``kl_penalty(log_probs, ref) * sequence_importance_ratio(log_probs,
    old_log_probs, mask).unsqueeze(-1)``. Gradients flow into both arguments; the reference
    usually comes from a frozen model under ``torch.no_grad()``. Positions that are padding should hold
    finite values (0, say) in both tensors: :func:`policy_loss_aggregate` removes them from the value, but a
    ``-inf`` there gives both tensors a ``nan`` gradient, :math:`0 \\cdot \\infty`, which then reaches every
    parameter: under ``k2`` in either tensor, under ``k3`` in ``log_probs`` (``k1`` and a ``-inf`` reference
    under ``k3`` stay finite; TRL's expressions do the same).

    Args:
        log_probs: :math:`\\log p_\\theta` of each sampled token.
        ref_log_probs: :math:`\\log p_{\\text{ref}}` of the same tokens.
        estimator: ``"k1"``, ``"k2"`` or ``"k3"``.

    Returns:
        The per-token estimates, to be weighted by the KL coefficient and
        aggregated with the rest of the loss, in the dtype the two tensors
        promote to (``torch.result_type``), as TRL's ``exp(ref - logps) -
        (ref - logps) - 1`` computes them: bfloat16 ``log_probs`` with float32
        ``ref_log_probs`` give float32.

    Shapes:
        log_probs, ref_log_probs: ``(...)``, equal; result: the same.

    Raises:
        TypeError: an input is not a float tensor. ``estimator`` not a str.
        ValueError: mismatched shapes, unknown ``estimator``. Tensor arguments on two devices.

    Example:
        >>> import math
        >>> log_probs = torch.tensor([math.log(0.5), math.log(0.25)])
        >>> ref = torch.tensor([math.log(0.25), math.log(0.25)])
        >>> kl_penalty(log_probs, ref, estimator="k1")   # ln 2, 0
        tensor([0.6931, 0.0000])
        >>> kl_penalty(log_probs, ref)                   # 1/2 + ln 2 - 1, 0
        tensor([0.1931, 0.0000])
        >>> old = log_probs - 0.1                        # TRL's default KL term: w * k3
        >>> kl_penalty(log_probs, ref) * torch.exp(log_probs - old)
        tensor([0.2135, 0.0000])
    """
    require_float("log_probs", log_probs)
    require_float("ref_log_probs", ref_log_probs)
    require_shape("ref_log_probs", ref_log_probs, log_probs.shape, "log_probs.shape")
    require_same_devices("log_probs", log_probs, ref_log_probs=ref_log_probs)
    require_choice("estimator", estimator, KL_ESTIMATORS)
    # In the promoted dtype, as TRL's exp(ref - logps) - (ref - logps) - 1.
    dtype = promoted_dtype(log_probs, ref_log_probs)
    log_probs, ref_log_probs = log_probs.to(dtype), ref_log_probs.to(dtype)
    if estimator == "k1":
        return log_probs - ref_log_probs
    log_ratio = ref_log_probs - log_probs
    if estimator == "k2":
        return 0.5 * log_ratio**2
    # expm1(d) - d, not exp(d) - d - 1 (TRL's spelling, equal up to rounding): for small |d| the latter
    # rounds below 0, while a correctly rounded expm1(d) is never below d, so the value is never negative.
    return torch.expm1(log_ratio) - log_ratio


def sequence_importance_ratio(
    log_probs: torch.Tensor, old_log_probs: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """GSPO's sequence-level importance ratio: the geometric mean of the token ratios.

    For response :math:`i` with :math:`|o_i| = \\sum_t m_{i,t}` tokens,

    .. math::

        w^{\\text{seq}}_i = \\Big(\\frac{p_\\theta(o_i)}{p_{\\theta_{\\text{old}}}(o_i)}\\Big)^{1/|o_i|}
            = \\exp\\Big(\\frac{1}{|o_i|}\\sum_t m_{i,t}\\big(\\log p_\\theta(o_{i,t})
              - \\log p_{\\theta_{\\text{old}}}(o_{i,t})\\big)\\Big)

    (Zheng et al. 2025). One ratio per sequence, normalised by its length so
    that long and short responses are clipped alike; clip it with
    :func:`clipped_surrogate` by passing ``torch.log(w).unsqueeze(-1)`` against
    zeros, and expand the ``(B, 1)`` result over the tokens
    (``.expand_as(log_probs)``) before :func:`policy_loss_aggregate`, so that
    each mode weighs the responses as TRL's loss type of the same name does:
    equally in ``"grpo"``, by length in the modes that sum tokens. A response with no token has ratio 1 (the empty product), as in
    TRL's ``importance_sampling_level="sequence"``. ``old_log_probs`` is
    detached; masked positions never reach the value or the gradient, so a
    non-finite value there (``inf``, ``nan``) changes nothing, where TRL's
    ``(log_ratio * mask).sum(-1)`` makes the ratio ``nan``.

    Args:
        log_probs: :math:`\\log p_\\theta` of each sampled token.
        old_log_probs: :math:`\\log p_{\\theta_{\\text{old}}}` of the same tokens.
        mask: True (or 1) on response tokens, boolean or integer 0/1; ``None`` counts every token.

    Returns:
        :math:`w^{\\text{seq}}_i` for every response, in the dtype of TRL's
        expression: the sum of the token log-ratios is in the dtype the two
        log-probability tensors promote to (``torch.result_type``, as TRL's
        ``per_token_logps - old_per_token_logps``), and it is divided by a token
        count in the default float dtype (TRL's ``mask.sum(-1).clamp(min=1.0)``),
        so the result is at least float32: bfloat16 with bfloat16 gives float32,
        float64 stays float64.

    Shapes:
        log_probs, old_log_probs, mask: ``(B, T)`` (or ``(..., T)``); result: ``(B,)``.

    Raises:
        TypeError: a tensor is not float, ``mask`` neither boolean nor integer.
        ValueError: mismatched shapes, no time axis, a ``mask`` holding a value
            other than 0 and 1 (checked where values are read; see
            :mod:`coursekit.losses`). Tensor arguments on two devices.

    Example:
        >>> log_probs = torch.log(torch.tensor([[2.0, 0.5, 4.0], [2.0, 8.0, 1.0]]))
        >>> mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
        >>> sequence_importance_ratio(log_probs, torch.zeros(2, 3), mask)   # (2*0.5*4)^(1/3), (2*8)^(1/2)
        tensor([1.5874, 4.0000])
    """
    require_float("log_probs", log_probs)
    _require_time_axis("log_probs", log_probs)
    require_float("old_log_probs", old_log_probs)
    require_shape("old_log_probs", old_log_probs, log_probs.shape, "log_probs.shape")
    require_same_devices("log_probs", log_probs, old_log_probs=old_log_probs, mask=mask)
    if mask is None:
        counted = torch.ones_like(log_probs, dtype=torch.bool)
    else:
        counted = require_mask("mask", mask, log_probs.shape, "log_probs.shape")
    # In the promoted dtype, as TRL's per_token_logps - old_per_token_logps.
    dtype = promoted_dtype(log_probs, old_log_probs)
    log_ratio = log_probs.to(dtype) - old_log_probs.detach().to(dtype)
    total = torch.where(counted, log_ratio, torch.zeros_like(log_ratio)).sum(dim=-1)
    # TRL's count, mask.sum(-1).clamp(min=1.0), is a float of the default dtype: the mean and the
    # exp are at least float32, so half-precision ratios near 1 are not rounded to a step of 2**-8.
    count = counted.sum(dim=-1).clamp(min=1).to(torch.promote_types(dtype, torch.get_default_dtype()))
    return torch.exp(total / count)
