"""Connectionist temporal classification (Graves et al. 2006), by the forward algorithm.

An input :math:`x` of :math:`T` frames gives, at every frame :math:`t`, a
distribution :math:`p_t(k)` over :math:`V` classes :math:`k`, one of which is
the *blank* :math:`\\varnothing`. A label sequence
:math:`y = (y_1, \\dots, y_{T_y})` is matched by every path
:math:`\\pi = (\\pi_1, \\dots, \\pi_T)` that reads :math:`y` after merging
repeated symbols and then deleting blanks. The loss is :math:`-\\log p(y \\mid x)`,
the negative log of the total probability of those paths, summed by dynamic
programming over the *blank-extended* label sequence

.. math::

    y' = (\\varnothing, y_1, \\varnothing, y_2, \\dots, \\varnothing, y_{T_y}, \\varnothing),
    \\qquad |y'| = 2T_y + 1.

The forward variable :math:`\\alpha_t(s)` is the probability of all path
prefixes :math:`\\pi_1, \\dots, \\pi_t` that end in state :math:`s` of
:math:`y'` (frames :math:`t = 1, \\dots, T`, states
:math:`s = 1, \\dots, 2T_y + 1`):

.. math::

    \\alpha_1(1) = p_1(\\varnothing), \\quad \\alpha_1(2) = p_1(y_1), \\quad
    \\alpha_1(s) = 0 \\text{ for } s > 2, \\\\
    \\alpha_t(s) = p_t(y'_s) \\bigl(\\alpha_{t-1}(s) + \\alpha_{t-1}(s-1)
        + \\mathbb{1}_{\\text{skip}}(s)\\, \\alpha_{t-1}(s-2)\\bigr),

where :math:`\\mathbb{1}_{\\text{skip}}(s)` is 1 when :math:`y'_s` is a label
that differs from :math:`y'_{s-2}` (a blank cannot be skipped between two equal
labels) and 0 otherwise; a term whose state lies below 1 is 0. Then
:math:`p(y \\mid x) = \\alpha_T(2T_y + 1) + \\alpha_T(2T_y)` (only
:math:`\\alpha_T(1)` when :math:`T_y = 0`). The code works in log space (log-sum-exp for the sums) and
counts from 0: frame :math:`t` is row ``t - 1``, state :math:`s` column ``s - 1``.
:func:`ctc_backward_variables` runs the same recursion from the last frame
back; the two tables give the occupation of every state and the gradient.
"""

from __future__ import annotations

import math  # noqa: F401  (used by the doctest example)
from collections.abc import Sequence

import torch

from coursekit.losses._autocast import float32_under_autocast
from coursekit.losses._checks import (
    as_index,
    reads_values,
    require_choice,
    require_flag,
    require_float,
    require_int,
    require_integer,
    type_text,
)
from coursekit.losses._logsumexp import safe_logsumexp

CTC_REDUCTIONS = ("mean", "sum", "none")


def _emissions(log_probs: torch.Tensor, labels: torch.Tensor, blank: int) -> torch.Tensor:
    """``log_probs`` at every state of the blank-extended labels: ``(T, N, 2S + 1)``.

    One gather per label position rather than one over all states: in a single
    gather many states read the same class (every blank state, every repeated
    label), and the backward pass of such a gather adds their gradients with
    atomic operations on CUDA, in an order that changes from run to run. Here
    no gather reads a class twice, the blank column is broadcast (its gradient
    is a plain sum), and the gradient is the same bit for bit on every run.
    """
    num_frames, batch, _ = log_probs.shape
    blank_column = log_probs[:, :, blank].unsqueeze(2)
    columns = [blank_column]
    for position in range(labels.shape[1]):
        index = labels[:, position].view(1, batch, 1).expand(num_frames, batch, 1)
        columns.extend([log_probs.gather(2, index), blank_column])
    return torch.cat(columns, dim=2)


