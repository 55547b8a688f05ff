"""A log-sum-exp whose gradient stays finite where every term is ``-inf``.

``torch.logsumexp`` over a slice whose terms are all ``-inf`` returns ``-inf``,
as it should, but its backward computes ``0 * exp(-inf - (-inf)) = nan`` at
each of those terms. Such slices are common in two losses here: the CTC
recursion (unreachable states, targets with no alignment) and the student's tail
in :func:`coursekit.losses.top_k_kd_loss` (every entry outside the kept set
masked). A ``nan`` there spreads, through the ``log_softmax`` or the
recursion before it, to every other entry of the row, or in CTC to every
other sequence of the batch, even when ``zero_infinity`` drops the one with no alignment.
"""

from __future__ import annotations

import torch


def safe_logsumexp(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """:math:`\\log \\sum_i e^{x_i}` along ``dim``, with a gradient of 0 where every term is ``-inf``.

    The same value as ``torch.logsumexp(values, dim)``: ``-inf`` where every term
    is ``-inf``, ``nan`` where a term is ``nan`` (a ``nan`` must not pass for an
    empty sum). The largest term is subtracted before the exponentials, as in
    ``torch.logsumexp``, and treated as a constant for the gradient (the result
    does not depend on it); an infinite largest term is replaced by 0.

    Args:
        values: the terms :math:`x_i` in log space.
        dim: the axis summed over.

    Returns:
        The log-sum-exp, in the dtype of ``values``.

    Shapes:
        values: any shape with a ``dim`` axis; result: that shape without the ``dim`` axis.

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [float("-inf"), float("-inf")]], requires_grad=True)
        >>> total = safe_logsumexp(x, dim=1)
        >>> total
        tensor([0.6931,   -inf], grad_fn=<WhereBackward0>)
        >>> torch.autograd.grad(total[0], x)[0]                 # torch.logsumexp's would hold nan in row 1
        tensor([[0.5000, 0.5000],
                [0.0000, 0.0000]])
    """
    top = values.amax(dim=dim, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top)).detach()
    total = torch.exp(values - top).sum(dim=dim)
    reachable = total != 0
    safe_total = torch.where(reachable, total, torch.ones_like(total))
    return torch.where(reachable, top.squeeze(dim) + torch.log(safe_total), torch.full_like(total, float("-inf")))
