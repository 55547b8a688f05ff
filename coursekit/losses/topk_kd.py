"""Distillation from a teacher's top-k entries: what storing only the k most probable tokens costs.

Offline distillation stores the teacher's distribution for every training
position. A full row costs :math:`V` numbers; keeping only the kept set
:math:`\\mathcal{V}_{\\text{top}}` of the :math:`|\\mathcal{V}_{\\text{top}}|` most probable
tokens, as (index, log-probability) pairs, costs far less, but the loss can then
only be computed from those entries. Two ways are in use:

* renormalise the kept probabilities, :math:`\\tilde q_k = q_k / \\sum_{j \\in \\mathcal{V}_{\\text{top}}} q_j`,
  and sum the KL divergence over the kept set only;
* keep one *tail* bucket on each side for the mass outside the kept set,
  :math:`q_{\\text{rest}} = 1 - \\sum_{\\mathcal{V}_{\\text{top}}} q_k` and likewise :math:`p_{\\text{rest}}`.

By the grouping property of the KL divergence the tail form is a lower bound of
the full divergence; it misses exactly :math:`q_{\\text{rest}}` times the divergence
between the two distributions *within* the rest.
"""

from __future__ import annotations

import math

import torch

from coursekit.losses._autocast import float32_under_autocast, promoted_under_autocast
from coursekit.losses._checks import (
    reads_values,
    require_choice,
    require_classes,
    require_flag,
    require_float,
    require_int,
    require_integer,
    require_mask,
    require_positive,
    require_same_devices,
    require_shape,
)
from coursekit.losses._logsumexp import safe_logsumexp
from coursekit.losses.distillation import _reduce, _zero_uncounted

TOP_K_REDUCTIONS = ("token_mean", "sequence_mean", "sum", "none")
# Stored log-probabilities may have been computed in bfloat16 and widened to store them, so their
# dtype does not bound their rounding: a stored mass within a factor exp(+-_LOG_MASS_TOLERANCE) of 1
# is 1 up to rounding (the square root of bfloat16's epsilon, 0.088; see _require_a_top_k_set).
_LOG_MASS_TOLERANCE = torch.finfo(torch.bfloat16).eps ** 0.5
# The largest q_rest = 1 - (stored mass) that is rounding of an empty teacher tail: 1 - exp(-0.088) = 0.0846.
_TAIL_ROUNDING = -math.expm1(-_LOG_MASS_TOLERANCE)
# A student tail whose log-mass times the temperature is below this is a masked one (-inf, finfo.min, -1e9,
# -1e4): tau * log p_rest is about the raw logit gap between the tail and the kept entries, whatever tau, and
# is computed in log space, so it never underflows. So the bound is one constant, not the dtype's smallest
# number (float16's, e^-9.7, caught any confident student: review r25, F1), and not a bound on the tempered
# log p_rest alone (which caught an unmasked student at tau = 0.05 and missed -1e4 masks at tau = 10: review
# r26, F2); a trained model's logit gaps stay far from it.
_EMPTY_TAIL_LOG_MASS = -1000.0


