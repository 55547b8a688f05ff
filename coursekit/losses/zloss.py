"""The z-loss: a penalty on the log of the softmax normaliser (PaLM's auxiliary loss).

The cross-entropy does not change when the same constant is added to every
logit of a position, so nothing in it stops the logits from drifting as a
whole. The z-loss :math:`(\\log Z_t)^2` pins that free direction: among logit
vectors with the same softmax it prefers the one whose normaliser is 1, so
that :math:`\\log Z_t = 0` and each logit is a log-probability. Chowdhery et
al. (2022) add it with weight :math:`10^{-4}` to the loss of PaLM "to
encourage the softmax normalizer log(Z) to be close to 0", which they found
increases the stability of training.
"""

from __future__ import annotations

import torch

from coursekit.losses._checks import require_classes, require_float


def z_loss(logits: torch.Tensor) -> torch.Tensor:
    """Per-position squared log-partition function of ``softmax(logits)``.

    .. math::

        \\ell^{z}_t = (\\log Z_t)^2, \\qquad Z_t = \\sum_{k=1}^{V} e^{z_{t,k}},
        \\qquad \\frac{\\partial \\ell^{z}_t}{\\partial z_{t,k}} = 2 \\log Z_t\\,
        \\operatorname{softmax}(z_t)_k .

    The log-sum-exp is computed in float32 at least (float64 stays float64),
    shifted by the largest logit, so large logits do not overflow. The weight
    (PaLM's :math:`10^{-4}`) and the reduction over positions are the
    caller's: add ``weight * z_loss(logits)`` to the per-token losses of
    :func:`~coursekit.losses.token_nll` and reduce both with the same mask.
    A position whose logits are all ``-inf`` has :math:`Z_t = 0`: its loss is
    ``inf`` and its gradient ``nan``, and a mask applied afterwards does not
    keep that ``nan`` out of the gradient (``0 * nan`` is ``nan``); give such
    positions finite logits (zeros, say) before the call.

    Args:
        logits: unnormalised scores :math:`z`, any float dtype.

    Returns:
        :math:`(\\log Z_t)^2` for every position, in float32 (float64 for float64 logits).

    Shapes:
        logits: ``(..., V)``; result: ``(...)``.

    Raises:
        TypeError: ``logits`` is not a float tensor.
        ValueError: ``logits`` has no vocabulary dimension, or it is empty.

    Example:
        >>> z_loss(torch.zeros(2, 4))                 # Z = 4: (log 4)^2
        tensor([1.9218, 1.9218])
        >>> z_loss(torch.log(torch.tensor([[0.5, 0.25, 0.25]])))  # already normalised
        tensor([0.])
    """
    require_float("logits", logits)
    require_classes("logits", logits)
    acc_dtype = torch.promote_types(logits.dtype, torch.float32)
    return torch.logsumexp(logits.to(acc_dtype), dim=-1).square()
