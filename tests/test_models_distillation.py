"""coursekit.models.distillation: sizes and sequence-level KD data from teacher beams."""

from __future__ import annotations

import pytest
import torch

from coursekit.data import EOS_ID, pad_batch, seq2seq_batch
from coursekit.models import (
    Seq2Seq,
    load_checkpoint,
    model_size,
    sequence_interpolation_targets,
    sequence_kd_pairs,
    sequence_kd_targets,
    shipped_checkpoint,
    teacher_student_divergence,
)
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


def test_sequence_interpolation_picks_the_beam_hypothesis_closest_to_the_reference():
    teacher, _ = load_checkpoint(shipped_checkpoint("translator_teacher"))
    data = translation_data(0)
    sources = [data.src_vocab.encode(s) for s, _ in data.task.valid[:6]]
    batch = pad_batch(sources)
    found = teacher.beam_search(batch.tokens, batch.lengths, beam_size=3, num_return=3)
    beams = [[h[:-1] if h and h[-1] == EOS_ID else h for h in hyps] for hyps in found.sequences]
    # the reference of source i is the teacher's third hypothesis: an exact-match similarity must find it
    references = [hyps[2] for hyps in beams]
    same = lambda hyp, ref: float(hyp == ref)  # noqa: E731
    assert sequence_interpolation_targets(teacher, sources, references, same, beam_size=3) == references
    # a reference far from every hypothesis leaves all ties: the teacher's best hypothesis wins
    constant = lambda hyp, ref: 0.0  # noqa: E731
    assert sequence_interpolation_targets(teacher, sources, references, constant, beam_size=3) == \
        sequence_kd_targets(teacher, sources, beam_size=3)
    with pytest.raises(ValueError, match="references"):
        sequence_interpolation_targets(teacher, sources, references[:2], same)


def test_teacher_student_divergence_is_the_token_mean_of_the_forward_kl():
    teacher, _ = load_checkpoint(shipped_checkpoint("translator_teacher"))
    data = translation_data(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        student = Seq2Seq(len(data.src_vocab), len(data.tgt_vocab), **model_size("seq2seq", "student")).eval()
    pairs = data.train[:20]
    got = teacher_student_divergence(student, teacher, pairs, batch_size=7)
    batch = seq2seq_batch(pairs)
    with torch.no_grad():
        log_p = torch.log_softmax(student(batch.src, batch.src_lengths, batch.tgt_in), -1)
        log_q = torch.log_softmax(teacher(batch.src, batch.src_lengths, batch.tgt_in), -1)
    per_position = (log_q.exp() * (log_q - log_p)).sum(-1)[batch.tgt_mask]
    assert got == pytest.approx(float(per_position.mean()), rel=1e-5)
    assert teacher_student_divergence(teacher, teacher, pairs) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="pairs"):
        teacher_student_divergence(student, teacher, [])
