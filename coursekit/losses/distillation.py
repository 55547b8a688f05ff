"""Knowledge distillation: a student matches a teacher's softened next-token distributions.

Hinton, Vinyals and Dean (2015) soften both distributions with a temperature
:math:`\\tau`, the target :math:`q^{(\\tau)} = \\operatorname{softmax}(z^{\\mathrm{T}}/\\tau)`
of the teacher and :math:`p^{(\\tau)} = \\operatorname{softmax}(z^{\\mathrm{S}}/\\tau)`
of the student, and multiply the KL divergence by :math:`\\tau^2` so that its
gradients keep the same scale as the temperature changes.
"""

from __future__ import annotations

import torch

from coursekit.losses._autocast import promoted_under_autocast
from coursekit.losses._checks import (
    require_choice,
    require_classes,
    require_float,
    require_mask,
    require_positive,
    require_same_devices,
    require_shape,
)
from coursekit.losses.nll import _reduce_batch

KD_REDUCTIONS = ("token_mean", "sequence_mean", "sum", "none")


def _prepare(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    mask: torch.Tensor | None,
    reduction: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Validate, and return masked-out-safe student/teacher log-probabilities at temperature."""
    require_float("student_logits", student_logits)
    require_float("teacher_logits", teacher_logits)
    if student_logits.dim() < 1:
        raise ValueError(
            f"student_logits must have at least one dimension (..., V), got shape {tuple(student_logits.shape)}"
        )
    require_classes("student_logits", student_logits)
    require_shape("teacher_logits", teacher_logits, student_logits.shape, "student_logits.shape")
    require_same_devices("student_logits", student_logits, teacher_logits=teacher_logits, mask=mask)
    temperature = require_positive("temperature", temperature)
    require_choice("reduction", reduction, KD_REDUCTIONS)
    positions = student_logits.shape[:-1]
    if mask is None:
        counted = torch.ones(positions, dtype=torch.bool, device=student_logits.device)
    else:
        counted = require_mask("mask", mask, positions, "student_logits.shape[:-1]")
    student, teacher = _zero_uncounted(counted, student_logits, teacher_logits)
    # Both in the dtype the logits promote to, as F.kl_div's result: a float32 teacher is not rounded to a
    # bfloat16 student's dtype. Float32 from the logits on under autocast, the division too (the references
    # divide in the half dtype).
    dtype = promoted_under_autocast(student, teacher)
    student_log_probs = torch.log_softmax(student.to(dtype) / temperature, dim=-1)
    teacher_log_probs = torch.log_softmax(teacher.to(dtype) / temperature, dim=-1)
    return student_log_probs, teacher_log_probs, counted, temperature


def _zero_uncounted(counted: torch.Tensor, *rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each of ``rows`` (shape ``counted.shape + (n,)``) with its uncounted positions replaced by zeros.

    Done before any log-softmax: what a masked position held (even ``nan`` or
    ``inf``, e.g. a fully masked attention row) then reaches neither the value
    nor, through ``torch.where``, the gradient. Masking only the per-position
    loss afterwards is not enough, since the log-softmax's backward multiplies
    the zero gradient by ``exp(nan)``.
    """
    keep = counted.unsqueeze(-1)
    return tuple(torch.where(keep, row, torch.zeros_like(row)) for row in rows)


def _reduce(per_position: torch.Tensor, counted: torch.Tensor, reduction: str, caller: str) -> torch.Tensor:
    per_position = torch.where(counted, per_position, torch.zeros_like(per_position))
    if reduction == "none":
        return per_position
    if per_position.dim() == 0:
        per_position, counted = per_position.reshape(1), counted.reshape(1)
    return _reduce_batch(per_position, counted, reduction, caller=caller, stacklevel=4)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    reduction: str = "token_mean",
) -> torch.Tensor:
    """Distillation loss :math:`\\tau^2\\,\\mathrm{KL}(q^{(\\tau)} \\,\\|\\, p^{(\\tau)})` per position (Hinton et al. 2015).

    .. math::

        \\ell^{\\mathrm{KD}}_t = \\tau^2 \\sum_{k=1}^{V} q^{(\\tau)}_{t,k} \\big(\\log q^{(\\tau)}_{t,k} - \\log p^{(\\tau)}_{t,k}\\big),
        \\quad q^{(\\tau)}_t = \\operatorname{softmax}(z^{\\mathrm{T}}_t / \\tau),
        \\quad p^{(\\tau)}_t = \\operatorname{softmax}(z^{\\mathrm{S}}_t / \\tau)

    with :math:`q^{(\\tau)}` the teacher's distribution (the target) and
    :math:`p^{(\\tau)}` the student's (forward KL, teacher first). Classes with
    :math:`q^{(\\tau)}_{t,k} = 0`, such as a
    teacher logit of ``-inf`` (a masked vocabulary entry), contribute 0, and
    the gradient is the true derivative there too: 0 for that logit, finite
    everywhere else.
    It is :math:`\\ge 0` and 0 exactly when the student's softened distribution
    equals the teacher's. On 2-D input with ``"token_mean"`` and no ``mask`` it equals
    ``F.kl_div(log_softmax(s/T), log_softmax(t/T), log_target=True,
    reduction="batchmean") * T**2`` where every logit is finite; where a
    teacher logit is ``-inf``, that expression gives ``nan`` (from
    ``0 * -inf``), and this gives the divergence, to which that entry
    contributes 0. Gradients flow into both arguments; detach
    the teacher if it must stay fixed.

    Args:
        student_logits: the student's scores :math:`z^{\\mathrm{S}}`.
        teacher_logits: the teacher's scores :math:`z^{\\mathrm{T}}`.
        temperature: :math:`\\tau > 0`.
        mask: True (or 1) on the positions that count, boolean or integer 0/1;
            ``None`` counts all.
        reduction: ``"token_mean"``, ``"sequence_mean"``, ``"sum"`` (as in
            :func:`batch_loss`, the last non-vocabulary axis being time) or
            ``"none"`` (per position, 0 where masked).

    Returns:
        A scalar, or shape ``student_logits.shape[:-1]`` for ``"none"``, in
        the dtype the two logits tensors promote to (``torch.result_type``),
        as ``F.kl_div``'s result: a bfloat16 student with a float32 teacher
        gives float32, float32 with float64 gives float64. Both log-softmaxes
        are computed in that dtype (the ``F.kl_div`` expression takes the
        student's in its own dtype, so coursekit's value is the closer to the
        float64 one). Float32 under ``torch.autocast`` for half-precision
        logits (float64 stays float64), from the logits on, division by
        ``temperature`` and log-softmax included, on every device. The ``F.kl_div`` expression
        above computes the same under CUDA autocast for ``temperature=1``;
        otherwise its ``student_logits / temperature`` stays in the autocast
        dtype (and under CPU autocast its ``F.log_softmax`` too), and
        coursekit's value is the closer to the float64 one (see
        "Mixed precision" in :mod:`coursekit.losses`).
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
        differ by a few units in the last place (2 in bfloat16 for 10 positions
        of 64 entries).

    Shapes:
        student_logits, teacher_logits: ``(..., V)``; mask: ``(...)``;
        result: ``()`` or ``(...)``.

    Raises:
        TypeError: logits not float, ``mask`` neither boolean nor integer, ``temperature`` not a number.
            ``reduction`` not a str.
        ValueError: mismatched shapes, logits with no vocabulary axis or an empty one (``V = 0``),
            ``temperature`` not a finite number > 0, unknown ``reduction``. A ``mask`` holding a value other than 0 and 1 (checked where values are read;
            see :mod:`coursekit.losses`). Tensor arguments on two devices.

    Example:
        >>> teacher = torch.tensor([[2.0, 0.0, 0.0]])
        >>> kd_loss(teacher.clone(), teacher, temperature=2.0)      # a perfect student
        tensor(0.)
        >>> kd_loss(torch.zeros(1, 3), teacher, temperature=1.0)
        tensor(0.4330)
    """
    student_log_probs, teacher_log_probs, counted, temperature = _prepare(
        student_logits, teacher_logits, temperature, mask, reduction
    )
    teacher_probs = teacher_log_probs.exp()
    # Where the teacher's probability q is 0 the term is 0. Both logs are replaced by 0 there *before* the
    # product: 0 * (-inf) would be nan in the value, and a product taken first
    # and masked after would still send 0 * (-inf) = nan back through its
    # gradient (a teacher logit of -inf, a masked vocabulary entry).
    support = teacher_probs > 0
    zeros = torch.zeros_like(teacher_log_probs)
    log_ratio = torch.where(support, teacher_log_probs, zeros) - torch.where(support, student_log_probs, zeros)
    per_position = (teacher_probs * log_ratio).sum(dim=-1) * temperature**2
    return _reduce(per_position, counted, reduction, "kd_loss")