def _recursion_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the recursions run in: float32 for half-precision ``log_probs``, else their own.

    A half dtype rounds a log-space sum near -1000 by up to 4 (bfloat16) at every frame, and the
    errors add up over the frames; the result is rounded to the half dtype once, at the end.
    """
    return torch.promote_types(dtype, torch.float32)


def _forward_recursion(
    log_probs: torch.Tensor,
    padded_targets: torch.Tensor,
    input_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
    keep_table: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the forward algorithm for a batch; return ``(log p(y|x) per sequence, alpha table)``.

    ``padded_targets`` is ``(N, S)`` with valid labels up to each target length.
    The loop runs over time only; batch and extended-label states are vectorised.
    The alpha table, kept only when asked, is ``(T, N, 2S + 1)``. Both are in
    :func:`_recursion_dtype` (float32 for half-precision ``log_probs``); the
    callers round them to the input's dtype.
    """
    log_probs = log_probs.to(_recursion_dtype(log_probs.dtype))
    num_frames, batch, _ = log_probs.shape
    max_labels = padded_targets.shape[1]
    num_states = 2 * max_labels + 1
    device = log_probs.device
    neg_inf = torch.tensor(float("-inf"), dtype=log_probs.dtype, device=device)

    # Extended labels: blank at even states, the labels at odd ones; states past
    # a sequence's own 2L + 1 are padded with blank and masked to -inf.
    positions = torch.arange(max_labels, device=device)
    within = positions < target_lengths.unsqueeze(1)
    labels = torch.where(within, padded_targets, torch.full_like(padded_targets, blank))
    extended = torch.full((batch, num_states), blank, dtype=torch.long, device=device)
    extended[:, 1::2] = labels
    states = torch.arange(num_states, device=device)
    in_sequence = states < (2 * target_lengths + 1).unsqueeze(1)
    shifted = torch.full_like(extended, -1)
    shifted[:, 2:] = extended[:, :-2]
    can_skip = (states % 2 == 1) & (states >= 2) & (extended != shifted)

    # At the first frame only states 0 and 1 can be reached; F.ctc_loss sets the others to -inf
    # without reading log_probs, so a nan in a class no path emits at frame 1 leaves the loss finite.
    after_first = (torch.arange(num_frames, device=device) > 0).view(-1, 1, 1)
    read = in_sequence.unsqueeze(0) & (after_first | (states < 2))
    emissions = torch.where(read, _emissions(log_probs, labels, blank), neg_inf)

    # alpha_{-1}: before the first frame every path starts in state 0 with
    # probability 1; this also gives the right answer for zero-length inputs.
    alpha = torch.full((batch, num_states), float("-inf"), dtype=log_probs.dtype, device=device)
    alpha[:, 0] = 0.0
    table = []
    for t in range(num_frames):
        # book excerpt start: one frame of the recursion (ch07)
        stay = alpha
        step = torch.cat([neg_inf.expand(batch, 1), alpha[:, :-1]], dim=1)
        # [:, :num_states]: with no label (one state) the two -inf columns alone are one too many.
        skip = torch.cat([neg_inf.expand(batch, 2), alpha[:, :-2]], dim=1)[:, :num_states]
        skip = torch.where(can_skip, skip, neg_inf)
        new_alpha = safe_logsumexp(torch.stack([stay, step, skip])) + emissions[t]
        # book excerpt end
        # Sequences whose input has ended keep their last alpha.
        alpha = torch.where((t < input_lengths).unsqueeze(1), new_alpha, alpha)
        if keep_table:
            table.append(alpha)

    last = (2 * target_lengths).unsqueeze(1)
    end_blank = alpha.gather(1, last).squeeze(1)
    end_label = alpha.gather(1, (last - 1).clamp(min=0)).squeeze(1)
    end_label = torch.where(target_lengths > 0, end_label, neg_inf)
    log_likelihood = safe_logsumexp(torch.stack([end_blank, end_label]))
    if not keep_table:
        return log_likelihood, None
    if num_frames == 0:
        return log_likelihood, log_probs.new_empty((0, batch, num_states))
    return log_likelihood, torch.stack(table)


