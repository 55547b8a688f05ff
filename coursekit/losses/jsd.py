"""The generalised Jensen-Shannon divergence of on-policy distillation (Agarwal et al. 2024).

GKD measures, at every position, a divergence between the teacher's
next-token distribution :math:`q` and the student's :math:`p` that
interpolates between the two directions of the KL divergence: with
:math:`m = \\lambda q + (1-\\lambda) p`,

.. math::

    \\operatorname{JSD}_{\\lambda}(q \\,\\|\\, p) = \\lambda\\, \\mathrm{KL}(q \\,\\|\\, m)
    + (1-\\lambda)\\, \\mathrm{KL}(p \\,\\|\\, m),

and, by convention (TRL's ``generalized_jsd_loss``, where :math:`\\lambda` is ``beta``),
the forward divergence :math:`\\mathrm{KL}(q \\,\\|\\, p)` at :math:`\\lambda = 0` and the
reverse one :math:`\\mathrm{KL}(p \\,\\|\\, q)` at :math:`\\lambda = 1` (the limits of the
formula itself are 0; scaled by :math:`1/\\lambda` or :math:`1/(1-\\lambda)` they tend to
these divergences). :math:`\\lambda = 1/2` is the Jensen-Shannon divergence.
"""

from __future__ import annotations

import math

import torch

from coursekit.losses._checks import REAL_NUMBER_KINDS, require_in_interval
from coursekit.losses.distillation import _prepare, _reduce


def _kl(left_log: torch.Tensor, right_log: torch.Tensor) -> torch.Tensor:
    """KL(left || right) over the last axis from log-probabilities; entries with left = 0 contribute 0.

    ``left = 0`` is tested on the probability, as in :func:`kd_loss`: a finite
    log-probability whose exponential underflows (a logit of -200 in float32)
    against a right-hand ``-inf`` would otherwise give ``0 * inf = nan``.
    """
    support = left_log.exp() > 0
    zeros = torch.zeros_like(left_log)
    terms = left_log.exp() * (torch.where(support, left_log, zeros) - torch.where(support, right_log, zeros))
    return terms.sum(dim=-1)


def _log_mixture(log_q: torch.Tensor, log_p: torch.Tensor, beta: float) -> torch.Tensor:
    """:math:`\\log(\\lambda q + (1-\\lambda) p)` for ``0 < beta < 1``, with a finite gradient everywhere.

    Where both ``log_q`` and ``log_p`` are ``-inf`` (a vocabulary entry masked
    for student and teacher alike) ``torch.logsumexp``'s backward computes
    ``0 * exp(-inf - (-inf)) = nan``, which ``log_softmax`` then spreads over
    the whole row. There the mixture is taken of zeros instead and set to
    ``-inf`` after; :func:`_kl` sends no gradient to those entries.
    """
    either = (log_q > -math.inf) | (log_p > -math.inf)
    zeros = torch.zeros_like(log_q)
    safe_q = torch.where(either, log_q, zeros)
    safe_p = torch.where(either, log_p, zeros)
    log_m = torch.logsumexp(torch.stack([safe_q + math.log(beta), safe_p + math.log1p(-beta)]), dim=0)
    return torch.where(either, log_m, torch.full_like(log_m, -math.inf))


