"""Teacher and student sizes, and sequence-level distillation data (Kim & Rush 2016).

Word-level distillation matches the teacher's next-token distribution at every
position (:func:`coursekit.train.word_kd_objective`). Sequence-level
distillation instead replaces each training target by the teacher's own beam
search output and trains the student on those with the ordinary NLL: the
student imitates the teacher's *mode*, a simpler, more consistent target than
the raw data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from coursekit.data._checks import require_int, require_one_of
from coursekit.data.batching import pad_batch, seq2seq_batch
from coursekit.data.vocab import EOS_ID
from coursekit.losses import generalized_jsd
from coursekit.models.seq2seq import Seq2Seq

#: model sizes (keyword arguments of the constructors) for each architecture and role
SIZES: dict[str, dict[str, dict[str, int]]] = {
    "seq2seq": {"teacher": {"embed_dim": 32, "hidden_size": 64}, "student": {"embed_dim": 8, "hidden_size": 16}},
    "rnn": {"teacher": {"embed_dim": 32, "hidden_size": 96}, "student": {"embed_dim": 8, "hidden_size": 16}},
    "transformer": {"teacher": {"d_model": 64, "num_heads": 4, "num_layers": 2, "d_ff": 128},
                    "student": {"d_model": 16, "num_heads": 2, "num_layers": 1, "d_ff": 32}},
}


def model_size(architecture: str, role: str) -> dict[str, int]:
    """Constructor keyword arguments for ``architecture`` (``"seq2seq"``, ``"rnn"``, ``"transformer"``)
    in ``role`` (``"teacher"`` or ``"student"``).

    Example:
        >>> model_size("seq2seq", "student")
        {'embed_dim': 8, 'hidden_size': 16}
    """
    architecture = require_one_of("architecture", architecture, tuple(SIZES))
    role = require_one_of("role", role, ("teacher", "student"))
    return dict(SIZES[architecture][role])


def sequence_kd_targets(teacher: Seq2Seq, sources: Sequence[Sequence[int]], *, beam_size: int = 4,
                        max_len: int = 20, batch_size: int = 256) -> list[list[int]]:
    """The teacher's beam-search output for every source: the targets of sequence-level KD.

    Args:
        teacher: a trained :class:`~coursekit.models.Seq2Seq`.
        sources: source id lists (no specials).
        beam_size: the teacher's beam width.
        max_len: longest output.
        batch_size: sources encoded per call.

    Returns:
        One target id list per source, without ``<eos>`` (ready for :func:`coursekit.data.seq2seq_batch`).

    Raises:
        ValueError: no sources, or an empty source.
    """
    if len(sources) == 0:
        raise ValueError("sources must hold at least one source, got an empty sequence")
    for i, source in enumerate(sources):
        if len(source) == 0:
            raise ValueError(f"sources[{i}] has length 0; every source needs at least one token")
    beam_size = require_int("beam_size", beam_size, minimum=1)
    batch_size = require_int("batch_size", batch_size, minimum=1)
    teacher.eval()
    targets: list[list[int]] = []
    with torch.no_grad():
        for start in range(0, len(sources), batch_size):
            chunk = pad_batch(sources[start:start + batch_size])
            if beam_size == 1:  # width-1 beam search is greedy decoding; the batched decoder is faster
                result = teacher.greedy(chunk.tokens, chunk.lengths, max_len=max_len)
            else:
                result = teacher.beam_search(chunk.tokens, chunk.lengths, beam_size=beam_size, max_len=max_len)
            targets += [seq[:-1] if seq and seq[-1] == EOS_ID else seq for seq in result.best()]
    return targets


def sequence_interpolation_targets(teacher: Seq2Seq, sources: Sequence[Sequence[int]],
                                   references: Sequence[Sequence[int]],
                                   similarity: Callable[[list[int], list[int]], float], *, beam_size: int = 4,
                                   max_len: int = 20) -> list[list[int]]:
    """Kim and Rush's sequence-level interpolation: the teacher's hypothesis closest to each reference.

    Of the ``beam_size`` hypotheses the teacher's beam search returns for a source, the one with
    the highest ``similarity`` to the reference (ties go to the teacher's higher-ranked one):
    :math:`\\tilde y = \\arg\\max_{y \\in \\text{beam}} \\operatorname{sim}(y, y^*)`. The student is then trained
    on :math:`\\tilde y` with the ordinary NLL: a target the teacher finds likely that stays close to
    the data. Kim and Rush use smoothed sentence-level BLEU as the similarity.

    Args:
        teacher: a trained :class:`~coursekit.models.Seq2Seq`.
        sources: source id lists.
        references: the training targets (id lists without ``<eos>``), one per source.
        similarity: ``similarity(hypothesis, reference) -> float``, higher is closer.
        beam_size: hypotheses considered per source.
        max_len: longest hypothesis.

    Returns:
        One target per source, without ``<eos>``.

    Raises:
        ValueError: no sources, an empty source, or a different number of references.

    Example:
        >>> import torch
        >>> with torch.random.fork_rng():
        ...     _ = torch.manual_seed(0)
        ...     model = Seq2Seq(8, 6, embed_dim=4, hidden_size=4)
        >>> same = lambda hyp, ref: float(hyp == ref)
        >>> top = sequence_kd_targets(model, [[4, 5]], beam_size=3, max_len=4)
        >>> sequence_interpolation_targets(model, [[4, 5]], [[9]], same, beam_size=3, max_len=4) == top
        True
    """
    if len(sources) == 0:
        raise ValueError("sources must hold at least one source, got an empty sequence")
    if len(references) != len(sources):
        raise ValueError(f"references must hold one target per source ({len(sources)}), got {len(references)}")
    for i, source in enumerate(sources):
        if len(source) == 0:
            raise ValueError(f"sources[{i}] has length 0; every source needs at least one token")
    beam_size = require_int("beam_size", beam_size, minimum=1)
    teacher.eval()
    chosen: list[list[int]] = []
    with torch.no_grad():
        for source, reference in zip(sources, references):
            batch = pad_batch([source])
            found = teacher.beam_search(batch.tokens, batch.lengths, beam_size=beam_size, max_len=max_len,
                                        num_return=beam_size)
            hypotheses = [seq[:-1] if seq and seq[-1] == EOS_ID else seq for seq in found.sequences[0]]
            scores = [similarity(hypothesis, list(reference)) for hypothesis in hypotheses]
            chosen.append(hypotheses[scores.index(max(scores))])
    return chosen


def sequence_kd_pairs(teacher: Seq2Seq, sources: Sequence[Sequence[int]], *, beam_size: int = 4,
                      max_len: int = 20) -> list[tuple[list[int], list[int]]]:
    """``(source, teacher output)`` pairs: the training set of a sequence-level KD student."""
    targets = sequence_kd_targets(teacher, sources, beam_size=beam_size, max_len=max_len)
    return [(list(src), tgt) for src, tgt in zip(sources, targets)]


def teacher_student_divergence(student: Seq2Seq, teacher: Seq2Seq, pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
                               *, beta: float = 0.0, temperature: float = 1.0, batch_size: int = 256) -> float:
    """Token-mean divergence between teacher and student next-token distributions along given outputs.

    Both models read every target teacher-forced (``<eos>`` position included); the value is the
    mean of :func:`coursekit.losses.generalized_jsd` over all those positions (``beta=0``: the
    forward KL of word-level KD). Evaluated on the training targets it is what word-level KD
    minimises; on the student's own outputs (``sequence_kd_pairs(student, sources, beam_size=1)``)
    it measures how far the student is from the teacher where the student actually goes.

    Args:
        student, teacher: two :class:`~coursekit.models.Seq2Seq` over the same vocabularies.
        pairs: ``(source ids, target ids)``, targets without ``<eos>``.
        beta, temperature: as :func:`coursekit.losses.generalized_jsd`.
        batch_size: pairs per forward pass.

    Returns:
        The mean divergence per target position, in nats.

    Raises:
        ValueError: no pairs, or ``batch_size < 1``.

    Example:
        >>> import torch
        >>> with torch.random.fork_rng():
        ...     _ = torch.manual_seed(0)
        ...     model = Seq2Seq(8, 6, embed_dim=4, hidden_size=4)
        >>> teacher_student_divergence(model, model, [([4, 5], [3])])   # a model against itself
        0.0
    """
    if len(pairs) == 0:
        raise ValueError("pairs must hold at least one (source, target) pair, got none")
    batch_size = require_int("batch_size", batch_size, minimum=1)
    student.eval()
    teacher.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            batch = seq2seq_batch(pairs[start:start + batch_size])
            logits = student(batch.src, batch.src_lengths, batch.tgt_in)
            teacher_logits = teacher(batch.src, batch.src_lengths, batch.tgt_in)
            total += float(generalized_jsd(logits, teacher_logits, beta=beta, temperature=temperature,
                                           mask=batch.tgt_mask, reduction="sum"))
            count += int(batch.tgt_mask.sum())
    return total / count