def _as_lengths(name: str, value: object, batch: int, device: torch.device) -> torch.Tensor:
    expected = "an integer tensor or a sequence of ints"
    if isinstance(value, torch.Tensor):
        require_integer(name, value)
        lengths = value
    elif isinstance(value, Sequence) and not isinstance(value, str):
        # Each length as F.ctc_loss's parser takes it (anything operator.index takes: NumPy ints,
        # one-element integer tensors), bounded by int64 here: torch.tensor would raise its own
        # "Overflow when unpacking long long" beyond it.
        for item in value:
            if as_index(item) is None:
                raise TypeError(f"{name} must be {expected}, got a {type(value).__name__} holding {type_text(item)}")
        lengths = torch.tensor([require_int(name, item) for item in value], dtype=torch.long)
    else:
        raise TypeError(f"{name} must be {expected}, got {type_text(value)}")
    if tuple(lengths.shape) != (batch,):
        raise ValueError(f"{name} must have shape ({batch},) (one length per sequence), got {tuple(lengths.shape)}")
    if batch and reads_values(lengths) and int(lengths.min()) < 0:
        raise ValueError(f"{name} must be >= 0, got {int(lengths.min())}")
    return lengths.to(device=device, dtype=torch.long)


def _check_ctc_arguments(
    log_probs: object,
    targets: object,
    input_lengths: object,
    target_lengths: object,
    blank: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Validate and normalise to ``(log_probs (T,N,C), padded targets (N,S), input_lengths, target_lengths, blank)``."""
    require_float("log_probs", log_probs)
    require_integer("targets", targets)
    assert isinstance(log_probs, torch.Tensor) and isinstance(targets, torch.Tensor)
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must have shape (T, N, C), got {tuple(log_probs.shape)}")
    # Under autocast the recursion runs in float32, as F.ctc_loss's does under CPU autocast (see _autocast).
    log_probs = float32_under_autocast(log_probs)
    num_frames, batch, num_classes = log_probs.shape
    blank = require_int("blank", blank, 0, num_classes - 1, expected=f"lie in [0, {num_classes}) (C = log_probs.shape[2])")
    device = log_probs.device
    in_lengths = _as_lengths("input_lengths", input_lengths, batch, device)
    tgt_lengths = _as_lengths("target_lengths", target_lengths, batch, device)
    check_values = batch > 0 and reads_values(in_lengths)
    if check_values and int(in_lengths.max()) > num_frames:
        raise ValueError(
            f"input_lengths must be <= T = log_probs.shape[0] = {num_frames}, got {int(in_lengths.max())}"
        )

    targets = targets.to(device=device, dtype=torch.long)
    if targets.dim() == 2:
        if targets.shape[0] != batch:
            raise ValueError(f"targets must have shape (N, S) with N = {batch}, got {tuple(targets.shape)}")
        if check_values and int(tgt_lengths.max()) > targets.shape[1]:
            raise ValueError(
                f"target_lengths must be <= S = targets.shape[1] = {targets.shape[1]}, got {int(tgt_lengths.max())}"
            )
        padded = targets
    elif targets.dim() == 1:
        # Laying concatenated labels out in rows needs the lengths on the host
        # (one synchronisation on an accelerator); padded targets need none.
        total = int(tgt_lengths.sum())
        if total != targets.numel():
            raise ValueError(
                f"targets is 1-D (concatenated), so it must hold sum(target_lengths) = {total} labels, "
                f"got {targets.numel()}"
            )
        max_labels = int(tgt_lengths.max()) if batch else 0
        padded = torch.full((batch, max_labels), blank, dtype=torch.long, device=device)
        valid = torch.arange(max_labels, device=device) < tgt_lengths.unsqueeze(1)
        padded[valid] = targets
    else:
        raise ValueError(f"targets must be (N, S) padded or 1-D concatenated, got shape {tuple(targets.shape)}")

    if not reads_values(padded):
        return log_probs, padded, in_lengths, tgt_lengths, blank
    used = torch.arange(padded.shape[1], device=device) < tgt_lengths.unsqueeze(1)
    labels = padded[used]
    if labels.numel():
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            raise ValueError(f"targets must lie in [0, {num_classes}) within target_lengths, got {bad}")
        if bool((labels == blank).any()):
            sequence, position = ((padded == blank) & used).nonzero()[0].tolist()
            raise ValueError(f"targets must not contain the blank label {blank} within target_lengths, got it in "
                             f"sequence {sequence} at position {position}")
    return log_probs, padded, in_lengths, tgt_lengths, blank


def ctc_loss(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor | Sequence[int],
    target_lengths: torch.Tensor | Sequence[int],
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
) -> torch.Tensor:
    """CTC loss :math:`-\\log p(y \\mid x)` by the forward algorithm, as ``F.ctc_loss``.

    Same signature as ``torch.nn.functional.ctc_loss`` (every argument may be
    passed by position, in PyTorch's order), with the same conventions and
    results on batched input. The arguments take what PyTorch's take: lengths
    as integer tensors or as sequences whose items ``operator.index`` accepts
    (ints, NumPy integers, one-element integer tensors), ``blank`` as any such
    integer, never a bool. It differs from ``F.ctc_loss`` in these places only:

    * PyTorch also accepts one unbatched ``(T, V)`` sequence; here it needs a
      batch axis of 1.
    * A label equal to ``blank`` within the target lengths is a ``ValueError``
      here where values are read (see :mod:`coursekit.losses`); ``F.ctc_loss``
      computes a value for it.
    * PyTorch wants both lengths as tensors or both as sequences; here either
      may be either. PyTorch's ``blank`` rejects a one-element 1-D tensor,
      which is taken here. A length or ``blank`` beyond int64 is a
      ``ValueError`` naming the argument here. ``zero_infinity`` also takes
      NumPy's bool here, where PyTorch takes a Python bool only (anything else
      is a ``TypeError`` in both).
    * ``T = 0`` (empty ``log_probs``) is computed here (0 for an empty target,
      ``inf`` otherwise), where PyTorch raises.
    * Half-precision ``log_probs`` (float16, bfloat16) are computed here: the
      recursion runs in float32 and the loss is rounded to their dtype once at
      the end (it stays float32 under ``torch.autocast``). Run in the half dtype
      itself, the recursion's rounding would add up over the frames.
      ``F.ctc_loss`` has no half-precision kernel on any device and raises
      ``NotImplementedError`` for them, except under CPU autocast, which casts
      them to float32 (see "Mixed precision" in :mod:`coursekit.losses`).
    * The gradient with respect to ``log_probs``: the true derivative here;
      PyTorch's kernel adds ``exp(log_probs)`` to it (below).
    * The gradient of an infinite loss (below).
    * A ``-inf`` in ``log_probs`` (a class masked out at a frame): its entry's
      gradient is 0 here, the true derivative; PyTorch's kernel gives ``nan``
      there, and, through a ``log_softmax``, for every logit of that frame.

    ``"mean"`` divides each sequence's loss by its target length (clamped to at
    least 1) and then averages over the batch; ``"sum"`` adds the losses;
    ``"none"`` returns one loss per sequence. A target with no alignment (an
    input too short for the labels and the blanks that must separate repeated
    labels) has loss ``inf``; with ``zero_infinity=True`` it becomes 0 and contributes no
    gradient. (Without ``zero_infinity`` the gradient of an infinite loss is 0
    here, where PyTorch's kernel gives ``nan``.) Gradients come from autograd through the recursion (see the module
    docstring): the true derivative with respect to ``log_probs``. PyTorch's own
    kernel returns that plus ``exp(log_probs)``, the gradient with respect to the
    logits that feed a log-softmax; so where ``log_probs`` are finite log-softmax
    outputs the two agree on those logits, not on ``log_probs`` themselves.

    Args:
        log_probs: per-frame log-probabilities :math:`\\log p_t(k)` (usually ``log_softmax`` outputs).
        targets: the label sequences, padded ``(B, max_target_len)`` or concatenated 1-D; never ``blank``.
        input_lengths: frames :math:`T` used per sequence, each ``<= log_probs.shape[0]``.
        target_lengths: labels :math:`T_y` per sequence (0 allowed), each ``<= targets.shape[1]``
            for padded targets.
        blank: index of the blank class.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        zero_infinity: replace infinite losses (and their gradients) by 0; a Python or NumPy bool.

    Returns:
        A scalar, or ``(B,)`` losses for ``"none"``, in the dtype of ``log_probs``
        (float32 under ``torch.autocast`` for half-precision ``log_probs``, on
        every device: as ``F.ctc_loss`` under CPU autocast, while under CUDA
        autocast, as without autocast, ``F.ctc_loss`` raises for them; float64
        stays float64).

    Shapes:
        log_probs: ``(T, B, V)`` (PyTorch's ``(T, N, C)``); targets: ``(B, max_target_len)``
        or ``(sum(target_lengths),)``; input_lengths, target_lengths: ``(B,)``;
        result: ``()`` or ``(B,)``.

    Raises:
        TypeError: wrong tensor dtypes, lengths that are not integers, or a
            ``blank`` that is not an integer (``operator.index`` fails) or is a bool,
            ``zero_infinity`` neither a Python nor a NumPy bool. ``reduction`` not a str.
        ValueError: wrong shapes, negative lengths, lengths longer than the
            padded axis, ``blank`` outside ``[0, V)``, a target outside ``[0, V)``
            or equal to ``blank``, or an unknown ``reduction``. The checks of
            lengths and labels read values and run where that costs nothing
            (see :mod:`coursekit.losses`).

    Example:
        >>> log_probs = torch.full((3, 1, 3), 1 / 3).log()   # T = 3 uniform frames, V = 3
        >>> # 5 of the 27 paths read "1 2": 1 2 _, 1 1 2, 1 2 2, _ 1 2, 1 _ 2
        >>> loss = ctc_loss(log_probs, torch.tensor([[1, 2]]), [3], [2], reduction="sum")
        >>> round(loss.item(), 4), round(-math.log(5 / 27), 4)
        (1.6864, 1.6864)
        >>> ctc_loss(log_probs, torch.tensor([[1, 1]]), [2], [2])   # "1 1" needs 3 frames
        tensor(inf)
    """
    require_choice("reduction", reduction, CTC_REDUCTIONS)
    zero_infinity = require_flag("zero_infinity", zero_infinity)
    log_probs, padded, in_lengths, tgt_lengths, blank = _check_ctc_arguments(
        log_probs, targets, input_lengths, target_lengths, blank
    )
    result_dtype = log_probs.dtype
    log_likelihood, _ = _forward_recursion(log_probs, padded, in_lengths, tgt_lengths, blank, keep_table=False)
    losses = -log_likelihood
    if zero_infinity:
        losses = torch.where(torch.isinf(losses), torch.zeros_like(losses), losses)
    if reduction == "none":
        return losses.to(result_dtype)
    if reduction == "sum":
        return losses.sum().to(result_dtype)
    return (losses / tgt_lengths.clamp(min=1).to(losses.dtype)).mean().to(result_dtype)


def _check_one_sequence(log_probs: torch.Tensor, target: torch.Tensor, blank: int) -> tuple:
    """Validate one ``(T, V)`` sequence and its ``(T_y,)`` labels; return them as a batch of one, as
    :func:`_check_ctc_arguments` does."""
    require_float("log_probs", log_probs)
    require_integer("target", target)
    if log_probs.dim() != 2:
        raise ValueError(f"log_probs must have shape (T, V) for one sequence, got {tuple(log_probs.shape)}")
    if target.dim() != 1:
        raise ValueError(f"target must have shape (T_y,) for one sequence, got {tuple(target.shape)}")
    # blank and the labels are checked here, in this function's own terms, before the batched check
    # (whose messages speak of ctc_loss's targets, target_lengths and log_probs.shape[2]).
    num_classes = log_probs.shape[1]
    blank = require_int("blank", blank, 0, num_classes - 1, expected=f"lie in [0, {num_classes}) (V = log_probs.shape[1])")
    if target.numel() and reads_values(target):
        low, high = int(target.min()), int(target.max())
        if low < 0 or high >= num_classes:
            raise ValueError(f"target must lie in [0, {num_classes}), got {low if low < 0 else high}")
        at_blank = (target == blank).nonzero()
        if at_blank.numel():
            raise ValueError(f"target must not contain the blank label {blank}, got it at position {int(at_blank[0, 0])}")
    return _check_ctc_arguments(
        log_probs.unsqueeze(1), target.unsqueeze(0), [log_probs.shape[0]], [target.shape[0]], blank
    )


def ctc_forward_variables(log_probs: torch.Tensor, target: torch.Tensor, *, blank: int = 0) -> torch.Tensor:
    """The table of forward variables :math:`\\alpha_t(s)` of one sequence, in log space.

    Row ``t - 1`` holds :math:`\\log \\alpha_t(s)` for the states
    :math:`s = 1, \\dots, 2T_y + 1` (column ``s - 1``) of the blank-extended
    labels :math:`y' = (\\varnothing, y_1, \\varnothing, \\dots, y_{T_y},
    \\varnothing)` (see the module docstring); ``-inf`` marks a state no path
    can reach by frame :math:`t`. ``-torch.logsumexp(table[-1, -2:], 0)`` is the
    sequence's CTC loss (for an empty target the table has one column, and
    that slice is it).

    Args:
        log_probs: per-frame log-probabilities :math:`\\log p_t(k)` of one sequence.
        target: its :math:`T_y` labels, none equal to ``blank``.
        blank: index of the blank class.

    Returns:
        The table of :math:`\\log \\alpha_t(s)`, in the dtype of ``log_probs`` (computed in float32
        for half-precision ``log_probs``, as in :func:`ctc_loss`; float32 under ``torch.autocast``).

    Shapes:
        log_probs: ``(T, V)``; target: ``(T_y,)``; result: ``(T, 2 T_y + 1)``.

    Raises:
        TypeError, ValueError: as :func:`ctc_loss`.

    Example:
        >>> log_probs = torch.full((3, 3), 1 / 3).log()
        >>> table = ctc_forward_variables(log_probs, torch.tensor([1, 2]))
        >>> table.shape
        torch.Size([3, 5])
        >>> # row t - 1 times 3^t: how many path prefixes of length t end in each state
        >>> (table.exp() * 3.0 ** torch.arange(1, 4).unsqueeze(1)).round()
        tensor([[1., 1., 0., 0., 0.],
                [1., 2., 1., 1., 0.],
                [1., 3., 3., 4., 1.]])
    """
    batched, padded, in_lengths, tgt_lengths, blank = _check_one_sequence(log_probs, target, blank)
    _, table = _forward_recursion(batched, padded, in_lengths, tgt_lengths, blank, keep_table=True)
    assert table is not None
    return table[:, 0, :].to(batched.dtype)


def ctc_backward_variables(log_probs: torch.Tensor, target: torch.Tensor, *, blank: int = 0) -> torch.Tensor:
    """The table of backward variables :math:`\\omega_t(s)` of one sequence, in log space.

    Frames :math:`t = 1, \\dots, T` and states :math:`s = 1, \\dots, 2T_y + 1` of the
    blank-extended labels :math:`y' = (\\varnothing, y_1, \\varnothing, \\dots, y_{T_y}, \\varnothing)`
    are numbered from 1, as in chapter 7; row :math:`t - 1`, column :math:`s - 1`
    of the result holds :math:`\\log \\omega_t(s)`.

    :math:`\\omega_t(s)` is the total probability of the path suffixes
    :math:`\\pi_{t+1}, \\dots, \\pi_T` that, starting from state :math:`s` at frame
    :math:`t`, read the rest of the labels and end in one of the last two states.
    Frame :math:`t`'s own probability is *not* included (it is in
    :math:`\\alpha_t(s)`), so :math:`\\alpha_t(s)\\,\\omega_t(s)` is the probability of
    the alignments that are in state :math:`s` at frame :math:`t`, and
    :math:`\\sum_s \\alpha_t(s)\\,\\omega_t(s) = p(y \\mid x)` at every frame. The
    recursion runs from the last frame back:

    .. math::

        \\omega_T(s) = [s \\ge 2T_y], \\qquad
        \\omega_t(s) = p_{t+1}(y'_s)\\,\\omega_{t+1}(s) + p_{t+1}(y'_{s+1})\\,\\omega_{t+1}(s+1)
            + \\mathbb{1}_{\\text{skip}}(s+2)\\,p_{t+1}(y'_{s+2})\\,\\omega_{t+1}(s+2),

    with :math:`\\omega_{t+1}(s) = 0` past the last state and
    :math:`\\mathbb{1}_{\\text{skip}}(s+2) = 1` when :math:`y'_{s+2}` is a label that
    differs from :math:`y'_s` (the skip rule of the forward recursion, read backwards).

    Args:
        log_probs: per-frame log-probabilities :math:`\\log p_t(k)` of one sequence.
        target: its :math:`T_y` labels, none equal to ``blank``.
        blank: index of the blank class.

    Returns:
        The table of :math:`\\log \\omega_t(s)`; ``-inf`` marks a state from which the
        rest of the labels cannot be read in the frames left. In the dtype of ``log_probs``
        (computed in float32 for half-precision ``log_probs``, as in :func:`ctc_loss`; float32
        under ``torch.autocast``).

    Shapes:
        log_probs: ``(T, V)``; target: ``(T_y,)``; result: ``(T, 2 T_y + 1)``.

    Raises:
        TypeError, ValueError: as :func:`ctc_forward_variables`.

    Example:
        >>> log_probs = torch.full((3, 3), 1 / 3).log()
        >>> omega = ctc_backward_variables(log_probs, torch.tensor([1, 2]))
        >>> # times 3^(T - t): how many path suffixes finish the target from each state
        >>> (omega.exp() * 3.0 ** torch.arange(2, -1, -1).unsqueeze(1)).round()
        tensor([[1., 4., 3., 3., 1.],
                [0., 1., 1., 2., 1.],
                [0., 0., 0., 1., 1.]])
        >>> alpha = ctc_forward_variables(log_probs, torch.tensor([1, 2]))
        >>> ((alpha + omega).logsumexp(dim=1).exp() * 27).round()   # p(y|x) at every frame: 5 of 27 paths
        tensor([5., 5., 5.])
    """
    blank = _check_one_sequence(log_probs, target, blank)[4]
    log_probs = float32_under_autocast(log_probs)
    result_dtype = log_probs.dtype
    log_probs = log_probs.to(_recursion_dtype(result_dtype))
    num_frames = log_probs.shape[0]
    labels = target.to(device=log_probs.device, dtype=torch.long)
    num_states = 2 * labels.shape[0] + 1
    extended = torch.full((num_states,), blank, dtype=torch.long, device=log_probs.device)
    extended[1::2] = labels
    # the skip from s to s + 2 lands on a label that differs from the one at s
    ahead = torch.full_like(extended, -1)
    ahead[:-2] = extended[2:]
    can_skip = (torch.arange(num_states, device=log_probs.device) % 2 == 1) & (ahead != extended) & (ahead >= 0)
    neg_inf = torch.tensor(float("-inf"), dtype=log_probs.dtype, device=log_probs.device)
    # gathered, as the forward variables' are: indexing would read a negative label from the end of the vocabulary
    emissions = _emissions(log_probs.unsqueeze(1), labels.unsqueeze(0), blank)[:, 0]   # (T, 2L + 1)

    omega = torch.full((num_states,), float("-inf"), dtype=log_probs.dtype, device=log_probs.device)
    omega[max(num_states - 2, 0):] = 0.0
    table = [omega]
    for t in range(num_frames - 2, -1, -1):
        # book excerpt start: one frame of the backward recursion (ch07)
        after = emissions[t + 1] + omega              # p_{t+1}(y'_s) omega_{t+1}(s), in log space
        padded = torch.cat([after, neg_inf.expand(2)])
        stay, step = after, padded[1 : num_states + 1]
        skip = torch.where(can_skip, padded[2:], neg_inf)
        omega = safe_logsumexp(torch.stack([stay, step, skip]))
        # book excerpt end
        table.append(omega)
    if num_frames == 0:
        return torch.empty((0, num_states), dtype=result_dtype, device=log_probs.device)
    return torch.stack(table[::-1]).to(result_dtype)
