"""Cross-entropy of a linear output layer, computed a chunk of rows at a time.

A language model's last step turns hidden states :math:`h_i \\in \\mathbb{R}^d`
into logits :math:`z_i = W h_i + c \\in \\mathbb{R}^V` and then takes the
cross-entropy. With a large vocabulary the logits dominate memory: at
:math:`N = 8192` tokens and :math:`V = 256\\,000` they take 4 GiB in bfloat16,
autograd keeps a log-softmax of the same size until the backward pass (in
float32 when the caller upcasts, as Hugging Face does), and the caller usually
still holds the logits themselves.

The gradients need no logits table either. With
:math:`g_i = \\lambda_i\\,(\\operatorname{softmax}(z_i) - \\mathbf{e}_{y_i})`,
where :math:`\\lambda_i` is the row's weight in the reduction (:math:`1/N` for
the mean over :math:`N` counted rows, 1 for the sum, 0 for an ignored row),

.. math::

    \\frac{\\partial L}{\\partial h_i} = W^\\top g_i, \\qquad
    \\frac{\\partial L}{\\partial W} = \\sum_i g_i h_i^\\top, \\qquad
    \\frac{\\partial L}{\\partial c} = \\sum_i g_i,

so a pass over chunks of :math:`C` rows can build all three, holding at most
``chunk_size x V`` logits at a time, and overwrite those logits in place. The
per-row factor :math:`\\lambda_i / a_i` (:math:`a_i` the sum of the row's
exponentials, shifted by its largest logit) is not applied to the
``chunk_size x V`` buffer but folded into the small matrices: the chunk's hidden
rows before the weight-gradient product, and its rows of the hidden-state
gradient after theirs. That saves one read and one write of every chunk's
logits. float16 takes a chunk's shifts and exponentials in a float32 copy of
its logits (float16 flushes exponentials below :math:`e^{-17.3}` to 0, so a
confident row's loss would come out 0) and keeps the in-place scaling there,
rounding the gradient to float16 once, after it.

For ``reduction="mean"`` and ``"sum"`` the upstream gradient is one number, so
the gradients are computed during the forward pass (three matrix products in
all, as many as the plain expression) and only scaled in the backward pass.
For ``reduction="none"`` every row has its own upstream gradient, which is not
known until the backward pass, so the backward pass recomputes the logits chunk
by chunk (four matrix products). float16 does the same for every reduction:
float16 training multiplies the loss by a large scale (a ``GradScaler``)
precisely so that the small entries of the logits' gradient do not underflow
float16, and that scale, the upstream gradient, is only known in the backward
pass; it must enter the gradient before the rounding to float16, not after.
"""

from __future__ import annotations

import torch

from coursekit.losses._autocast import autocast_dtype, cast_for_autocast, without_autocast
from coursekit.losses._checks import (
    require_choice,
    require_class_indices,
    require_classes,
    require_float,
    require_int,
    require_same_device,
    require_shape,
    require_targets_in_range,
)

CHUNKED_REDUCTIONS = ("mean", "sum", "none")