def kd_cross_entropy(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    reduction: str = "token_mean",
) -> torch.Tensor:
    """Cross-entropy of the student against the teacher's soft targets, no :math:`\\tau^2`.

    .. math:: \\ell^{\\mathrm{CE}}_t = -\\sum_{k=1}^{V} q^{(\\tau)}_{t,k} \\log p^{(\\tau)}_{t,k}
              = H(q^{(\\tau)}_t) + \\mathrm{KL}(q^{(\\tau)}_t \\,\\|\\, p^{(\\tau)}_t)

    with the teacher's :math:`q^{(\\tau)}` and the student's :math:`p^{(\\tau)}` as in
    :func:`kd_loss`. It differs from ``kd_loss / tau**2`` by the teacher's
    entropy :math:`H(q^{(\\tau)}_t)`, a constant for the student, so the
    student's gradients agree with those of ``kd_loss / tau**2`` but the value
    is never 0 unless the teacher is one-hot. Where every logit is finite and the
    input is 2-D, ``(N, V)``, it equals ``F.cross_entropy(student_logits / tau,
    F.softmax(teacher_logits / tau, dim=-1))`` per position (PyTorch reads the
    classes from dimension 1, so a ``(B, T, V)`` input must be flattened to
    ``(B * T, V)`` first: unflattened, that expression runs and is wrong); where a vocabulary entry is ``-inf`` for both
    (a banned or padding token), that expression gives ``nan`` (from
    ``0 * -inf``), and this gives the cross-entropy, to which that entry
    contributes 0, with finite gradients.

    Args:
        student_logits: the student's scores :math:`z^{\\mathrm{S}}`.
        teacher_logits: the teacher's scores :math:`z^{\\mathrm{T}}`.
        temperature: :math:`\\tau > 0`.
        mask: True (or 1) on the positions that count, boolean or integer 0/1;
            ``None`` counts all.
        reduction: ``"token_mean"``, ``"sequence_mean"``, ``"sum"`` or ``"none"``.

    Returns:
        A scalar, or shape ``student_logits.shape[:-1]`` for ``"none"``, in
        the dtype the two logits tensors promote to (``torch.result_type``),
        both log-softmaxes computed in it: a bfloat16 student with a float32
        teacher gives float32, as ``F.cross_entropy`` of the two gives it.
        Float32 under ``torch.autocast`` for half-precision logits (float64
        stays float64), from the logits on, division by ``temperature``
        included. ``F.cross_entropy(student_logits / temperature,
        F.softmax(teacher_logits / temperature, dim=-1))`` differs under autocast:
        its divisions stay in the autocast dtype (exact for
        ``temperature=1``), under CPU autocast its ``F.softmax`` targets too,
        and under CUDA autocast, for half-precision student logits, its
        log-probabilities too, at every temperature; coursekit's value is the closer to the float64 one
        (see "Mixed precision" in :mod:`coursekit.losses`).
        The means (``"token_mean"``, ``"sequence_mean"``) count positions in
        float32 or wider, which holds every count up to 2**24 exactly, and round the
        quotient once to that dtype, as PyTorch divides a half-precision sum
        by an integer count (``F.cross_entropy``'s soft-target ``"mean"``
        divides by the number of positions): counts that float16 would
        round (above 2048) or make ``inf`` (from 65520), or bfloat16 round
        (above 256), are exact here too. The sum itself is taken in that
        dtype, as ``F.cross_entropy``'s: a float16 total of 65520 or more (what
        float16 rounds to ``inf``) is ``inf`` in both.

    Shapes:
        student_logits, teacher_logits: ``(..., V)``; mask: ``(...)``;
        result: ``()`` or ``(...)``.

    Raises:
        TypeError: logits not float, ``mask`` neither boolean nor integer, ``temperature`` not a number.
            ``reduction`` not a str.
        ValueError: mismatched shapes, logits with no vocabulary axis or an empty one (``V = 0``),
            ``temperature`` not a finite number > 0, unknown ``reduction``. A ``mask`` holding a value other than 0 and 1 (checked where values are read;
            see :mod:`coursekit.losses`). Tensor arguments on two devices.

    Example:
        >>> uniform = torch.zeros(1, 4)
        >>> kd_cross_entropy(uniform, uniform)          # H(uniform over 4) = ln 4
        tensor(1.3863)
    """
    student_log_probs, teacher_log_probs, counted, _ = _prepare(
        student_logits, teacher_logits, temperature, mask, reduction
    )
    teacher_probs = teacher_log_probs.exp()
    # As in kd_loss: a student log-probability of -inf where p = 0 is replaced
    # before the product, so neither value nor gradient sees 0 * (-inf).
    safe_student = torch.where(teacher_probs > 0, student_log_probs, torch.zeros_like(student_log_probs))
    return _reduce(-(teacher_probs * safe_student).sum(dim=-1), counted, reduction, "kd_cross_entropy")
