"""Teacher and student sizes, and sequence-level distillation data (Kim & Rush 2016).

Word-level distillation matches the teacher's next-token distribution at every
position (:func:`coursekit.train.word_kd_objective`). Sequence-level
distillation instead replaces each training target by the teacher's own beam
search output and trains the student on those with the ordinary NLL: the
student imitates the teacher's *mode*, a simpler, more consistent target than
the raw data.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from coursekit.data._checks import require_int, require_one_of
from coursekit.data.batching import pad_batch
from coursekit.data.vocab import EOS_ID
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
    require_one_of("architecture", architecture, tuple(SIZES))
    require_one_of("role", role, ("teacher", "student"))
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
    require_int("beam_size", beam_size, minimum=1)
    require_int("batch_size", batch_size, minimum=1)
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


def sequence_kd_pairs(teacher: Seq2Seq, sources: Sequence[Sequence[int]], *, beam_size: int = 4,
                      max_len: int = 20) -> list[tuple[list[int], list[int]]]:
    """``(source, teacher output)`` pairs: the training set of a sequence-level KD student."""
    targets = sequence_kd_targets(teacher, sources, beam_size=beam_size, max_len=max_len)
    return [(list(src), tgt) for src, tgt in zip(sources, targets)]
