"""The causal language-modelling loss: every position predicts the next token.

A decoder reads :math:`x_1 \\dots x_{t}` and its logits at position :math:`t`
score the next token :math:`x_{t+1}`. The targets are therefore the inputs
shifted left by one; doing the shift here, once, removes the classic
off-by-one error of training on the current token.
"""

from __future__ import annotations

import torch

from coursekit.losses._checks import (
    require_choice,
    require_float,
    require_integer,
    require_mask,
    require_shape,
    require_targets_in_range,
)
from coursekit.losses.nll import batch_loss, sequence_loss, token_nll

CAUSAL_REDUCTIONS = ("token_mean", "sequence_mean", "sum", "none")


def causal_lm_loss(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    *,
    loss_mask: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "token_mean",
) -> torch.Tensor:
    """Next-token negative log-likelihood of a batch of token sequences.

    Position :math:`t` predicts :math:`x_{t+1}`: with
    :math:`\\ell_{t+1} = -\\log \\operatorname{softmax}(z_t)_{x_{t+1}}` for
    :math:`t = 1 \\dots T-1`, and :math:`m_{t+1}` True when token
    :math:`x_{t+1}` is scored,

    .. math::

        L^{\\text{sum}} = \\sum_b \\sum_{t=2}^{T} m_{b,t}\\, \\ell_{b,t}

    and ``"token_mean"``/``"sequence_mean"`` as in :func:`batch_loss`. The
    logits of the last position predict nothing and are not used.

    ``loss_mask`` is given in ``input_ids`` coordinates: ``loss_mask[b, t]``
    says whether token ``input_ids[b, t]`` is scored (``loss_mask[..., 0]`` has
    no effect: the first token is never predicted). A token equal to
    ``ignore_index`` is never scored either. With ``loss_mask`` True on a
    response :math:`y` that follows a prompt :math:`x` (see
    :func:`response_mask`), ``reduction="none"`` gives each row's
    :math:`-\\log p_\\theta(y \\mid x)` and ``"sum"`` their total.

    What lies at unscored positions (their logits, their token ids) never
    changes the value or the gradient, even if it is ``nan``.

    Args:
        logits: unnormalised next-token scores :math:`z`.
        input_ids: the token sequences :math:`x`, which are also the targets.
        loss_mask: boolean, True on the tokens whose prediction is scored;
            ``None`` scores every token except the first.
        ignore_index: token value that is never scored (PyTorch's -100).
        reduction: ``"token_mean"`` (sum over scored tokens / their count),
            ``"sequence_mean"`` (mean over rows with a scored token of each row's
            mean), ``"sum"``, or ``"none"``: one sum per row, :math:`-\\log p`
            of the scored tokens, 0 for a row with none.

    Returns:
        A scalar, or shape ``input_ids.shape[:-1]`` for ``"none"``. When no token
        is scored, ``"token_mean"`` and ``"sequence_mean"`` give 0 with a
        ``RuntimeWarning`` (see :func:`batch_loss`).

    Shapes:
        logits: ``(..., T, V)``; input_ids, loss_mask: ``(..., T)``;
        result: ``()`` or ``(...)`` for ``"none"``.

    Raises:
        TypeError: ``logits`` not float, ``input_ids`` not integer, ``loss_mask`` not boolean.
        ValueError: mismatched shapes, a scored token outside ``[0, V)``, or an
            unknown ``reduction``.

    Example:
        >>> import math
        >>> # next-token probabilities 1/2, 1/4, 1/8 for tokens 1, 2, 3
        >>> probs = torch.tensor([[[.5, .5, 0, 0], [.25, .25, .25, .25],
        ...                        [.625, .125, .125, .125], [1, 0, 0, 0]]])
        >>> logits = probs.clamp_min(1e-30).log()
        >>> ids = torch.tensor([[0, 1, 2, 3]])
        >>> round(causal_lm_loss(logits, ids, reduction="sum").item(), 6)   # 6 ln 2
        4.158883
        >>> round(causal_lm_loss(logits, ids).item(), 6)                      # 2 ln 2 per token
        1.386294
    """
    require_float("logits", logits)
    require_integer("input_ids", input_ids)
    require_choice("reduction", reduction, CAUSAL_REDUCTIONS)
    if logits.dim() < 2:
        raise ValueError(f"logits must have shape (..., T, V), got shape {tuple(logits.shape)}")
    require_shape("input_ids", input_ids, logits.shape[:-1], "logits.shape[:-1]")
    scored = input_ids != ignore_index
    if loss_mask is not None:
        scored = scored & require_mask("loss_mask", loss_mask, input_ids.shape, "input_ids.shape")
    require_targets_in_range("input_ids", input_ids[scored], logits.shape[-1], None)

    # book excerpt (chapter 2) starts: causal_lm_loss label shift
    targets = input_ids[..., 1:]
    counted = scored[..., 1:]
    # book excerpt (chapter 2) ends: causal_lm_loss label shift
    # Unscored positions are replaced by zeros, so whatever they held (even nan)
    # reaches neither the value nor, through torch.where, the gradient.
    predicting = logits[..., :-1, :]
    predicting = torch.where(counted.unsqueeze(-1), predicting, torch.zeros_like(predicting))
    safe_targets = targets.masked_fill(~counted, 0)
    losses = token_nll(predicting, safe_targets, ignore_index=-1)
    if reduction == "none":
        return sequence_loss(losses, counted, reduction="sum")
    return batch_loss(losses, counted, reduction=reduction)
