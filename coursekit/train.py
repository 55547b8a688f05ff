"""The one training loop, and the objectives that plug into it.

:func:`train` runs any model on any batches with any objective. An objective is
a callable ``objective(model, batch) -> Objective`` that returns the *summed*
loss of the micro-batch and the count it should be normalised by (usually the
number of target tokens). Gradient accumulation then normalises by the total
count of the whole accumulated batch,

.. math::

    L = \\frac{\\sum_{m} S_m}{\\sum_{m} n_m} \\quad\\text{not}\\quad
    \\frac{1}{M}\\sum_m \\frac{S_m}{n_m},

so accumulating ``M`` micro-batches gives exactly the gradient of one large batch
(micro-batch 1 with token losses [2, 2] and micro-batch 2 with eight losses of 1
give 12 / 10 = 1.2, not (2 + 1) / 2 = 1.5).

Ready-made objectives: :func:`lm_objective`, :func:`seq2seq_objective`,
:func:`label_smoothing_objective`, :func:`z_loss_objective` (PaLM's z-loss),
:func:`word_kd_objective` (token-level knowledge distillation), :class:`ScheduledSamplingObjective`,
:func:`ctc_objective`, :func:`mrt_objective`, :func:`reinforce_objective`, :func:`preference_objective`
(DPO and SimPO on pairs of batches), :class:`TBPTTObjective` (truncated backpropagation through time),
:class:`TBPTTWindowObjective` (TBPTT with separate cut and look-back lengths,
optionally resetting the state at document boundaries) and
:func:`on_policy_kd_objective` (distillation on the student's own outputs).
:func:`sample_group` and :func:`token_log_probs` give GRPO's groups of sampled
responses and their per-token log-probabilities. Sequence-level distillation needs
no objective of its own: train with :func:`seq2seq_objective` on the teacher's
outputs (:mod:`coursekit.models.distillation`).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from coursekit.data._checks import require_int, require_number, require_one_of, require_probability, require_seed
from coursekit.data.batching import LMBatch, Seq2SeqBatch, TBPTTWindow, seq2seq_batch
from coursekit.data.vocab import EOS_ID
from coursekit.losses import (
    batch_loss,
    dpo_loss,
    dpo_rewards,
    generalized_jsd,
    kd_loss,
    label_smoothed_nll,
    mrt_risk,
    reinforce_loss,
    simpo_loss,
    token_nll,
    z_loss,
)
from coursekit.models.rnn import detach_hidden
from coursekit.data.frames import FRAME_BLANK, FrameBatch
from coursekit.losses.ctc import ctc_loss
from coursekit.losses.risk import leave_one_out_baseline
from coursekit.losses.smoothing import DEPRECATED_VARIANTS, SMOOTHING_VARIANTS, _require_epsilon
from coursekit.losses._checks import require_choice


class Objective(NamedTuple):
    """An objective's answer for one micro-batch.

    Attributes:
        loss_sum: the summed loss (a scalar tensor with a graph).
        count: what the sum is normalised by (tokens, or sequences for sequence-level losses).
    """

    loss_sum: torch.Tensor
    count: float


ObjectiveFn = Callable[[nn.Module, Any], Objective]


@dataclass
class History:
    """What a training run records, for the book's plots.

    Attributes:
        step_loss: normalised loss of every optimiser step (after accumulation).
        step_count: tokens (or sequences) behind each step.
        grad_norm: gradient norm before clipping, per step.
        epoch_loss: normalised training loss of every epoch.
        valid: the ``evaluate`` callback's value after every epoch (empty without one).
        seconds: wall-clock time of the whole run.
    """

    step_loss: list[float] = field(default_factory=list)
    step_count: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=list)
    valid: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """Plain data (for JSON or a checkpoint's metadata)."""
        return {"step_loss": list(self.step_loss), "step_count": list(self.step_count),
                "grad_norm": list(self.grad_norm), "epoch_loss": list(self.epoch_loss),
                "valid": list(self.valid), "seconds": self.seconds}


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's CPU random state seeded, restoring the caller's state afterwards.

    Example:
        >>> with seeded(0):
        ...     a = torch.rand(2)
        >>> with seeded(0):
        ...     b = torch.rand(2)
        >>> torch.equal(a, b)
        True
    """
    require_seed("seed", seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def progress_enabled(progress: bool | None) -> bool:
    """Whether to draw the progress bar: explicit choice, else only on a terminal outside CI."""
    if progress is not None:
        return bool(progress)
    if os.environ.get("CI", "").lower() == "true":
        return False
    return sys.stderr.isatty()


def train(
    model: nn.Module,
    batches: Sequence[Any] | Callable[[int], Iterable[Any]],
    objective: ObjectiveFn,
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    optimizer: torch.optim.Optimizer | None = None,
    accumulation_steps: int = 1,
    clip_norm: float | None = 1.0,
    seed: int = 0,
    evaluate: Callable[[nn.Module], float] | None = None,
    progress: bool | None = None,
) -> History:
    """Train ``model`` in place and return its :class:`History`.

    Args:
        model: any ``nn.Module``.
        batches: a sequence of batches reused every epoch, or ``batches(epoch)`` returning
            the epoch's batches (to reshuffle).
        objective: ``objective(model, batch) -> Objective(loss_sum, count)``; if it has a
            ``reset()`` method, that is called at the start of every epoch.
        epochs: passes over the data.
        lr: learning rate of the default Adam optimiser (ignored if ``optimizer`` is given).
        optimizer: an optimiser over ``model``'s parameters.
        accumulation_steps: micro-batches per optimiser step; the gradient is that of
            (sum of their losses) / (sum of their counts).
        clip_norm: clip the total gradient norm to this finite value; ``None`` (not ``inf``, which
            is refused) means no clipping.
        seed: seeds torch's random state for the run (dropout, sampling objectives);
            the caller's global state is restored afterwards.
        evaluate: called with the model (in eval mode, no grad) after every epoch.
        progress: draw a tqdm bar; ``None`` means only on a terminal and not under ``CI=true``.

    Returns:
        The run's :class:`History`.

    Raises:
        ValueError: ``epochs < 1``, ``accumulation_steps < 1``, ``lr``/``clip_norm`` <= 0 or not
            finite, a negative seed, an epoch without batches, or an objective count <= 0.

    Example:
        >>> from coursekit.data import lm_batch
        >>> from coursekit.models import RNNLM
        >>> with seeded(0):
        ...     model = RNNLM(vocab_size=8, embed_dim=8, hidden_size=8)
        >>> data = [lm_batch([[4, 5, 6], [7, 4]])]
        >>> history = train(model, data, lm_objective(), epochs=20, lr=0.05, seed=0)
        >>> history.epoch_loss[-1] < history.epoch_loss[0]
        True
    """
    epochs = require_int("epochs", epochs, minimum=1)
    accumulation_steps = require_int("accumulation_steps", accumulation_steps, minimum=1)
    require_seed("seed", seed)
    if clip_norm is not None:
        clip_norm = require_number("clip_norm", clip_norm, low=0.0, low_inclusive=False)
    if optimizer is None:
        lr = require_number("lr", lr, low=0.0, low_inclusive=False)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    history = History()
    start = time.perf_counter()
    with seeded(seed):
        for epoch in range(epochs):
            epoch_batches = list(batches(epoch) if callable(batches) else batches)
            if not epoch_batches:
                raise ValueError(f"batches must yield at least one batch per epoch, got none in epoch {epoch}")
            if hasattr(objective, "reset"):
                objective.reset()
            model.train()
            optimizer.zero_grad(set_to_none=True)
            pending_loss, pending_count, pending_micro = 0.0, 0.0, 0
            epoch_loss, epoch_count = 0.0, 0.0
            bar = tqdm(epoch_batches, desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                       disable=not progress_enabled(progress))
            for index, batch in enumerate(bar):
                out = objective(model, batch)
                count = float(out.count)
                if not count > 0:
                    raise ValueError(f"objective returned count={count} for batch {index}; expected > 0")
                out.loss_sum.backward()
                pending_loss += float(out.loss_sum.detach())
                pending_count += count
                pending_micro += 1
                if pending_micro == accumulation_steps or index == len(epoch_batches) - 1:
                    for p in params:
                        if p.grad is not None:
                            p.grad.div_(pending_count)
                    norm = _grad_norm(params) if clip_norm is None else \
                        float(torch.nn.utils.clip_grad_norm_(params, clip_norm))
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    history.step_loss.append(pending_loss / pending_count)
                    history.step_count.append(pending_count)
                    history.grad_norm.append(norm)
                    epoch_loss += pending_loss
                    epoch_count += pending_count
                    bar.set_postfix(loss=f"{pending_loss / pending_count:.4f}")
                    pending_loss, pending_count, pending_micro = 0.0, 0.0, 0
            history.epoch_loss.append(epoch_loss / epoch_count)
            if evaluate is not None:
                model.eval()
                with torch.no_grad():
                    history.valid.append(float(evaluate(model)))
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


def _grad_norm(params: Sequence[torch.Tensor]) -> float:
    squares = [float(p.grad.detach().pow(2).sum()) for p in params if p.grad is not None]
    return math.sqrt(math.fsum(squares))


def _masked_targets(targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return targets.masked_fill(~mask, -100)


def _logits(model: nn.Module, batch: LMBatch | Seq2SeqBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher-forced logits, targets and mask of an LM or a translation batch."""
    if isinstance(batch, LMBatch):
        logits, _ = model(batch.inputs)
        return logits, batch.targets, batch.mask
    if isinstance(batch, Seq2SeqBatch):
        return model(batch.src, batch.src_lengths, batch.tgt_in), batch.tgt_out, batch.tgt_mask
    raise TypeError(f"batch must be an LMBatch or a Seq2SeqBatch, got {type(batch).__name__}")


def lm_objective() -> ObjectiveFn:
    """Token-level NLL of an :class:`~coursekit.data.LMBatch` (or a translation batch), normalised per token."""

    def objective(model: nn.Module, batch: LMBatch | Seq2SeqBatch) -> Objective:
        logits, targets, mask = _logits(model, batch)
        losses = token_nll(logits, targets)
        return Objective(batch_loss(losses, mask, reduction="sum"), float(mask.sum()))

    return objective


#: token-level NLL of a translation batch (the same computation as :func:`lm_objective`)
seq2seq_objective = lm_objective


def label_smoothing_objective(epsilon: float, *, variant: str = "pytorch") -> ObjectiveFn:
    """Label-smoothed NLL (:func:`coursekit.losses.label_smoothed_nll`), normalised per token.

    Both arguments are checked here, when the objective is built, with the loss's own checks, so a
    bad one fails before training starts rather than at the first batch.

    Raises:
        TypeError: ``epsilon`` not a real number (or a 0-d real tensor); ``variant`` not a str.
        ValueError: ``epsilon`` outside ``[0, 1)`` or not finite; an unknown ``variant``.
    """
    epsilon = _require_epsilon(epsilon)
    # a deprecated spelling is left to the loss, which warns about it where it is used
    if not (isinstance(variant, str) and variant in DEPRECATED_VARIANTS):
        require_choice("variant", variant, SMOOTHING_VARIANTS)

    def objective(model: nn.Module, batch: LMBatch | Seq2SeqBatch) -> Objective:
        logits, targets, mask = _logits(model, batch)
        loss = label_smoothed_nll(logits, _masked_targets(targets, mask), epsilon, reduction="sum", variant=variant)
        return Objective(loss, float(mask.sum()))

    return objective


def z_loss_objective(weight: float) -> ObjectiveFn:
    """Token-level NLL plus ``weight`` times the z-loss of every counted token, normalised per token.

    .. math::

        \\ell_t + \\lambda_z (\\log Z_t)^2, \\qquad Z_t = \\sum_k e^{z_{t,k}},

    PaLM's auxiliary loss (:func:`coursekit.losses.z_loss`), whose weight there is
    :math:`\\lambda_z = 10^{-4}`. ``weight=0`` is :func:`lm_objective`.

    Raises:
        ValueError: ``weight`` is negative or not finite.

    Example:
        >>> from coursekit.data import lm_batch
        >>> from coursekit.models import RNNLM
        >>> with seeded(0):
        ...     model = RNNLM(vocab_size=8, embed_dim=8, hidden_size=8)
        >>> batch = lm_batch([[4, 5, 6]])
        >>> plain, penalised = lm_objective()(model, batch), z_loss_objective(0.5)(model, batch)
        >>> bool(penalised.loss_sum > plain.loss_sum), penalised.count == plain.count
        (True, True)
    """
    weight = require_number("weight", weight, low=0.0)

    def objective(model: nn.Module, batch: LMBatch | Seq2SeqBatch) -> Objective:
        logits, targets, mask = _logits(model, batch)
        losses = token_nll(logits, targets) + weight * z_loss(logits).to(logits.dtype)
        return Objective(batch_loss(losses, mask, reduction="sum"), float(mask.sum()))

    return objective


def word_kd_objective(teacher: nn.Module, *, temperature: float = 1.0, alpha: float = 0.5) -> ObjectiveFn:
    """Word-level distillation: ``alpha * kd_loss(student, teacher) + (1 - alpha) * NLL``, per token.

    The teacher runs in eval mode without gradients on the same batch.

    Raises:
        TypeError: ``temperature`` or ``alpha`` not a real number.
        ValueError: ``temperature <= 0``, ``alpha`` outside ``[0, 1]``, either of them not finite.
    """
    temperature = require_number("temperature", temperature, low=0.0, low_inclusive=False)
    alpha = require_probability("alpha", alpha)
    teacher.eval()

    def objective(model: nn.Module, batch: LMBatch | Seq2SeqBatch) -> Objective:
        logits, targets, mask = _logits(model, batch)
        with torch.no_grad():
            teacher_logits, _, _ = _logits(teacher, batch)
        kd = kd_loss(logits, teacher_logits, temperature=temperature, mask=mask, reduction="sum")
        nll = batch_loss(token_nll(logits, targets), mask, reduction="sum")
        return Objective(alpha * kd + (1 - alpha) * nll, float(mask.sum()))

    return objective


def inverse_sigmoid_schedule(k: float) -> Callable[[int], float]:
    """Bengio et al.'s (2015) inverse sigmoid decay: :math:`\\psi_i = \\chi / (\\chi + e^{i / \\chi})` at step :math:`i`.

    :math:`\\psi_i`, the probability of reading the reference token, starts just below
    1 and falls to 1/2 at step :math:`\\chi \\ln \\chi`; a larger decay constant
    :math:`\\chi \\ge 1` (``k``, as in the paper) decays more slowly.

    Args:
        k: the decay constant :math:`\\chi`.

    Returns:
        ``schedule(i)``, the probability :math:`\\psi_i` at step ``i`` (counted from 0).

    Raises:
        ValueError: ``k < 1`` or not finite.

    Example:
        >>> schedule = inverse_sigmoid_schedule(10.0)
        >>> round(schedule(0), 3), round(schedule(23), 3), round(schedule(60), 3)
        (0.909, 0.501, 0.024)
    """
    k = require_number("k", k, low=1.0)

    def teacher_prob(step: int) -> float:
        # exp overflows past step ~ 709 k; the probability is 0 there to double precision anyway
        exponent = step / k
        return k / (k + math.exp(exponent)) if exponent < 700 else 0.0

    return teacher_prob


class ScheduledSamplingObjective:
    """Token-level NLL under scheduled sampling (Bengio et al. 2015), normalised per token.

    At its ``i``-th call (one per micro-batch, counted from 0 and never reset), the decoder
    reads each reference token with probability ``schedule(i)`` and otherwise its own sample
    (:meth:`coursekit.models.Seq2Seq.forward_scheduled`); the loss is the NLL of the reference
    tokens under those logits.

    Args:
        schedule: ``schedule(i) -> probability of reading the reference`` (e.g.
            :func:`inverse_sigmoid_schedule`), or a constant probability.
        seed: seeds the coin flips and the samples.

    Attributes:
        teacher_probs: the probability used at every call so far.

    Raises:
        ValueError: a constant ``schedule`` that is negative or not finite.
    """

    def __init__(self, schedule: Callable[[int], float] | float, *, seed: int = 0) -> None:
        if callable(schedule):
            self.schedule = schedule
        else:
            constant = require_number("schedule", schedule, low=0.0)
            self.schedule = lambda step: constant
        self.generator = torch.Generator().manual_seed(require_seed("seed", seed))
        self.teacher_probs: list[float] = []

    def __call__(self, model: nn.Module, batch: Seq2SeqBatch) -> Objective:
        teacher_prob = float(self.schedule(len(self.teacher_probs)))
        self.teacher_probs.append(teacher_prob)
        logits = model.forward_scheduled(batch.src, batch.src_lengths, batch.tgt_in, teacher_prob=teacher_prob,
                                         generator=self.generator)
        losses = token_nll(logits, batch.tgt_out)
        return Objective(batch_loss(losses, batch.tgt_mask, reduction="sum"), float(batch.tgt_mask.sum()))


def ctc_objective(*, blank: int = FRAME_BLANK) -> ObjectiveFn:
    """CTC (:func:`coursekit.losses.ctc_loss`) of a :class:`~coursekit.data.FrameBatch`, normalised per label.

    The model maps ``(features, input_lengths)`` to ``(B, T, V)`` log-probabilities
    (:class:`~coursekit.models.CTCRecognizer`). The loss sum is that of the
    utterances' CTC losses; the count is the number of labels in the batch.
    """
    blank = require_int("blank", blank, minimum=0)

    def objective(model: nn.Module, batch: FrameBatch) -> Objective:
        log_probs = model(batch.features, batch.input_lengths).transpose(0, 1)     # (T, B, V), as ctc_loss reads
        loss = ctc_loss(log_probs, batch.targets, batch.input_lengths, batch.target_lengths, blank=blank,
                        reduction="sum")
        return Objective(loss, float(batch.target_lengths.sum()))

    return objective


def _sample_forced(model: nn.Module, batch: Seq2SeqBatch, num_samples: int, max_len: int,
                   generator: torch.Generator) -> tuple[list[list[int]], Seq2SeqBatch, torch.Tensor]:
    """Sample ``num_samples`` outputs per source; return them, their teacher-forced batch and its mask."""
    was_training = model.training
    model.eval()
    result = model.sample(batch.src, batch.src_lengths, num_samples=num_samples, max_len=max_len,
                          generator=generator)
    model.train(was_training)
    flat = [seq for outputs in result.sequences for seq in outputs]
    sources = [batch.src[b, : int(batch.src_lengths[b])].tolist() for b in range(batch.src.shape[0])
               for _ in range(num_samples)]
    # the teacher-forced batch scores each sample exactly, <eos> included when it was generated
    forced = seq2seq_batch([(src, _strip_eos(seq)) for src, seq in zip(sources, flat)])
    mask = forced.tgt_mask.clone()
    # an output cut at max_len has no <eos>: its last teacher-forced position must not be scored
    cut = torch.tensor([not (seq and seq[-1] == EOS_ID) for seq in flat])
    rows = torch.nonzero(cut).flatten()
    mask[rows, forced.tgt_lengths[rows] - 1] = False
    return flat, forced, mask


def _sampled_candidates(model: nn.Module, batch: Seq2SeqBatch, num_samples: int, max_len: int,
                        generator: torch.Generator) -> tuple[list[list[int]], torch.Tensor]:
    """Sample ``num_samples`` outputs per source, and their differentiable log-probabilities ``(B, K)``."""
    flat, forced, mask = _sample_forced(model, batch, num_samples, max_len, generator)
    log_probs = model.sequence_log_probs(forced.src, forced.src_lengths, forced.tgt_in, forced.tgt_out, mask)
    return flat, log_probs.view(-1, num_samples)


@dataclass(frozen=True)
class SampledGroup:
    """A group of sampled responses per source, ready to be scored token by token.

    Attributes:
        responses: the sampled token ids, ``<eos>`` removed; source ``b``'s samples are
            rows ``b * group_size`` to ``(b + 1) * group_size - 1``.
        batch: the teacher-forced batch of the responses (targets ``response <eos>``).
        mask: ``batch.tgt_mask`` without the last position of a response cut at ``max_len``
            (it has no ``<eos>`` to score).
        group_size: :math:`G`, responses per source.
    """

    responses: list[list[int]]
    batch: Seq2SeqBatch
    mask: torch.Tensor
    group_size: int


def sample_group(model: nn.Module, batch: Seq2SeqBatch, *, group_size: int, max_len: int = 20,
                 seed: int = 0) -> SampledGroup:
    """Sample ``group_size`` responses per source of ``batch`` from a translation model (GRPO's group).

    Raises:
        ValueError: ``group_size < 1``, ``max_len < 1`` or a negative seed.

    Example:
        >>> from coursekit.models import Seq2Seq
        >>> with seeded(0):
        ...     model = Seq2Seq(8, 8, embed_dim=4, hidden_size=8)
        >>> group = sample_group(model, seq2seq_batch([([4, 5], [6])]), group_size=3, max_len=4, seed=0)
        >>> len(group.responses), tuple(group.mask.shape)[0]
        (3, 3)
    """
    group_size = require_int("group_size", group_size, minimum=1)
    max_len = require_int("max_len", max_len, minimum=1)
    generator = torch.Generator().manual_seed(require_seed("seed", seed))
    flat, forced, mask = _sample_forced(model, batch, group_size, max_len, generator)
    return SampledGroup(responses=[_strip_eos(seq) for seq in flat], batch=forced, mask=mask, group_size=group_size)


def token_log_probs(model: nn.Module, group: SampledGroup) -> torch.Tensor:
    """:math:`\\log p_\\theta(o_{i,t} \\mid x, o_{i,<t})` of every token of a :class:`SampledGroup`, 0 where masked.

    Differentiable; call it under ``torch.no_grad()`` for the frozen old and reference policies.

    Shapes:
        result: ``(B * G, T)``, the shape of ``group.mask``.
    """
    batch = group.batch
    logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    return (-token_nll(logits, batch.tgt_out)).masked_fill(~group.mask, 0.0)


PREFERENCE_LOSSES = ("dpo", "simpo")


def preference_objective(reference: nn.Module | None, *, loss: str = "dpo", beta: float = 0.1, gamma: float = 0.5,
                         log: list[dict[str, float]] | None = None) -> ObjectiveFn:
    """DPO or SimPO on ``(chosen, rejected)`` pairs of translation batches, normalised per pair.

    Each batch is a tuple ``(chosen, rejected)`` of :class:`~coursekit.data.Seq2SeqBatch`
    with the same sources in the same order. The sequence log-probabilities are the
    teacher-forced sums over the response tokens (``<eos>`` included); DPO
    (:func:`coursekit.losses.dpo_loss`) compares them with those of the frozen
    ``reference``, SimPO (:func:`coursekit.losses.simpo_loss`) divides them by the
    response lengths and uses no reference.

    Args:
        reference: the frozen reference model for DPO (put in eval mode, never trained); ``None`` for SimPO.
        loss: ``"dpo"`` or ``"simpo"``.
        beta: :math:`\\beta > 0` of the chosen loss.
        gamma: SimPO's target margin :math:`\\gamma` (ignored by DPO).
        log: if given, every call appends the batch's mean implicit rewards of the chosen and
            the rejected responses (DPO: :math:`\\beta \\log p_\\theta / p_{\\text{ref}}`; SimPO:
            :math:`\\beta \\log p_\\theta / \\lvert y \\rvert`), their mean margin, the fraction
            of pairs whose chosen reward is the larger (``"accuracy"``) and the mean loss.

    Raises:
        ValueError: an unknown ``loss``, DPO without a reference, SimPO with one, ``beta <= 0``, or a
            ``beta`` or ``gamma`` that is not finite.

    Example:
        >>> import copy
        >>> from coursekit.models import Seq2Seq
        >>> with seeded(0):
        ...     model = Seq2Seq(8, 8, embed_dim=4, hidden_size=8)
        >>> pair = (seq2seq_batch([([4, 5], [6])]), seq2seq_batch([([4, 5], [7, 6])]))
        >>> out = preference_objective(copy.deepcopy(model))(model, pair)   # policy = reference: ln 2
        >>> round(out.loss_sum.item(), 4), out.count
        (0.6931, 1.0)
    """
    loss = require_one_of("loss", loss, PREFERENCE_LOSSES)
    beta = require_number("beta", beta, low=0.0, low_inclusive=False)
    gamma = require_number("gamma", gamma)
    if loss == "dpo" and reference is None:
        raise ValueError("loss='dpo' needs the frozen reference model, got reference=None")
    if loss == "simpo" and reference is not None:
        raise ValueError("loss='simpo' uses no reference model; pass reference=None")
    if reference is not None:
        reference.eval()

    def objective(model: nn.Module, batch: tuple[Seq2SeqBatch, Seq2SeqBatch]) -> Objective:
        chosen, rejected = batch
        chosen_logps, rejected_logps = _sequence_log_probs(model, chosen), _sequence_log_probs(model, rejected)
        if loss == "dpo":
            assert reference is not None
            with torch.no_grad():
                ref_chosen = _sequence_log_probs(reference, chosen)
                ref_rejected = _sequence_log_probs(reference, rejected)
            losses = dpo_loss(chosen_logps, rejected_logps, ref_chosen, ref_rejected, beta=beta, reduction="none")
            rewards = dpo_rewards(chosen_logps.detach(), rejected_logps.detach(), ref_chosen, ref_rejected, beta=beta)
            chosen_reward, rejected_reward = rewards.chosen, rewards.rejected
        else:
            chosen_len, rejected_len = chosen.tgt_mask.sum(dim=1), rejected.tgt_mask.sum(dim=1)
            losses = simpo_loss(chosen_logps, rejected_logps, chosen_len, rejected_len, beta=beta, gamma=gamma,
                                reduction="none")
            chosen_reward = beta * chosen_logps.detach() / chosen_len
            rejected_reward = beta * rejected_logps.detach() / rejected_len
        if log is not None:
            log.append({"chosen": float(chosen_reward.mean()), "rejected": float(rejected_reward.mean()),
                        "margin": float((chosen_reward - rejected_reward).mean()),
                        "accuracy": float((chosen_reward > rejected_reward).double().mean()),
                        "loss": float(losses.detach().mean())})
        return Objective(losses.sum(), float(losses.numel()))

    return objective


def _sequence_log_probs(model: nn.Module, batch: Seq2SeqBatch) -> torch.Tensor:
    return model.sequence_log_probs(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_mask)


def mrt_objective(cost: Callable[[list[int], list[int]], float], *, num_samples: int = 4, alpha: float = 1.0,
                  max_len: int = 20, seed: int = 0) -> ObjectiveFn:
    """Minimum risk training (:func:`coursekit.losses.mrt_risk`) over sampled candidate sets.

    Args:
        cost: ``cost(hypothesis ids, reference ids) -> float`` (both without ``<eos>``), e.g. 1 - exact match.
        num_samples: candidates per source.
        alpha: sharpness of the candidate distribution.
        max_len: longest candidate.
        seed: seeds the candidate sampler.

    The returned count is the number of sources (the risk is a mean over them).
    """
    num_samples = require_int("num_samples", num_samples, minimum=1)
    generator = torch.Generator().manual_seed(require_seed("seed", seed))

    def objective(model: nn.Module, batch: Seq2SeqBatch) -> Objective:
        flat, log_probs = _sampled_candidates(model, batch, num_samples, max_len, generator)
        costs = torch.tensor([cost(_strip_eos(seq), _reference(batch, i // num_samples))
                              for i, seq in enumerate(flat)], dtype=log_probs.dtype).view_as(log_probs)
        rows = log_probs.shape[0]
        return Objective(mrt_risk(log_probs, costs, alpha=alpha) * rows, float(rows))

    return objective


REINFORCE_BASELINES = ("batch_mean", "leave_one_out")


def reinforce_objective(reward: Callable[[list[int], list[int]], float], *, num_samples: int = 4,
                        max_len: int = 20, seed: int = 0, baseline: str = "batch_mean") -> ObjectiveFn:
    """REINFORCE (:func:`coursekit.losses.reinforce_loss`) over ``num_samples`` samples per source.

    Args:
        reward: ``reward(hypothesis ids, reference ids) -> float`` (both without ``<eos>``), higher is better.
        num_samples: samples per source.
        max_len: longest sample.
        seed: seeds the sampler.
        baseline: ``"batch_mean"``, the mean reward of all the batch's samples (one value for every
            sample), or ``"leave_one_out"``, for each sample the mean reward of the other samples of
            its own source (RLOO, :func:`coursekit.losses.leave_one_out_baseline`; needs
            ``num_samples >= 2``).

    The count is the number of sampled sequences.
    """
    num_samples = require_int("num_samples", num_samples, minimum=1)
    baseline = require_one_of("baseline", baseline, REINFORCE_BASELINES)
    if baseline == "leave_one_out" and num_samples < 2:
        raise ValueError(f"num_samples must be >= 2 for the leave-one-out baseline, got {num_samples}")
    generator = torch.Generator().manual_seed(require_seed("seed", seed))

    def objective(model: nn.Module, batch: Seq2SeqBatch) -> Objective:
        flat, log_probs = _sampled_candidates(model, batch, num_samples, max_len, generator)
        rewards = torch.tensor([reward(_strip_eos(seq), _reference(batch, i // num_samples))
                                for i, seq in enumerate(flat)], dtype=log_probs.dtype)
        n = rewards.numel()
        if baseline == "leave_one_out":
            values = leave_one_out_baseline(rewards.view(-1, num_samples)).flatten()
        else:
            values = rewards.mean()
        return Objective(reinforce_loss(log_probs.flatten(), rewards, baseline=values) * n, float(n))

    return objective


def _strip_eos(seq: list[int]) -> list[int]:
    return seq[:-1] if seq and seq[-1] == EOS_ID else list(seq)


def _reference(batch: Seq2SeqBatch, row: int) -> list[int]:
    return batch.tgt_out[row, : int(batch.tgt_lengths[row]) - 1].tolist()


class TBPTTObjective:
    """Truncated BPTT for a recurrent LM over ``(inputs, targets)`` chunks (:func:`coursekit.data.tbptt_chunks`).

    The hidden state is carried from one chunk to the next with its values, but
    detached, so gradients flow back at most one chunk. :func:`train` calls
    :meth:`reset` at every epoch start.
    """

    def __init__(self) -> None:
        self.hidden: Any = None

    def reset(self) -> None:
        """Forget the carried state (start of a new pass over the stream)."""
        self.hidden = None

    def __call__(self, model: nn.Module, chunk: tuple[torch.Tensor, torch.Tensor]) -> Objective:
        inputs, targets = chunk
        logits, hidden = model(inputs, detach_hidden(self.hidden))
        self.hidden = hidden
        return Objective(token_nll(logits, targets).sum(), float(targets.numel()))


class TBPTTWindowObjective:
    """TBPTT(T_step, T_bptt) for a recurrent LM over the windows of :func:`coursekit.data.tbptt_windows`.

    Each window is run from the carried state (detached, so the gradient stops at the window's
    start); only the window's scored targets count. The state ``carry`` steps into the window is
    kept, with its values, as the start state of the next window. With ``reset_id`` set, the
    state of a row is zeroed before every input equal to it (e.g. ``EOS_ID`` in a
    :func:`coursekit.data.token_stream`, where the end token of one sentence is the input that
    starts the next), so neither values nor gradients cross a document boundary.
    :func:`train` calls :meth:`reset` at every epoch start.

    Args:
        reset_id: the token before which the state starts afresh (``None``: always carry).

    Example:
        >>> from coursekit.data import tbptt_windows
        >>> from coursekit.models import RNNLM
        >>> with seeded(0):
        ...     model = RNNLM(vocab_size=8, embed_dim=4, hidden_size=4)
        >>> stream = torch.tensor([[4, 5, 2, 6, 7, 2, 4]])
        >>> objective = TBPTTWindowObjective(reset_id=2)
        >>> [objective(model, w).count for w in tbptt_windows(stream, 2, 4)]
        [2.0, 2.0, 2.0]
    """

    def __init__(self, *, reset_id: int | None = None) -> None:
        if reset_id is not None:
            reset_id = require_int("reset_id", reset_id, minimum=0)
        self.reset_id = reset_id
        self.hidden: Any = None

    def reset(self) -> None:
        """Forget the carried state (start of a new pass over the stream)."""
        self.hidden = None

    def _run(self, model: nn.Module, inputs: torch.Tensor, hidden: Any) -> tuple[torch.Tensor, Any]:
        if self.reset_id is None:
            return model(inputs, hidden)
        return model(inputs, hidden, reset=inputs == self.reset_id)

    def __call__(self, model: nn.Module, window: TBPTTWindow) -> Objective:
        inputs, targets, carry, score_from = window
        start = detach_hidden(self.hidden)
        if 0 < carry < inputs.shape[1]:
            head, carried = self._run(model, inputs[:, :carry], start)
            tail, _ = self._run(model, inputs[:, carry:], carried)
            logits = torch.cat([head, tail], dim=1)
        else:
            logits, final = self._run(model, inputs, start)
            carried = final if carry else start
        self.hidden = carried
        scored = targets[:, score_from:]
        return Objective(token_nll(logits[:, score_from:], scored).sum(), float(scored.numel()))


def on_policy_kd_objective(teacher: nn.Module, *, beta: float = 0.0, temperature: float = 1.0, sample: bool = True,
                           max_len: int = 20, seed: int = 0) -> ObjectiveFn:
    """Distillation on the student's own outputs: GKD with on-policy fraction 1 (Agarwal et al. 2024).

    For every source of a translation batch the student first generates an output, sampled at
    temperature 1 (``sample=True``) or greedy, without gradient. Student and teacher then read that
    output teacher-forced, and the loss at every generated position is the generalised JSD
    (:func:`coursekit.losses.generalized_jsd`) between the teacher's and the student's next-token
    distributions: ``beta=0`` the forward KL of word-level KD, ``beta=1`` the reverse KL. The
    positions are the student's own prefixes, so it is also taught what the teacher would do
    after the student's mistakes; word-level KD (:func:`word_kd_objective`) only ever sees the
    prefixes of the training targets. An output cut at ``max_len`` has no ``<eos>``, so its last
    teacher-forced position is not scored. The count is the number of scored positions.

    Args:
        teacher: the teacher, run in eval mode without gradients.
        beta: the interpolation :math:`\\lambda \\in [0, 1]` of the generalised JSD.
        temperature: :math:`\\tau` of both distributions in the divergence (not of the sampling).
        sample: sample the student's outputs (True) or decode them greedily.
        max_len: longest generated output.
        seed: seeds the sampler.

    Raises:
        ValueError: ``beta`` outside ``[0, 1]``, ``temperature <= 0``, either of them not finite,
            ``max_len < 1`` or a negative seed.
        TypeError: a batch that is not a :class:`~coursekit.data.Seq2SeqBatch` (at call time).

    Example:
        >>> from coursekit.data import seq2seq_batch
        >>> from coursekit.models import Seq2Seq
        >>> with seeded(0):
        ...     student, teacher = Seq2Seq(8, 6, embed_dim=4, hidden_size=4), Seq2Seq(8, 6, embed_dim=4, hidden_size=4)
        >>> batch = seq2seq_batch([([4, 5], [3]), ([6], [4, 5])])
        >>> out = on_policy_kd_objective(teacher, beta=1.0, max_len=3)(student, batch)
        >>> bool(out.loss_sum >= 0), 1 <= out.count <= 6
        (True, True)
    """
    temperature = require_number("temperature", temperature, low=0.0, low_inclusive=False)
    beta = require_number("beta", beta, low=0.0)
    if beta > 1:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    max_len = require_int("max_len", max_len, minimum=1)
    generator = torch.Generator().manual_seed(require_seed("seed", seed))
    teacher.eval()

    def objective(model: nn.Module, batch: Seq2SeqBatch) -> Objective:
        if not isinstance(batch, Seq2SeqBatch):
            raise TypeError(f"batch must be a Seq2SeqBatch, got {type(batch).__name__}")
        was_training = model.training
        model.eval()
        if sample:
            decoded = model.sample(batch.src, batch.src_lengths, max_len=max_len, generator=generator)
        else:
            decoded = model.greedy(batch.src, batch.src_lengths, max_len=max_len)
        model.train(was_training)
        own, scored = _teacher_forced_outputs(batch, decoded.best())
        logits = model(own.src, own.src_lengths, own.tgt_in)
        with torch.no_grad():
            teacher_logits = teacher(own.src, own.src_lengths, own.tgt_in)
        loss = generalized_jsd(logits, teacher_logits, beta=beta, temperature=temperature, mask=scored,
                               reduction="sum")
        return Objective(loss, float(scored.sum()))

    return objective


def _teacher_forced_outputs(batch: Seq2SeqBatch, outputs: list[list[int]]) -> tuple[Seq2SeqBatch, torch.Tensor]:
    """A batch that reads each source's generated output, and the mask of the positions it generated."""
    pairs = []
    for row, output in enumerate(outputs):
        source = batch.src[row, : int(batch.src_lengths[row])].tolist()
        pairs.append((source, _strip_eos(output)))
    forced = seq2seq_batch(pairs)
    generated = forced.tgt_mask.clone()
    for row, output in enumerate(outputs):
        if not output or output[-1] != EOS_ID:  # cut at max_len: the appended <eos> was never generated
            generated[row, int(forced.tgt_lengths[row]) - 1] = False
    return forced, generated
