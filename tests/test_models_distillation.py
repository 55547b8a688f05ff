"""coursekit.models.distillation: sizes and sequence-level KD data from teacher beams."""

from __future__ import annotations

import pytest
import torch

from coursekit.data import EOS_ID, pad_batch
from coursekit.models import Seq2Seq, load_checkpoint, model_size, sequence_kd_pairs, sequence_kd_targets, \
    shipped_checkpoint
from coursekit.recipes import translation_data

pytestmark = [pytest.mark.models, pytest.mark.a4]


def test_students_are_smaller_than_teachers():
    for arch in ("seq2seq", "rnn", "transformer"):
        teacher, student = model_size(arch, "teacher"), model_size(arch, "student")
        assert all(student[k] <= teacher[k] for k in teacher)
    t = Seq2Seq(20, 12, **model_size("seq2seq", "teacher"))
    s = Seq2Seq(20, 12, **model_size("seq2seq", "student"))
    assert sum(p.numel() for p in s.parameters()) * 10 < sum(p.numel() for p in t.parameters())


def test_kd_targets_are_the_teachers_beam_outputs_without_eos():
    teacher, _ = load_checkpoint(shipped_checkpoint("translator_teacher"))
    data = translation_data(0)
    sources = [data.src_vocab.encode(s) for s, _ in data.task.valid[:10]]
    targets = sequence_kd_targets(teacher, sources, beam_size=3, batch_size=4)
    batch = pad_batch(sources)
    beams = teacher.beam_search(batch.tokens, batch.lengths, beam_size=3).best()
    assert targets == [b[:-1] if b[-1] == EOS_ID else b for b in beams]
    assert all(EOS_ID not in t for t in targets)
    assert sequence_kd_pairs(teacher, sources[:2], beam_size=3) == list(zip(sources[:2], targets[:2]))
    greedy = teacher.greedy(batch.tokens, batch.lengths).best()
    assert sequence_kd_targets(teacher, sources, beam_size=1) == [g[:-1] if g[-1] == EOS_ID else g for g in greedy]


def test_bad_arguments_raise_naming_them():
    with pytest.raises(ValueError, match="architecture"):
        model_size("lstm", "teacher")
    with pytest.raises(ValueError, match="role"):
        model_size("rnn", "assistant")
    with pytest.raises(ValueError, match="sources"):
        sequence_kd_targets(Seq2Seq(8, 8), [])
    with torch.no_grad(), pytest.raises(ValueError, match=r"sources\[0\]"):
        sequence_kd_targets(Seq2Seq(8, 8), [[]])