def _chunk_pass(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    row_scale: torch.Tensor | None,
    chunk_size: int,
    grads_wanted: tuple[bool, bool, bool],
    weight_accum_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """One pass over the rows: per-row losses and, if ``row_scale`` is given, gradients.

    ``targets`` holds no ignored entries here (the caller replaced them by 0
    and gives them a ``row_scale`` of 0). Returns ``(losses, grad_hidden,
    grad_weight, grad_bias)``; the losses are in float32 (float64 for float64
    inputs), the gradients in the input dtype. The weight gradient is summed
    over the chunks in ``weight_accum_dtype`` and the bias gradient in float32
    (or float64).
    """
    num_rows = hidden.shape[0]
    dtype = hidden.dtype
    acc_dtype = torch.promote_types(dtype, torch.float32)
    losses = torch.empty(num_rows, dtype=acc_dtype, device=hidden.device)
    want_hidden, want_weight, want_bias = grads_wanted if row_scale is not None else (False, False, False)
    grad_hidden = torch.empty(hidden.shape, dtype=dtype, device=hidden.device) if want_hidden else None
    grad_weight = torch.zeros(weight.shape, dtype=weight_accum_dtype, device=weight.device) if want_weight else None
    grad_bias = torch.zeros(weight.shape[0], dtype=acc_dtype, device=weight.device) if want_bias else None
    any_grad = want_hidden or want_weight or want_bias
    # float16 cannot hold the normaliser (up to V, inf from 65520), so it cannot keep
    # the unnormalised exponentials; see _logit_gradients.
    fold_scale = dtype != torch.float16

    for start in range(0, num_rows, chunk_size):
        stop = min(start + chunk_size, num_rows)
        rows = hidden[start:stop]
        target = targets[start:stop].unsqueeze(1)
        # The logits of this chunk, in the input dtype; every later step
        # overwrites this one buffer instead of allocating another.
        if bias is None:
            logits = rows @ weight.T
        else:
            logits = torch.addmm(bias, rows, weight.T)
        target_logit = logits.gather(1, target).squeeze(1).to(acc_dtype)
        row_max = logits.amax(dim=1, keepdim=True)
        # A row whose logits are all -inf would give nan after the shift; keep its max finite. A +inf
        # max stays: inf - inf gives nan, as F.cross_entropy's log_softmax does.
        row_max.masked_fill_(row_max == float("-inf"), 0)
        if dtype == torch.float16:
            # float16 rounds exponentials below e^-9.7 coarsely and flushes those below e^-17.3 to 0 (a
            # confident row's loss would be 0): its shifts and exponentials go to a float32 copy.
            logits = logits.float()
        # [book ch10 excerpt start] chapter 10 shows the lines from here to the end marker.
        logits.sub_(row_max).exp_()
        # The normaliser is summed in float32 even for half-precision logits.
        normaliser = logits.sum(dim=1, dtype=acc_dtype)
        losses[start:stop] = row_max.squeeze(1).to(acc_dtype) + normaliser.log() - target_logit
        # [book ch10 excerpt end]
        if any_grad:
            assert row_scale is not None
            _add_chunk_gradients(
                logits, rows, target, normaliser, row_scale[start:stop], weight, fold_scale,
                None if grad_hidden is None else grad_hidden[start:stop], grad_weight, grad_bias,
            )
        # Freed before the next chunk's logits exist: one chunk x V buffer at a time.
        del logits
    return (
        losses,
        grad_hidden,
        None if grad_weight is None else grad_weight.to(dtype),
        None if grad_bias is None else grad_bias.to(dtype),
    )


def _add_chunk_gradients(
    exps: torch.Tensor,
    rows: torch.Tensor,
    target: torch.Tensor,
    normaliser: torch.Tensor,
    scale: torch.Tensor,
    weight: torch.Tensor,
    fold_scale: bool,
    chunk_grad_hidden: torch.Tensor | None,
    grad_weight: torch.Tensor | None,
    grad_bias: torch.Tensor | None,
) -> None:
    """Write a chunk's rows of the hidden-state gradient and add its share of the others.

    ``exps`` (the chunk's shifted exponentials) is overwritten by
    :func:`_logit_gradients`; ``grad_bias`` is float32 or float64.
    """
    row_factor = _logit_gradients(exps, target, normaliser, scale, fold_scale)
    if exps.dtype != rows.dtype:
        # float16's float32 exponentials, now the gradient with its upstream factor (row_factor is None):
        # the bias gradient is summed from them before they are rounded to float16, once, here.
        if grad_bias is not None:
            grad_bias += exps.sum(dim=0, dtype=grad_bias.dtype)
            grad_bias = None
        exps = exps.to(rows.dtype)
    if chunk_grad_hidden is not None:
        torch.mm(exps, weight, out=chunk_grad_hidden)
        if row_factor is not None:
            chunk_grad_hidden.mul_(row_factor.unsqueeze(1))
    if grad_weight is not None:
        scaled_rows = rows if row_factor is None else rows * row_factor.unsqueeze(1)
        if grad_weight.dtype == exps.dtype:
            grad_weight.addmm_(exps.T, scaled_rows)
        else:
            _add_product_in_blocks(grad_weight, exps, scaled_rows)
    if grad_bias is not None:
        if row_factor is None:
            grad_bias += exps.sum(dim=0, dtype=grad_bias.dtype)
        else:
            grad_bias += torch.mv(exps.T, row_factor).to(grad_bias.dtype)


def _add_product_in_blocks(accumulator: torch.Tensor, exps: torch.Tensor, rows: torch.Tensor) -> None:
    """``accumulator += exps.T @ rows`` for an accumulator wider than the operands (float32 for bfloat16).

    A matrix product cannot write into a tensor of another dtype, so the product
    is taken in the operands' dtype, a block of vocabulary rows at a time, and
    each block is added in the accumulator's dtype: every chunk's contribution
    is rounded once, but the running sum is not rounded again at every chunk.
    A block's product holds no more elements than the chunk's logits; on the
    CPU, adding it to the wider accumulator first converts it to that dtype
    (a second temporary, twice its size for bfloat16 into float32).
    """
    block = max(1, exps.numel() // max(rows.shape[1], 1))
    for start in range(0, accumulator.shape[0], block):
        accumulator[start : start + block] += exps[:, start : start + block].T @ rows


def _logit_gradients(
    exps: torch.Tensor, target: torch.Tensor, normaliser: torch.Tensor, scale: torch.Tensor, fold_scale: bool
) -> torch.Tensor | None:
    """Turn a chunk's exponentials into the gradient w.r.t. its logits, up to a per-row factor.

    The gradient of row :math:`i` is :math:`\\lambda_i (u_i / a_i - \\mathbf{e}_{y_i})`
    with the shifted exponentials :math:`u_i = \\exp(z_i - \\max_k z_{i,k})` and
    :math:`a_i = \\sum_k u_{i,k}` (``scale`` holds :math:`\\lambda`). With
    ``fold_scale``, ``exps`` becomes :math:`u_i - a_i \\mathbf{e}_{y_i}` (one
    entry per row changes) and the factor :math:`\\lambda_i / a_i` is returned, to be
    applied to the small matrices the chunk multiplies with (its hidden rows,
    its rows of the hidden-state gradient) instead of to the ``chunk x V``
    logits: one read and one write of the chunk fewer. Without it (float16,
    whose range :math:`a_i` exceeds), ``exps`` is scaled in place to the
    gradient itself and ``None`` is returned.
    """
    dtype = exps.dtype
    # A row of weight 0 (an ignored target) gets factor 0, even where its
    # normaliser is 0 (every logit -inf) or nan: 0 / 0 would poison the gradients.
    factor = torch.where(scale != 0, scale / normaliser, torch.zeros_like(scale))
    if fold_scale:
        exps.scatter_add_(1, target, (-normaliser).to(dtype).unsqueeze(1))
        return factor.to(dtype)
    exps.mul_(factor.to(dtype).unsqueeze(1))
    exps.scatter_add_(1, target, (-scale).to(dtype).unsqueeze(1))
    return None


def _upstream_row_scale(row_scale: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
    """Each row's weight in the reduction times the upstream gradient; exactly 0 for an ignored row.

    ``torch.where``, not a product: PyTorch's backward writes 0 for an ignored
    row whatever its upstream gradient, while 0 * nan and 0 * inf are nan and
    would reach every entry of the weight and bias gradients.
    """
    upstream = grad_output.to(row_scale.dtype)
    return torch.where(row_scale != 0, row_scale * upstream, torch.zeros_like(row_scale))


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Autograd wrapper; see :func:`chunked_cross_entropy` for the maths.

    For ``"mean"`` and ``"sum"`` in every dtype but float16, the forward pass
    computes the gradients for an upstream gradient of 1 and keeps them on
    ``ctx`` (not as saved tensors).
    The first backward pass hands them to autograd, scaled in place by the
    upstream gradient: no copy, so the memory of the first backward stays that
    of the gradients alone. A later backward pass through the same graph
    (``retain_graph=True``, ``gradcheck``) recomputes them from the saved
    inputs, the same way, so every backward pass gives the same result.
    In float16 every backward pass computes them, with the upstream gradient
    in the row scale (see the module docstring).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        chunk_size: int,
        ignore_index: int,
        reduction: str,
        grad_enabled: bool,
        weight_accum_dtype: torch.dtype,
        out_dtype: torch.dtype,
    ) -> torch.Tensor:
        counted = targets != ignore_index
        safe_targets = targets.masked_fill(~counted, 0)
        acc_dtype = torch.promote_types(hidden.dtype, torch.float32)
        counted_f = counted.to(acc_dtype)
        # needs_input_grad reflects requires_grad even under torch.no_grad(),
        # so the caller also says whether a graph is being recorded.
        needs = [bool(flag) and grad_enabled for flag in ctx.needs_input_grad[:3]]  # type: ignore[attr-defined]
        grads_wanted = (needs[0], needs[1], bias is not None and needs[2])
        ctx.reduction = reduction  # type: ignore[attr-defined]
        ctx.chunk_size = chunk_size  # type: ignore[attr-defined]
        ctx.grads_wanted = grads_wanted  # type: ignore[attr-defined]
        ctx.weight_accum_dtype = weight_accum_dtype  # type: ignore[attr-defined]
        ctx.precomputed = None  # type: ignore[attr-defined]
        # float16: the gradients wait for the upstream gradient (a loss scale), see the module docstring.
        ctx.upstream_in_pass = reduction == "none" or hidden.dtype == torch.float16  # type: ignore[attr-defined]

        if reduction == "none":
            losses, *_ = _chunk_pass(
                hidden, weight, bias, safe_targets, None, chunk_size, grads_wanted, weight_accum_dtype
            )
            # torch.where, not a product: an ignored row's loss may be nan or inf (0 * nan = nan).
            losses = torch.where(counted, losses, torch.zeros_like(losses))
            ctx.save_for_backward(hidden, weight, bias, safe_targets, counted_f)
            return losses.to(out_dtype)

        count = counted_f.sum()
        # Ignored rows weigh 0; with no counted row the mean is 0/0 = nan, as in
        # PyTorch, while every gradient is 0.
        row_scale = counted_f / count.clamp(min=1) if reduction == "mean" else counted_f
        wanted = any(grads_wanted)
        precompute = wanted and not ctx.upstream_in_pass  # type: ignore[attr-defined]
        losses, *grads = _chunk_pass(
            hidden, weight, bias, safe_targets, row_scale if precompute else None, chunk_size, grads_wanted,
            weight_accum_dtype,
        )
        total = torch.where(counted, losses, torch.zeros_like(losses)).sum()
        result = total / count if reduction == "mean" else total
        if wanted:
            if precompute:
                ctx.precomputed = grads  # type: ignore[attr-defined]
            ctx.save_for_backward(hidden, weight, bias, safe_targets, row_scale)
        return result.to(out_dtype)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        # The engine runs a backward with grad mode on exactly under
        # create_graph=True. once_differentiable would not catch it: its error
        # node is attached only when grad_output requires grad, and under
        # autograd.grad(loss, ..., create_graph=True) it is a constant 1, so a
        # gradient penalty built on the result would silently get no gradient.
        if torch.is_grad_enabled():
            raise RuntimeError(
                "chunked_cross_entropy is once differentiable: backward with create_graph=True is not "
                "supported (a gradient penalty or a Hessian-vector product through it would get no "
                "gradient); compute the loss with F.cross_entropy on the full logits for that"
            )
        with without_autocast(grad_output.device.type):
            return _ChunkedCrossEntropy._backward(ctx, grad_output)

    @staticmethod
    def _backward(
        ctx: torch.autograd.function.FunctionCtx, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        """:meth:`backward` with autocast off, so that it computes in the dtypes the forward pass saw."""
        pass_options = (ctx.chunk_size, ctx.grads_wanted, ctx.weight_accum_dtype)  # type: ignore[attr-defined]
        if ctx.upstream_in_pass:  # type: ignore[attr-defined]
            # "none" (saved: the counted rows as 0/1) and float16 (saved: the reduction's row weights).
            hidden, weight, bias, safe_targets, row_scale = ctx.saved_tensors  # type: ignore[attr-defined]
            scaled = _upstream_row_scale(row_scale, grad_output)
            _, *grads = _chunk_pass(hidden, weight, bias, safe_targets, scaled, *pass_options)
            return (*grads, None, None, None, None, None, None, None)

        grads = ctx.precomputed  # type: ignore[attr-defined]
        ctx.precomputed = None  # type: ignore[attr-defined]
        if grads is None:
            hidden, weight, bias, safe_targets, row_scale = ctx.saved_tensors  # type: ignore[attr-defined]
            _, *grads = _chunk_pass(hidden, weight, bias, safe_targets, row_scale, *pass_options)
        # The gradients are for an upstream gradient of 1. Multiplying by the
        # upstream gradient unconditionally (a no-op for 1) avoids reading its
        # value, which would synchronise the device.
        for grad in grads:
            if grad is not None:
                grad.mul_(grad_output.to(grad.dtype))
        return (*grads, None, None, None, None, None, None, None)


def chunked_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    chunk_size: int = 1024,
    ignore_index: int = -100,
    reduction: str = "mean",
    accum_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Cross-entropy of the logits ``hidden @ weight.T + bias`` without building them all.

    .. math::

        \\ell_i = \\log \\sum_k e^{z_{i,k}} - z_{i,y_i}, \\qquad z_i = W h_i + c

    Equal up to rounding, in value and in the gradients with respect to
    ``hidden``, ``weight`` and ``bias``, to ``F.cross_entropy(hidden @ weight.T
    + bias, targets, ignore_index=ignore_index, reduction=reduction)`` on 2-D
    ``hidden`` (flatten any further axes first: ``F.cross_entropy`` reads dim 1
    as the classes), but never holds more than ``chunk_size x V`` logits at once, in the forward or the
    backward pass. The logits of a chunk are computed in the input dtype and
    their log-sum-exp is accumulated in float32 (float64 for float64 inputs).
    ``"sum"`` and ``"mean"`` add the per-row losses in that float32 (or
    float64), and ``"mean"`` divides there by the count of rows that are not
    ignored, rounding once to the output dtype. In half precision that is
    where this function and PyTorch's CPU ``F.cross_entropy`` part: the latter
    rounds as it adds (in bfloat16 too: 3.906 here, 3.969 there, for 1000
    rows of 50 zero logits), and in float16 it sums and counts in float16, so from 65520 counted rows (a count float16
    rounds to ``inf``) its mean is 0 with zero gradients, and a total of 65520
    or more makes it ``inf`` (``nan`` from 65520 rows on), where this mean is
    finite, as float64's is, and its gradients are not zero. The bias gradient
    is summed over the chunks in float32 too; the weight gradient is summed in
    ``accum_dtype``, by default the dtype of ``weight``. In half precision
    (bfloat16, float16) that default rounds the running sum once per chunk, so its error grows with the
    number of chunks :math:`\\lceil N / C \\rceil`; ``accum_dtype=torch.float32``
    keeps it at the level of the unchunked expression for
    :math:`V d \\cdot 4` bytes more.

    Under ``torch.autocast`` (mixed-precision training with float32 master
    weights) it computes what ``F.cross_entropy(F.linear(hidden, weight, bias),
    targets)`` (an ``nn.Linear`` output layer) computes under CPU autocast,
    on every device (under CUDA autocast ``F.cross_entropy`` also rounds its
    log-probabilities to the autocast dtype; see
    "Mixed precision" in :mod:`coursekit.losses`): ``hidden``,
    ``weight`` and ``bias`` are cast to
    the autocast dtype (float64 ones are left alone, as autocast leaves them),
    the logits are computed in that dtype, and the loss is returned in float32.
    In bfloat16 one step rounds more than ``F.cross_entropy`` does there: the
    shift :math:`z_{i,k} - m_i` (:math:`m_i = \\max_k z_{i,k}`) and its
    exponential are computed in place in the chunk's logits buffer, in
    bfloat16, where ``F.cross_entropy`` raises the logits to float32 first.
    With :math:`u = 2^{-8}`, bfloat16's unit roundoff, rounding the shift moves
    it by up to its size times :math:`u` and rounding the exponential adds
    :math:`u`, before the float32 sum; so a row's loss is off by at most about
    :math:`u\\,(1 + \\sum_k \\operatorname{softmax}(z_i)_k\\,(m_i - z_{i,k}))` nats (to first
    order in :math:`u`). With random logits the errors mostly cancel (measured
    at V = 32,000: 3e-4 nats, against 1e-6 for ``F.cross_entropy``, from the
    float64 loss of the same logits); 32,000 equal logits about 10 below the
    row's maximum, at a gap bfloat16 cannot hold exactly (9.97), come near the
    bound (0.02 nats). Float32 shifts and exponentials
    would need a float32 chunk x V buffer besides the logits, which float16
    takes (see the module docstring): there the loss is as close to the
    float64 one as ``F.cross_entropy``'s.
    Within the function autocast is off, in the forward and the backward pass,
    so the gradients are those of the returned value for every reduction,
    wherever ``backward()`` is called; they reach each input in its own dtype
    through the casts. The weight gradient is summed over the chunks in
    ``accum_dtype`` (default: the dtype of the ``weight`` passed in, or float32
    where that is float16 and autocast's is bfloat16 or the reverse, the
    narrowest dtype that holds both), but it is
    the gradient of the cast weight, so it is rounded to the autocast dtype
    before it reaches a float32 master weight, as it is for ``F.linear`` under
    autocast.

    ``"mean"`` divides by the number of targets that are not ``ignore_index``
    (``nan`` when there is none, as in PyTorch; the gradients are then 0).
    With ``"none"`` an ignored row gets gradient 0 whatever its upstream
    gradient, even ``nan`` or ``inf``, as with ``F.cross_entropy``.
    For ``"mean"`` and ``"sum"`` the gradients are computed during the forward
    pass, which saves recomputing the logits, and handed to autograd without a
    copy by the first backward pass, except in float16: there they are computed
    in the backward pass (one matrix product more), with the upstream gradient
    applied before the rounding to float16, so that a loss scale
    (``torch.amp.GradScaler``) keeps the small gradient entries from
    underflowing as it does for ``F.cross_entropy``; a further backward pass
    through the same graph (``retain_graph=True``, ``gradcheck``) recomputes
    them, so every backward pass works and gives the same gradients, as with
    ``F.cross_entropy``. The function is once differentiable: unlike
    ``F.cross_entropy`` it has no double backward, so a backward pass with
    ``create_graph=True`` (a gradient penalty, a Hessian-vector product) raises
    a ``RuntimeError``. Under ``torch.no_grad()`` or when no input requires
    grad, only the loss is computed. No step reads a tensor value on the device
    (the range check of ``targets`` runs on the CPU only).

    Args:
        hidden: the hidden states :math:`h` feeding the output layer.
        weight: the output layer's weight :math:`W` (one row per vocabulary entry).
        targets: class indices :math:`y`; ``ignore_index`` entries are skipped.
        bias: optional output bias :math:`c`.
        chunk_size: how many rows of logits to hold at a time (>= 1).
        ignore_index: the target value that is skipped.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``, as in PyTorch.
        accum_dtype: dtype in which the weight gradient is summed over the
            chunks (``None``: the dtype of ``weight``, promoted with the
            autocast dtype under autocast: float32 for a float16 weight under
            bfloat16 autocast or the reverse); at least as wide as it.

    Returns:
        A scalar for ``"mean"``/``"sum"``, else the per-row losses (0 where
        ignored), in the dtype of ``hidden`` (under autocast: float32, or float64
        for float64 ``hidden``).

    Shapes:
        hidden: ``(..., d)``; weight: ``(V, d)``; bias: ``(V,)``; targets: ``(...)``;
        result: ``()`` or ``(...)`` for ``"none"``.

    Raises:
        TypeError: a float argument is not a float tensor, ``targets`` is not an
            integer tensor, ``chunk_size`` or ``ignore_index`` is not an integer (``operator.index`` fails) or is a bool, the dtypes disagree
            (compared after the autocast casts; the message then also names
            the dtype passed), or ``accum_dtype`` is not a floating-point dtype. ``reduction`` not a str.
        ValueError: the shapes disagree, ``weight`` with no row (V = 0), ``chunk_size < 1``, an unknown
            ``reduction``, ``ignore_index`` beyond int64, a target outside ``[0, V)``
            that is not ``ignore_index``, or an ``accum_dtype`` narrower than the dtype of ``weight``.
            Tensor arguments on two devices.
        RuntimeError: (in the backward pass) a backward with ``create_graph=True``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> hidden, weight = torch.randn(10, 4, generator=g), torch.randn(50, 4, generator=g)
        >>> targets = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, -100, 5])
        >>> plain = torch.nn.functional.cross_entropy(hidden @ weight.T, targets)
        >>> chunked = chunked_cross_entropy(hidden, weight, targets, chunk_size=3)
        >>> torch.allclose(plain, chunked)
        True
    """
    require_float("hidden", hidden)
    require_float("weight", weight)
    if bias is not None:
        require_float("bias", bias)
    targets = require_class_indices("targets", targets)
    result_dtype = hidden.dtype
    passed = {"hidden": hidden.dtype, "weight": weight.dtype, "bias": None if bias is None else bias.dtype}
    cast_dtype = autocast_dtype(hidden)
    if cast_dtype is not None:
        # As F.cross_entropy(F.linear(hidden, weight, bias)) under autocast: the product in the autocast
        # dtype, the loss (one of CPU autocast's float32 operations; see _autocast) in float32.
        hidden = cast_for_autocast(hidden, cast_dtype)
        weight = cast_for_autocast(weight, cast_dtype)
        bias = None if bias is None else cast_for_autocast(bias, cast_dtype)
        result_dtype = torch.promote_types(hidden.dtype, torch.float32)
    if accum_dtype is None:
        # Wide enough for both the weight passed and the weight cast: a float16 weight cast to bfloat16
        # (or the reverse) fits in neither, and F.linear's gradient reaches it through float32.
        accum_dtype = torch.promote_types(passed["weight"], weight.dtype)
    chunk_size = require_int("chunk_size", chunk_size, 1, None, expected="be >= 1")
    require_choice("reduction", reduction, CHUNKED_REDUCTIONS)
    if hidden.dim() < 1:
        raise ValueError(f"hidden must have shape (..., d), got shape {tuple(hidden.shape)}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"weight must have shape (V, d) with d = hidden.shape[-1] = {hidden.shape[-1]}, "
            f"got {tuple(weight.shape)}"
        )
    require_classes("weight", weight, "(V, d)", axis=0)
    if weight.dtype != hidden.dtype:
        expected, got = _dtype_text("hidden", hidden, passed), _dtype_text("weight", weight, passed)
        raise TypeError(f"weight must have the dtype of hidden ({expected}), got {got}")
    require_same_device("weight", weight, hidden, "hidden")
    num_classes = weight.shape[0]
    if bias is not None:
        require_shape("bias", bias, (num_classes,), "(V,) with V = weight.shape[0]")
        if bias.dtype != hidden.dtype:
            expected, got = _dtype_text("hidden", hidden, passed), _dtype_text("bias", bias, passed)
            raise TypeError(f"bias must have the dtype of hidden ({expected}), got {got}")
        require_same_device("bias", bias, hidden, "hidden")
    require_shape("targets", targets, hidden.shape[:-1], "hidden.shape[:-1]")
    require_same_device("targets", targets, hidden, "hidden")
    ignore_index = require_int("ignore_index", ignore_index, type_expected="an int (a target value)")
    require_targets_in_range("targets", targets, num_classes, ignore_index)
    if not isinstance(accum_dtype, torch.dtype) or not accum_dtype.is_floating_point:
        raise TypeError(f"accum_dtype must be None or a floating-point torch.dtype, got {accum_dtype!r}")
    if torch.promote_types(weight.dtype, accum_dtype) != accum_dtype:
        raise ValueError(
            f"accum_dtype must be at least as wide as the dtype of weight "
            f"({_dtype_text('weight', weight, passed)}), got {accum_dtype}"
        )

    # targets.numel() rows, not -1: with a hidden size of 0 the row count cannot be inferred
    flat_hidden = hidden.reshape(targets.numel(), hidden.shape[-1])
    flat_targets = targets.reshape(-1)
    # The autocast dtype is applied above, once; inside, every step runs in the dtype it was given.
    with without_autocast(hidden.device.type):
        result = _ChunkedCrossEntropy.apply(
            flat_hidden, weight.contiguous(), bias, flat_targets, chunk_size, ignore_index, reduction,
            torch.is_grad_enabled(), accum_dtype, result_dtype,
        )
    if reduction == "none":
        return result.reshape(targets.shape)
    return result


def _dtype_text(name: str, tensor: torch.Tensor, passed: dict[str, torch.dtype | None]) -> str:
    """``tensor``'s dtype for an error message, naming the dtype passed where autocast cast it.

    Under autocast the checks compare the cast dtypes; a message that named only
    those (``torch.bfloat16``) would name a dtype the caller never passed.
    """
    if passed[name] == tensor.dtype:
        return str(tensor.dtype)
    return f"{tensor.dtype}, after autocast's cast of the {passed[name]} {name} passed"