def generalized_jsd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    beta: float = 0.5,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    reduction: str = "token_mean",
) -> torch.Tensor:
    """Generalised JSD between the teacher's and the student's tempered distributions, per position.

    With :math:`q = \\operatorname{softmax}(z^{\\mathrm{T}}/\\tau)`, :math:`p = \\operatorname{softmax}(z^{\\mathrm{S}}/\\tau)` and
    :math:`\\lambda` = ``beta``:

    * ``beta = 0``: :math:`\\mathrm{KL}(q \\,\\|\\, p)`, the forward divergence of word-level KD
      (:func:`kd_loss` without its :math:`\\tau^2`);
    * ``beta = 1``: :math:`\\mathrm{KL}(p \\,\\|\\, q)`, the reverse divergence;
    * otherwise :math:`\\lambda\\,\\mathrm{KL}(q \\,\\|\\, m) + (1-\\lambda)\\,\\mathrm{KL}(p \\,\\|\\, m)` with
      :math:`m = \\lambda q + (1-\\lambda) p`.

    These are the values of TRL's ``GKDTrainer.generalized_jsd_loss`` (``trl.experimental.gkd``
    in TRL 1.16) per position (no
    :math:`\\tau^2` factor) where every logit is finite. A logit of ``-inf``
    (a masked vocabulary entry) is a probability of 0. Where it lies in a
    distribution that weights a KL term (the teacher at ``beta = 0``, the
    student at ``beta = 1``, either one in between), TRL's ``F.kl_div`` with
    ``log_target=True`` gives ``nan`` (from ``0 * -inf``), and this gives the
    divergence, in which a term weighted by a probability of 0 is 0. Where it
    lies only in the other distribution (the student at ``beta = 0``, the
    teacher at ``beta = 1``), the divergence is infinite, and both give ``inf``.
    Gradients flow into both arguments; detach the teacher.

    The reductions differ from TRL's. Its default ``"batchmean"`` equals
    ``"token_mean"`` here only when it is given ``labels`` (it then divides by
    the positions whose label is not -100); without ``labels`` it divides the
    sum by the size of the first axis (the batch), not by the positions. Its
    ``"mean"`` averages over the vocabulary entries too (positions times
    :math:`V`). Given ``num_items_in_batch`` (as ``GKDTrainer.compute_loss``
    passes it), it divides the sum by that count whatever the reduction:
    ``reduction="sum"`` here divided by the same count. Any other reduction
    string returns TRL's unreduced tensor, which keeps the vocabulary axis
    (and, given ``labels``, only the counted positions): summed over that
    axis, it is ``"none"`` here at the counted positions.

    Args:
        student_logits: the student's scores :math:`z^{\\mathrm{S}}`.
        teacher_logits: the teacher's scores :math:`z^{\\mathrm{T}}`.
        beta: :math:`\\lambda \\in [0, 1]`.
        temperature: :math:`\\tau > 0`, applied to both.
        mask: boolean (or 0/1 integers), True on the positions that count; ``None`` counts all.
        reduction: ``"token_mean"``, ``"sequence_mean"``, ``"sum"`` (as :func:`batch_loss`, the last
            non-vocabulary axis being time) or ``"none"`` (per position, 0 where masked).

    Returns:
        A scalar, or shape ``student_logits.shape[:-1]`` for ``"none"``, in
        the dtype the two logits tensors promote to (``torch.result_type``),
        as TRL's ``F.kl_div`` lines give it: a bfloat16 student with a float32
        teacher gives float32, both log-softmaxes computed in float32 (TRL's
        takes the student's in bfloat16). Float32 under ``torch.autocast``
        for half-precision logits (float64 stays float64), from the logits
        on, division by ``temperature`` and log-softmax included, on every
        device. TRL's ``generalized_jsd_loss``
        computes the same under CUDA autocast for ``temperature=1``; otherwise
        its ``logits / temperature`` stays in the autocast dtype (and under CPU
        autocast its ``F.log_softmax`` too, only its ``F.kl_div`` running in
        float32), and coursekit's value is the closer to the float64 one (see
        "Mixed precision" in :mod:`coursekit.losses`). For ``0 < beta < 1`` TRL also rounds
        ``beta`` to its student log-probabilities' dtype
        (``torch.tensor(beta, dtype=student_log_probs.dtype)``): a bfloat16
        student outside CUDA autocast gets the divergence at 0.8984 for 0.9,
        about 1 % off at that value; this uses ``beta`` as given.
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
        student_logits, teacher_logits: ``(..., V)``; mask: ``(...)``; result: ``()`` or ``(...)``.

    Raises:
        TypeError: logits not float, ``mask`` neither boolean nor integer, ``beta`` or ``temperature`` not a number.
            ``reduction`` not a str.
        ValueError: mismatched shapes, logits with no vocabulary axis or an empty one (``V = 0``), ``beta`` outside ``[0, 1]`` (an int beyond the float range included), ``temperature`` not a finite number > 0, unknown ``reduction``.
            A ``mask`` holding a value other than 0 and 1 (checked where values are read;
            see :mod:`coursekit.losses`). Tensor arguments on two devices.

    Example:
        >>> teacher = torch.tensor([[2.0, 0.0, 0.0]])
        >>> student = torch.zeros(1, 3)
        >>> forward = generalized_jsd(student, teacher, beta=0.0)     # KL(q || p)
        >>> reverse = generalized_jsd(student, teacher, beta=1.0)     # KL(p || q)
        >>> round(float(forward), 4), round(float(reverse), 4)
        (0.433, 0.4743)
        >>> round(float(generalized_jsd(teacher.clone(), teacher, beta=0.5)), 6)  # equal distributions
        0.0
    """
    beta = require_in_interval("beta", beta, 0, 1, closed=True, type_expected=f"a real number in [0, 1] ({REAL_NUMBER_KINDS})")
    # the same validation and masking as kd_loss: masked positions are uniform on both sides
    log_p, log_q, counted, _ = _prepare(student_logits, teacher_logits, temperature, mask, reduction)
    if beta == 0.0:
        per_position = _kl(log_q, log_p)
    elif beta == 1.0:
        per_position = _kl(log_p, log_q)
    else:
        log_m = _log_mixture(log_q, log_p, beta)
        per_position = beta * _kl(log_q, log_m) + (1.0 - beta) * _kl(log_p, log_m)
    return _reduce(per_position, counted, reduction, "generalized_jsd")