def top_k_teacher(teacher_logits: torch.Tensor, k: int, *, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's ``k`` most probable tokens at every position, as stored for offline distillation.

    Args:
        teacher_logits: the teacher's scores :math:`z^{\\mathrm{T}}`.
        k: :math:`|\\mathcal{V}_{\\text{top}}|`, between 1 and :math:`V`.
        temperature: :math:`\\tau > 0` of the stored distribution.

    Returns:
        ``(log_probs, indices)``: the log-probabilities of the kept tokens under the *full* tempered
        softmax, :math:`\\log \\operatorname{softmax}(z^{\\mathrm{T}}/\\tau)_k`, in decreasing order, and their indices;
        the log-probabilities in float32 under ``torch.autocast`` for half-precision logits (float64 stays
        float64), division by ``temperature`` included, as :func:`kd_loss` computes them there.
        Both are detached from ``teacher_logits``: they stand for stored teacher outputs, through which no
        gradient flows.

    Shapes:
        teacher_logits: ``(..., V)``; both results: ``(..., k)``.

    Raises:
        TypeError: ``teacher_logits`` not float, ``k`` not an integer (``operator.index`` fails) or a bool,
            ``temperature`` not a real number.
        ValueError: ``teacher_logits`` with no vocabulary axis or an empty
            one, ``k`` outside ``[1, V]``, ``temperature <= 0`` or not finite.

    Example:
        >>> log_probs, indices = top_k_teacher(torch.tensor([[0.0, 2.0, 1.0]]), 2)
        >>> indices.tolist(), [round(v, 4) for v in log_probs.exp()[0].tolist()]
        ([[1, 2]], [0.6652, 0.2447])
    """
    require_float("teacher_logits", teacher_logits)
    if teacher_logits.dim() < 1 or teacher_logits.shape[-1] == 0:
        # an empty vocabulary is the logits' fault: k's interval [1, V] would be empty
        raise ValueError(f"teacher_logits must have shape (..., V) with V >= 1, got {tuple(teacher_logits.shape)}")
    vocab = teacher_logits.shape[-1]
    k = require_int("k", k, 1, vocab, expected=f"lie in [1, {vocab}] (V)")
    temperature = require_positive("temperature", temperature)
    log_probs = torch.log_softmax(float32_under_autocast(teacher_logits.detach()) / temperature, dim=-1)
    return log_probs.topk(k, dim=-1)


def top_k_kd_loss(
    student_logits: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    teacher_indices: torch.Tensor,
    *,
    temperature: float = 1.0,
    tail: bool = True,
    mask: torch.Tensor | None = None,
    reduction: str = "token_mean",
) -> torch.Tensor:
    """:math:`\\tau^2` times the KL divergence from the teacher, computed from its stored top-k entries only.

    With :math:`p = \\operatorname{softmax}(z^{\\mathrm{S}}/\\tau)` and the stored :math:`q_k`, :math:`k \\in \\mathcal{V}_{\\text{top}}`:

    * ``tail=True``: :math:`\\tau^2 \\bigl(\\sum_{k \\in \\mathcal{V}_{\\text{top}}} q_k \\log \\frac{q_k}{p_k}
      + q_{\\text{rest}} \\log \\frac{q_{\\text{rest}}}{p_{\\text{rest}}}\\bigr)` with the tail masses
      :math:`q_{\\text{rest}} = \\max(0, 1 - \\sum_{k \\in \\mathcal{V}_{\\text{top}}} q_k)` and
      :math:`p_{\\text{rest}} = \\sum_{k \\notin \\mathcal{V}_{\\text{top}}} p_k` (summed over the entries outside
      the kept set, not taken as :math:`1 - \\sum p_k`, which can round to 0), never above :func:`kd_loss` (up to the rounding of the stored masses);
    * ``tail=False``: :math:`\\tau^2 \\sum_{k \\in \\mathcal{V}_{\\text{top}}} \\tilde q_k \\log \\frac{\\tilde q_k}{p_k}`
      with the renormalised :math:`\\tilde q`; with one kept token this is :math:`\\tau^2` times the NLL, at
      temperature :math:`\\tau`, of the teacher's top token.

    TRL 1.16's top-k distillation (``ServerDistillationTrainer._compute_server_forward_kl_loss``
    in ``trl.experimental.server_distillation``, per counted position) differs in three ways. Its
    ``loss_add_tail=True`` form is the ``tail=True`` one without the :math:`\\tau^2` factor where the
    student's tail holds a fair share of its mass. TRL takes both tail masses as one minus the kept
    probabilities' sum, floored at about :math:`10^{-7}` (it clamps their log-sum at
    :math:`-10^{-7}`), and has no rule for a masked student tail (below): where the student puts
    almost nothing outside the kept set (a tail below about :math:`10^{-6}` with float32 student
    log-probabilities; TRL takes them in the logits' dtype, and bfloat16 log-probabilities lose tails
    below about :math:`10^{-2}`: 1.29 nats in TRL against 0.97 here and in float64 at a
    median student tail of 0.007, with bfloat16 student logits), or masks it, the two
    differ (for a student tail of about :math:`2 \\cdot 10^{-13}` beside a teacher tail of 0.16, 4.26
    nats here at :math:`\\tau = 1` and 2.17 in TRL). Its
    ``loss_add_tail=False`` form renormalises the student's kept probabilities too,
    :math:`\\sum_{k \\in \\mathcal{V}_{\\text{top}}} \\tilde q_k \\log \\frac{\\tilde q_k}{\\tilde p_k}`
    (0 with one kept token), where ``tail=False`` here keeps the student's :math:`p_k`, so that the
    loss still pulls the kept tokens' mass up; before the :math:`\\tau^2`, the two differ by
    :math:`-\\log \\sum_{k \\in \\mathcal{V}_{\\text{top}}} p_k`.

    A term whose teacher probability is 0 is 0 (:math:`0 \\log \\frac{0}{p} = 0`). There is no tail term
    where no entry lies outside the kept set (``k = V``). Where the student's tail is masked
    (:math:`\\tau \\log p_{\\text{rest}} < -1000`, about a raw logit gap of 1000 whatever :math:`\\tau`:
    every entry outside the kept set at ``-inf`` or a finite minimum such as ``finfo.min``, ``-1e9`` or
    ``-1e4``; no unmasked student comes near) and
    :math:`q_{\\text{rest}} \\le 1 - e^{-\\delta} \\approx 0.085` with
    :math:`\\delta = \\sqrt{\\epsilon_{\\text{bf16}}} \\approx 0.088`, that :math:`q_{\\text{rest}}` is taken for the
    rounding of a teacher tail that is empty too (its true value is 0): the stored probabilities may
    have been rounded in bfloat16 (see ``teacher_log_probs`` below), and the same :math:`\\delta`
    admits a stored mass up to :math:`e^{\\delta}`. Such a row is the ``tail=False`` value, the KL of
    the renormalised kept masses (the kept terms alone would sum masses short of 1, and could fall
    below 0). So a real teacher tail of up to 8.5 % that the student masks entirely is passed over
    there; at the bound the value jumps from the tail form to this one. A larger
    :math:`q_{\\text{rest}}` against an empty student tail gives
    :math:`q_{\\text{rest}} \\log \\frac{q_{\\text{rest}}}{p_{\\text{rest}}}`: ``inf`` where
    :math:`p_{\\text{rest}} = 0` (the teacher puts that mass where the student puts none, and
    :func:`kd_loss` is ``inf`` too). Stored log-probabilities rounded in bfloat16 also carry a rounding
    :math:`q_{\\text{rest}}` against a student whose tail is not empty, which the tail term then counts.

    With all :math:`V` entries kept both forms equal :func:`kd_loss`. So does ``tail=True``, in value
    and gradient, up to the rounding of the stored masses, where the student and the teacher mask the
    same entries and ``k`` is at least the number of unmasked ones: the kept set holds all of the
    teacher's mass and both tails are empty.
    A kept entry whose stored log-probability is ``-inf`` (``k`` larger than the number of unmasked
    vocabulary entries) contributes 0, with a finite gradient, as in :func:`kd_loss`.

    Args:
        student_logits: the student's scores :math:`z^{\\mathrm{S}}`.
        teacher_log_probs, teacher_indices: from :func:`top_k_teacher` (same temperature). At every
            counted position the indices must be distinct and the stored probabilities
            :math:`q_k` must sum to at most 1 up to half-precision rounding, as
            :func:`top_k_teacher` returns them (its bfloat16 log-probabilities may sum to about
            1.03 at a vocabulary of 150,000, and keep that sum when they are widened to store them): a repeated index would
            count its entry twice, and a mass well above 1 leaves no tail; either breaks the bound
            above. Both are checked where the index range is (on the CPU; see :mod:`coursekit.losses`).
        temperature: :math:`\\tau > 0`.
        tail: keep the tail bucket (True) or renormalise over the kept set (False); a Python or NumPy bool.
        mask: boolean (or 0/1 integers), True on the positions that count; ``None`` counts all.
        reduction: ``"token_mean"``, ``"sequence_mean"``, ``"sum"`` or ``"none"``.

    Returns:
        A scalar, or shape ``student_logits.shape[:-1]`` for ``"none"``, in
        the dtype ``student_logits`` and ``teacher_log_probs`` promote to
        (``torch.result_type``), the student's log-softmax computed in it: a
        bfloat16 student with float32 stored log-probabilities gives float32,
        as :func:`kd_loss` with a float32 teacher does. Float32 under
        ``torch.autocast`` for half-precision logits (float64
        stays float64), division by ``temperature`` included, as :func:`kd_loss`
        computes there (which its references compute on CUDA for
        ``temperature=1`` only; see "Mixed precision" in :mod:`coursekit.losses`).
        The means (``"token_mean"``, ``"sequence_mean"``) count positions in
        float32 or wider, which holds every count up to 2**24 exactly, and round the
        quotient once to that dtype, as ``F.kl_div(..., reduction="batchmean")``
        divides a half-precision sum by an integer: counts that float16 would
        round (above 2048) or make ``inf`` (from 65520), or bfloat16 round
        (above 256), are exact here too. The sum itself is taken in that
        dtype, as ``F.kl_div``'s: a float16 total of 65520 or more (what
        float16 rounds to ``inf``) is ``inf`` in both. In half precision each
        position's sum over the vocabulary is rounded before the total, where
        ``F.kl_div`` rounds its elementwise terms and one total, so the two can
        differ by a few units in the last place.

    Shapes:
        student_logits: ``(..., V)``; teacher_log_probs, teacher_indices: ``(..., k)``; mask: ``(...)``;
        result: ``()``, or ``(...)`` for ``"none"``.

    Raises:
        TypeError: ``student_logits`` or ``teacher_log_probs`` not floating-point, ``teacher_indices`` not
            integer, ``mask`` neither boolean nor integer, ``temperature`` not a number, ``tail`` neither a
            Python nor a NumPy bool, ``reduction`` not a str.
        ValueError: mismatched shapes, ``student_logits`` with no vocabulary axis or an empty one (``V = 0``),
            ``teacher_log_probs`` with no kept entry (``k = 0``), an index outside ``[0, V)``, an index repeated at a counted position,
            stored probabilities summing to more than 1 at a counted position beyond half-precision rounding
            (a mass above :math:`e^{0.088} \\approx 1.09`), ``temperature`` not a finite number > 0, unknown ``reduction``.
            A ``mask`` holding a value other than 0 and 1 (checked where values are read;
            see :mod:`coursekit.losses`). Tensor arguments on two devices.

    Example:
        >>> from coursekit.losses import kd_loss
        >>> teacher = torch.tensor([[0.0, 2.0, 1.0]])
        >>> student = torch.zeros(1, 3)
        >>> stored = top_k_teacher(teacher, 3)
        >>> full = kd_loss(student, teacher)
        >>> bool(torch.isclose(top_k_kd_loss(student, *stored), full))          # every entry kept
        True
        >>> bool(top_k_kd_loss(student, *top_k_teacher(teacher, 1)) <= full)     # the tail form never exceeds it
        True
        >>> masked = torch.tensor([[0.0, 0.0, 0.0, float("-inf")]])              # entry 3 masked for both
        >>> teacher = torch.tensor([[0.0, 2.0, 1.0, float("-inf")]])
        >>> top_k_kd_loss(masked, *top_k_teacher(teacher, 3)), kd_loss(masked, teacher)  # both tails empty
        (tensor(0.2662), tensor(0.2662))
    """
    require_float("student_logits", student_logits)
    require_float("teacher_log_probs", teacher_log_probs)
    require_integer("teacher_indices", teacher_indices)
    if student_logits.dim() < 1:
        raise ValueError(f"student_logits must have shape (..., V), got {tuple(student_logits.shape)}")
    require_classes("student_logits", student_logits)
    positions = student_logits.shape[:-1]
    require_shape("teacher_indices", teacher_indices, teacher_log_probs.shape, "teacher_log_probs.shape")
    if teacher_log_probs.dim() < 1 or teacher_log_probs.shape[-1] == 0:
        raise ValueError(f"teacher_log_probs must have shape (..., k) with k >= 1 (top_k_teacher keeps at least "
                         f"one entry), got shape {tuple(teacher_log_probs.shape)}")
    if tuple(teacher_log_probs.shape[:-1]) != tuple(positions):
        raise ValueError(f"teacher_log_probs must have shape {tuple(positions)} + (k,) (student_logits.shape[:-1]), "
                         f"got {tuple(teacher_log_probs.shape)}")
    require_same_devices(
        "student_logits", student_logits, teacher_log_probs=teacher_log_probs, teacher_indices=teacher_indices, mask=mask
    )
    vocab = student_logits.shape[-1]
    if teacher_indices.numel() and reads_values(teacher_indices):
        low, high = int(teacher_indices.min()), int(teacher_indices.max())
        if low < 0 or high >= vocab:
            raise ValueError(f"teacher_indices must lie in [0, {vocab}), got {low if low < 0 else high}")
    temperature = require_positive("temperature", temperature)
    tail = require_flag("tail", tail)
    require_choice("reduction", reduction, TOP_K_REDUCTIONS)
    if mask is None:
        counted = torch.ones(positions, dtype=torch.bool, device=student_logits.device)
    else:
        counted = require_mask("mask", mask, positions, "student_logits.shape[:-1]")
    if teacher_indices.numel() and reads_values(teacher_indices):
        _require_a_top_k_set(teacher_log_probs, teacher_indices, counted)

    teacher_indices = teacher_indices.long()  # gather and scatter index with int64 (or int32) only
    # As kd_loss does, so that nan or inf at a masked position reaches no gradient (stored log-probabilities
    # of 0 at a masked position are finite; its value is dropped by _reduce).
    student_logits, teacher_log_probs = _zero_uncounted(counted, student_logits, teacher_log_probs)
    # In the dtype the logits and the stored log-probabilities promote to (float32 under autocast), as
    # kd_loss (which it equals for k = V) computes: stored float32 log-probabilities are not rounded to a
    # bfloat16 student's dtype.
    dtype = promoted_under_autocast(student_logits, teacher_log_probs)
    log_p = torch.log_softmax(student_logits.to(dtype) / temperature, dim=-1)
    log_p_kept = log_p.gather(-1, teacher_indices)
    log_q = teacher_log_probs.to(dtype)
    q = log_q.exp()
    if tail:
        kept_terms = (q * _log_ratio_where_positive(q, log_q, log_p_kept)).sum(dim=-1)
        q_rest = (1.0 - q.sum(dim=-1)).clamp(min=0.0)
        # log p_rest from the entries outside the kept set, not from 1 - sum (which can round to 0)
        outside = torch.ones_like(log_p, dtype=torch.bool).scatter(-1, teacher_indices, False)
        # safe: where the student masks every entry outside the kept set, torch.logsumexp's backward is nan
        log_p_rest = safe_logsumexp(log_p.masked_fill(~outside, float("-inf")), dim=-1)
        # No tail where no entry lies outside the kept set (k = V), whatever 1 - sum(q) rounds to.
        has_rest = (q_rest > 0) & outside.any(dim=-1)
        # Where the student's tail is masked (every entry outside the kept set at -inf or a finite minimum)
        # and q_rest is rounding, the teacher's tail is empty too: the row is
        # the KL of the renormalised kept masses (below), not q_rest log(q_rest / p_rest), whose rounding
        # q_rest times a huge log ratio would be inf or 1e31 (review r24, F1), nor the kept terms alone,
        # whose masses sum short of 1 (a KL below 0: F2).
        empty_tails = has_rest & (temperature * log_p_rest < _EMPTY_TAIL_LOG_MASS) & (q_rest <= _TAIL_ROUNDING)
        has_rest = has_rest & ~empty_tails
        safe_q_rest = torch.where(has_rest, q_rest, torch.ones_like(q_rest))
        safe_log_p_rest = torch.where(has_rest, log_p_rest, torch.zeros_like(log_p_rest))
        rest_term = torch.where(has_rest, q_rest * (safe_q_rest.log() - safe_log_p_rest), torch.zeros_like(q_rest))
        per_position = torch.where(empty_tails, _renormalised_kl(log_q, log_p_kept), kept_terms + rest_term)
    else:
        per_position = _renormalised_kl(log_q, log_p_kept)
    return _reduce(per_position * temperature**2, counted, reduction, "top_k_kd_loss")


def _renormalised_kl(log_q: torch.Tensor, log_p_kept: torch.Tensor) -> torch.Tensor:
    """``sum_k q~_k log(q~_k / p_k)`` over the kept entries, ``q~`` the stored masses renormalised to sum to 1."""
    log_q_renorm = log_q - torch.logsumexp(log_q, dim=-1, keepdim=True)
    q_renorm = log_q_renorm.exp()
    return (q_renorm * _log_ratio_where_positive(q_renorm, log_q_renorm, log_p_kept)).sum(dim=-1)


def _require_a_top_k_set(teacher_log_probs: torch.Tensor, teacher_indices: torch.Tensor, counted: torch.Tensor) -> None:
    """Raise ``ValueError`` unless every counted position holds distinct indices whose stored mass is at most 1.

    A value check, run where the index range is read (see :func:`reads_values`). A duplicated index
    counts its entry twice, and a mass above 1 has no tail to hold the rest: either breaks the
    bound ``tail=True`` promises (never above :func:`kd_loss`). Positions that do not count are
    passed over: their stored entries may be padding (log-probabilities of 0, indices of 0).
    The log of the mass is compared with 0 up to the square root of bfloat16's epsilon (0.088),
    whatever the stored dtype: log-probabilities that :func:`top_k_teacher` computed in half
    precision keep their rounding (sums up to about 1.03 were measured at a vocabulary of 150,000) when they are widened to float32
    or float64 for storage, so the stored dtype does not bound the error.
    """
    ordered = teacher_indices.sort(dim=-1).values
    repeated = (ordered[..., 1:] == ordered[..., :-1]).any(dim=-1) & counted
    if bool(repeated.any()):
        position = tuple(int(i) for i in repeated.nonzero()[0])
        row = ordered[position]
        value = int(row[1:][row[1:] == row[:-1]][0])
        raise ValueError(
            f"teacher_indices must be distinct at each position (as top_k_teacher returns them), "
            f"got {value} twice at position {position}"
        )
    wide = torch.promote_types(teacher_log_probs.dtype, torch.float32)
    log_mass = torch.logsumexp(teacher_log_probs.to(wide), dim=-1)
    over = (log_mass > _LOG_MASS_TOLERANCE) & counted
    if bool(over.any()):
        position = tuple(int(i) for i in over.nonzero()[0])
        raise ValueError(
            f"teacher_log_probs must hold probabilities summing to at most 1 at each position "
            f"(log-probabilities of distinct tokens, as top_k_teacher returns them), "
            f"got a sum of {float(log_mass[position].exp()):.4g} at position {position}"
        )


def _log_ratio_where_positive(q: torch.Tensor, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """``log_q - log_p`` where ``q > 0``, else 0, so that ``q * (log_q - log_p)`` is 0 there.

    A kept teacher entry can have probability 0 (log-probability ``-inf``: ``k``
    larger than the number of unmasked vocabulary entries). Both logs are
    replaced *before* the product, as in :func:`kd_loss`: 0 * (-inf) would be nan
    in the value and, through the product's backward, in the gradients.
    """
    support = q > 0
    zeros = torch.zeros_like(log_q)
    return torch.where(support, log_q, zeros) - torch.where(support, log_p, zeros)
