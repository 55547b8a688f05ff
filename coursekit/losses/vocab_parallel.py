"""Vocabulary-parallel cross-entropy, simulated in one process.

When the output layer is split over :math:`D` devices along the vocabulary
(Megatron-LM's tensor parallelism, Shoeybi et al. 2019), device :math:`j` holds
only the columns :math:`\\mathcal{V}_j` of the logits. Gathering the logits on
one device would move :math:`N V` numbers; instead each device reduces its
shard to a few numbers per row and the devices combine those with two
all-reduces, a maximum and a sum:

.. math::

    \\mu_i = \\max_j \\max_{k \\in \\mathcal{V}_j} z_{i,k}, \\qquad
    a_i = \\sum_j \\sum_{k \\in \\mathcal{V}_j} e^{z_{i,k} - \\mu_i}, \\qquad
    \\ell_i = \\mu_i + \\log a_i - z_{i,y_i},

where the target logit :math:`z_{i,y_i}` rides in the same sum (the device
that owns :math:`y_i` contributes it, the others 0). Here the "devices" are
the entries of a list and an all-reduce is a stack followed by a max or a sum
over the list, so the arithmetic is exactly what each device would do. The
gradient with respect to a shard, :math:`e^{z_{i,k} - \\mu_i} / a_i - [k = y_i]`
for :math:`k \\in \\mathcal{V}_j`, needs nothing from the other devices once
:math:`\\mu_i` and :math:`a_i` are known.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from coursekit.losses._autocast import float32_under_autocast
from coursekit.losses._checks import (
    require_choice,
    require_class_indices,
    require_float,
    require_int,
    require_same_devices,
    require_shape,
    require_targets_in_range,
)
from coursekit.losses.nll import _divide_exactly

VOCAB_PARALLEL_REDUCTIONS = ("mean", "sum", "none")


def _all_reduce(local_values: Sequence[torch.Tensor], op: str) -> torch.Tensor:
    """What every device holds after an all-reduce of one tensor per device."""
    stacked = torch.stack(list(local_values))
    return stacked.amax(dim=0) if op == "max" else stacked.sum(dim=0)


def vocab_parallel_cross_entropy(
    logit_shards: Sequence[torch.Tensor],
    targets: torch.Tensor,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of logits split by vocabulary over simulated devices.

    .. math::

        \\ell_i = \\mu_i + \\log \\sum_{j=1}^{D} \\sum_{k \\in \\mathcal{V}_j}
        e^{z_{i,k} - \\mu_i} - z_{i,y_i}, \\qquad
        \\mu_i = \\max_{j} \\max_{k \\in \\mathcal{V}_j} z_{i,k}

    Shard :math:`j` holds the vocabulary ids :math:`[o_j, o_j + V_j)` with
    :math:`o_j = V_1 + \\dots + V_{j-1}`: the shards in order are the columns
    of the full logits, so the result is ``F.cross_entropy(torch.cat(
    logit_shards, -1), targets, ignore_index=ignore_index, reduction=reduction)``
    for 2-D shards (flatten any further axes first: ``F.cross_entropy`` reads
    dim 1 as the classes): equal to it up to rounding, in value and in the gradient of every shard, for
    float32 and float64 shards, also under CPU ``torch.autocast``, where both
    compute and return float32 (float64 shards stay float64; under CUDA autocast
    ``F.cross_entropy`` keeps float32 and float64 logits in their dtype and rounds
    only half-precision ones' log-probabilities, see "Mixed precision" in :mod:`coursekit.losses`).

    Half-precision shards are where the two differ. Each device computes in
    float32 (float64 for float64 shards), and each row's loss, like each
    shard's gradient, is rounded once to the shards' dtype, so it is the
    closer of the two to the float64 loss of the same logits: for the float16
    logits ``[8, 0, 0, 0]`` and target 0, ``F.cross_entropy`` gives 0.000976
    (in bfloat16 0), this function 0.001006, as float64 does. ``"sum"`` and
    ``"mean"`` add the rounded losses into a total of the shards' dtype
    (``Tensor.sum``, which accumulates in float32 and rounds once, where
    PyTorch's CPU ``F.cross_entropy`` rounds in the half dtype as it adds, so
    its half-precision total can differ; a float16 total of 65520 or more,
    what float16 rounds to ``inf``, is ``inf`` here, and PyTorch's running
    sum reaches ``inf`` a little sooner or later), and ``"mean"`` divides by the
    exact integer count, where PyTorch's CPU ``F.cross_entropy`` counts in
    float16: from 65520 counted float16 rows it gives 0 (``nan`` if its total
    is ``inf``), where this mean is the finite mean (or ``inf``).

    Each device computes its local
    maximum; an all-reduce with the maximum gives :math:`\\mu_i` on every
    device; each device then computes its local sum of
    :math:`e^{z_{i,k} - \\mu_i}` and its share of the target logit, and one
    all-reduce with the sum (of both, concatenated) gives :math:`a_i` and
    :math:`z_{i,y_i}`. The maximum is a constant for the gradient (the loss
    does not depend on it), as on real devices.

    Args:
        logit_shards: the :math:`D` shards of the logits, one per device, in vocabulary order.
        targets: class indices in ``[0, V)`` with :math:`V = \\sum_j V_j`, or ``ignore_index``.
        ignore_index: target value whose loss is 0 and which the mean does not count.
        reduction: ``"mean"`` over the targets that are not ignored, ``"sum"`` or ``"none"``.

    Returns:
        The loss (a scalar), or per-position losses for ``"none"``, in the
        shards' dtype (float32 under ``torch.autocast`` on any device;
        float64 shards stay float64).

    Shapes:
        logit_shards[j]: ``(..., V_j)``, the same leading shape for every shard;
        targets: ``(...)``; result: ``()`` or ``(...)``.

    Raises:
        TypeError: ``logit_shards`` is not a sequence, a shard is not a float tensor, ``targets`` is not an
            integer tensor, ``ignore_index`` is not an integer (``operator.index`` fails) or is a bool.
            ``reduction`` not a str.
        ValueError: ``ignore_index`` beyond int64, no shard, shards of different dtypes or leading shapes, an empty shard,
            ``targets`` of another shape, a target outside ``[0, V)`` (a value check, on the CPU: see
            :mod:`coursekit.losses`; where it does not run, such a target's loss is ``nan``, since no kernel
            indexes a whole row to trip a device-side assert), an unknown ``reduction``.
            Tensor arguments on two devices.

    Example:
        >>> logits = torch.tensor([[2.0, 0.5, -1.0, 3.0, 0.0]])
        >>> shards = [logits[:, :2], logits[:, 2:]]          # two devices: ids 0-1 and 2-4
        >>> vocab_parallel_cross_entropy(shards, torch.tensor([3]))
        tensor(0.4174)
        >>> torch.nn.functional.cross_entropy(logits, torch.tensor([3]))
        tensor(0.4174)
    """
    if isinstance(logit_shards, torch.Tensor) or not isinstance(logit_shards, Sequence):
        raise TypeError(
            f"logit_shards must be a sequence of tensors (one per device), got {type(logit_shards).__name__}"
        )
    if len(logit_shards) == 0:
        raise ValueError("logit_shards must hold at least one shard, got an empty sequence")
    for j, shard in enumerate(logit_shards):
        require_float(f"logit_shards[{j}]", shard)
        if shard.dim() < 1 or shard.shape[-1] == 0:
            raise ValueError(f"logit_shards[{j}] must have shape (..., V_j) with V_j >= 1, got {tuple(shard.shape)}")
    first = logit_shards[0]
    for j, shard in enumerate(logit_shards[1:], start=1):
        if shard.dtype != first.dtype:
            raise ValueError(f"logit_shards[{j}] must have dtype {first.dtype} (that of shard 0), got {shard.dtype}")
        if shard.shape[:-1] != first.shape[:-1]:
            raise ValueError(
                f"logit_shards[{j}] must have the leading shape {tuple(first.shape[:-1])} of logit_shards[0], "
                f"got {tuple(shard.shape)}"
            )
    targets = require_class_indices("targets", targets)
    require_shape("targets", targets, first.shape[:-1], "logit_shards[0].shape[:-1]")
    # the devices are simulated: every shard lives on one device, the first's
    shards_after_first = {f"logit_shards[{j}]": shard for j, shard in enumerate(logit_shards[1:], start=1)}
    require_same_devices("logit_shards[0]", first, **shards_after_first, targets=targets)
    vocab_size = sum(shard.shape[-1] for shard in logit_shards)
    ignore_index = require_int("ignore_index", ignore_index, type_expected="an int (a target value)")
    require_targets_in_range("targets", targets, vocab_size, ignore_index)
    require_choice("reduction", reduction, VOCAB_PARALLEL_REDUCTIONS)

    # Under autocast, in float32, as F.cross_entropy computes under CPU autocast.
    logit_shards = [float32_under_autocast(shard) for shard in logit_shards]
    result_dtype = logit_shards[0].dtype
    # Each device works in float32 (float64 stays float64) and the loss is rounded once to the shards'
    # dtype: in half precision, mu + log(a) - z rounded at every step loses the loss of a confident row.
    compute_dtype = torch.promote_types(result_dtype, torch.float32)
    logit_shards = [shard.to(compute_dtype) for shard in logit_shards]
    counted = targets != ignore_index
    # Step 1, on every device: the local maximum; then all-reduce (max).
    local_max = [shard.detach().amax(dim=-1) for shard in logit_shards]
    row_max = _all_reduce(local_max, "max")
    # A row whose logits are all -inf would give nan after the shift; keep its max finite. A +inf
    # max stays: inf - inf gives nan, as F.cross_entropy's log_softmax does.
    row_max = row_max.masked_fill(row_max == float("-inf"), 0)

    # Step 2, on every device: the local sum of exponentials and its share of the target logit.
    local_sums, local_targets = [], []
    owned_somewhere = torch.zeros_like(counted)
    offset = 0
    for shard in logit_shards:
        width = shard.shape[-1]
        owned = counted & (targets >= offset) & (targets < offset + width)
        owned_somewhere |= owned
        local_index = (targets - offset).masked_fill(~owned, 0).unsqueeze(-1)
        local_sums.append(torch.exp(shard - row_max.unsqueeze(-1)).sum(dim=-1))
        local_targets.append(shard.gather(-1, local_index).squeeze(-1).masked_fill(~owned, 0.0))
        offset += width
    # One all-reduce (sum) carries both: a real implementation concatenates them.
    sum_exp, target_logit = _all_reduce([torch.stack(pair) for pair in zip(local_sums, local_targets)], "sum")

    # Step 3, the same on every device.
    # mu - z first: it is exact where z is the maximum, so a confident row keeps its small loss.
    losses = row_max - target_logit + torch.log(sum_exp)
    # A counted target no shard owns lies outside [0, V); only the CPU reads values to refuse it, and no
    # kernel indexes a whole row to trip a device-side assert, so its loss is nan rather than log sum(e^z).
    losses = losses.masked_fill(counted & ~owned_somewhere, float("nan"))
    losses = losses.masked_fill(~counted, 0.0).to(result_dtype)
    if reduction == "none":
        return losses
    total = losses.sum()
    # The count is never rounded to a half dtype (a float16 count of 65520 rows would read as inf).
    return _divide_exactly(total, counted.sum(), result_dtype) if reduction == "mean" else total
