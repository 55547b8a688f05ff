"""Out-of-process grading spec of a4_distillation (read by `coursekit grade` and by the notebook's hidden blocks).

Not copied into the release (it lies outside ``source/``), but public in this repository,
like the source notebooks' solutions.

The one definition of each question (the notebook's hidden blocks evaluate it;
see ``coursekit.course.hidden_score``), with inputs drawn, for each student,
from a seed derived from SEED, the course and the student, keyed by the
course's grading secret (SEED is public, like this file; the secret is not: see
coursekit.grading.secret). The losses are compared with ``coursekit.losses``.
The sequence-level distillation targets travel as padded arrays and are
compared with the reference beam search run here. The student model that
``train_student`` returns comes back as its parameters: the grader loads them
into a ``Seq2Seq`` built here and measures how often its greedy output agrees
with the teacher's on sources drawn from the assignment's check seed (keyed by
the secret: ``coursekit.grading.spec.check_seed``; the same for every student,
and none can draw them); a second case checks the seeding convention exactly.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from coursekit.data import Vocab, pad_batch, translation_task
from coursekit.grading.spec import AssignmentSpec, BannedOp, Case, CheckedQuestion, FunctionQuestion
from coursekit.losses import kd_cross_entropy, kd_loss, label_smoothed_nll
from coursekit.models import Seq2Seq
from coursekit.models.checkpoints import load_checkpoint, shipped_checkpoint
from coursekit.models.distillation import sequence_kd_targets

SEED = 731_998_402
#: agreement with the teacher's beam search that the trained student must reach (as in the notebook).
AGREEMENT = 0.7

ADAPTERS = '''
def _coursekit_padded(sequences):
    import torch as _torch
    _lengths = _torch.tensor([len(_s) for _s in sequences], dtype=_torch.int64)
    _tokens = _torch.zeros((len(sequences), max([len(_s) for _s in sequences] + [1])), dtype=_torch.int64)
    for _row, _s in enumerate(sequences):
        _tokens[_row, :len(_s)] = _torch.tensor([int(_x) for _x in _s], dtype=_torch.int64)
    return [_tokens, _lengths]


def _coursekit_unpadded(tokens, lengths):
    return [_row[:_n].tolist() for _row, _n in zip(tokens, lengths.tolist())]


def _coursekit_teacher():
    global _coursekit_cached_teacher
    try:
        return _coursekit_cached_teacher
    except NameError:
        from coursekit.models.checkpoints import load_checkpoint as _load, shipped_checkpoint as _shipped
        _coursekit_cached_teacher = _load(_shipped("translator_teacher"))[0]
        return _coursekit_cached_teacher


def _coursekit_kd_targets(tokens, lengths, beam_size, max_len, batch_size):
    _targets = sequence_kd_targets(_coursekit_teacher(), _coursekit_unpadded(tokens, lengths),
                                   beam_size=int(beam_size), max_len=int(max_len), batch_size=int(batch_size))
    return _coursekit_padded(_targets)


def _coursekit_train_student(src_tokens, src_lengths, tgt_tokens, tgt_lengths, steps, batch_size, lr, seed):
    import torch as _torch
    _torch.set_num_threads(1)
    _pairs = list(zip(_coursekit_unpadded(src_tokens, src_lengths), _coursekit_unpadded(tgt_tokens, tgt_lengths)))
    _model = train_student(_pairs, steps=int(steps), batch_size=int(batch_size), lr=float(lr), seed=int(seed))
    return [_p.detach() for _p in _model.state_dict().values()]
'''


def label_smoothing_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for shape, classes in [((1,), 2), ((5,), 2), ((3, 4), 7), ((2, 2, 3), 5)]:
        for dtype in (np.float32, np.float64):
            logits = (rng.standard_normal((*shape, classes)) * 3).astype(dtype)
            targets = rng.integers(0, classes, size=shape).astype(np.int64)
            if targets.size > 1:
                targets.reshape(-1)[-1] = -100
            for epsilon in (0.0, 0.1, 0.6):
                for variant in ("pytorch", "fairseq"):
                    for reduction in ("mean", "sum", "none"):
                        cases.append(Case((logits, targets, epsilon), {"variant": variant, "reduction": reduction}))
            # A non-default ignore_index, with at least one target it does not ignore: drawn freely, every target
            # of a small case could be 1, and the mean over no target is 0/0, whose gradient the notebook does not
            # ask for (PyTorch's is 0, a plain sum / count gives nan), so a correct answer would lose it by chance.
            # With two or more targets, one of them is ignored.
            renamed = np.where(targets < 0, 0, targets)
            renamed.reshape(-1)[0] = 0
            if renamed.size > 1:
                renamed.reshape(-1)[-1] = 1
            cases.append(Case((logits, renamed, 0.2), {"ignore_index": 1}))
    return cases


def _kd_cases(rng: np.random.Generator, temperatures: tuple[float, ...], masked_tail: bool) -> list[Case]:
    cases = []
    for shape, classes in [((1, 1), 2), ((3, 4), 2), ((2, 6), 9), ((5,), 4), ((2, 3, 4), 3)]:
        for dtype in (np.float32, np.float64):
            student = (rng.standard_normal((*shape, classes)) * 3).astype(dtype)
            teacher = (rng.standard_normal((*shape, classes)) * 3).astype(dtype)
            mask = rng.random(shape) < 0.7
            mask.reshape(-1)[0] = True
            if masked_tail and len(shape) >= 2 and shape[0] > 1:
                mask[..., -1, :] = False
            for temperature in temperatures:
                for reduction in ("token_mean", "sequence_mean", "sum", "none"):
                    cases.append(Case((student, teacher), {"temperature": temperature, "mask": mask,
                                                           "reduction": reduction}))
            cases.append(Case((student, teacher), {"temperature": 2.0}))
            cases.append(Case((student, teacher), label="the default temperature"))
    for temperature, label in ((0.0, "a temperature of 0"), (-1.0, "a negative temperature")):
        cases.append(Case((student, teacher), {"temperature": temperature}, raises="ValueError",
                          naming="temperature", label=label))
    return cases


def kd_loss_cases(rng: np.random.Generator) -> list[Case]:
    return _kd_cases(rng, (1.0, 0.5, 4.0), masked_tail=True)


def kd_cross_entropy_cases(rng: np.random.Generator) -> list[Case]:
    return _kd_cases(rng, (1.0, 3.0), masked_tail=False)


@lru_cache(maxsize=1)
def _teacher() -> tuple[Seq2Seq, Vocab, Vocab]:
    teacher, info = load_checkpoint(shipped_checkpoint("translator_teacher"))
    return teacher, Vocab.from_dict(info["src_vocab"]), Vocab.from_dict(info["tgt_vocab"])


def _padded(sequences: list[list[int]]) -> list[np.ndarray]:
    batch = pad_batch(sequences)
    return [batch.tokens.numpy().copy(), batch.lengths.numpy().astype(np.int64)]


def _unpadded(tokens: Any, lengths: Any) -> list[list[int]]:
    return [row[:n].tolist() for row, n in zip(tokens, lengths.tolist())]


def _reference_kd_targets(tokens, lengths, beam_size, max_len, batch_size):
    targets = sequence_kd_targets(_teacher()[0], _unpadded(tokens, lengths), beam_size=int(beam_size),
                                  max_len=int(max_len), batch_size=int(batch_size))
    return _padded(targets)


def _sources(seed: int, count: int) -> list[list[int]]:
    _, src_vocab, _ = _teacher()
    task = translation_task(seed=seed, num_train=count, num_valid=10, num_test=10, num_ood=10)
    return [src_vocab.encode(words) for words, _ in task.train]


def kd_target_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for beam_size, batch_size, count in [(4, 256, 60), (2, 7, 25), (1, 50, 40), (3, 1, 6)]:
        sources = _sources(int(rng.integers(1 << 30)), count)
        cases.append(Case((*_padded(sources), beam_size, 8, batch_size)))
    return cases


def _fresh_student(seed: int) -> Seq2Seq:
    _, src_vocab, tgt_vocab = _teacher()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Seq2Seq(len(src_vocab), len(tgt_vocab), embed_dim=16, hidden_size=32)


@lru_cache(maxsize=1)
def _training_pairs() -> tuple[list[list[int]], list[list[int]]]:
    """train_student's training set: the notebook's own, the same for every student (nothing hidden in it)."""
    teacher, src_vocab, _ = _teacher()
    task = translation_task(seed=0, num_train=400, num_valid=100, num_test=10, num_ood=10)
    sources = [src_vocab.encode(words) for words, _ in task.train]
    return sources, sequence_kd_targets(teacher, sources, max_len=8)


def student_cases(rng: np.random.Generator) -> list[Case]:
    sources, targets = _training_pairs()
    trained = Case((*_padded(sources), *_padded(targets), 150, 32, 0.02, 0))
    untrained = Case((*_padded(sources[:5]), *_padded(targets[:5]), 0, 32, 0.02, 3))
    return [trained, untrained]


@lru_cache(maxsize=2)
def _hidden_validation(check_seed: int) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """Sources drawn from the assignment's check seed, and the teacher's translations of them."""
    teacher, src_vocab, _ = _teacher()
    task = translation_task(seed=check_seed % 100_019, num_train=10, num_valid=200, num_test=10, num_ood=10)
    batch = pad_batch([src_vocab.encode(words) for words, _ in task.valid])
    with torch.no_grad():
        says = teacher.beam_search(batch.tokens, batch.lengths, beam_size=4, max_len=8).best()
    return batch.tokens, batch.lengths, says


def check_student(value: Any, case: Case, check_seed: int) -> str | None:
    """Case 1: the trained student agrees with the teacher often enough; case 2: it was seeded as asked."""
    steps, seed = case.args[4], case.args[7]
    if not isinstance(value, list) or not all(isinstance(v, np.ndarray) for v in value):
        return "train_student must return the Seq2Seq it trained"
    fresh = _fresh_student(seed)
    state = fresh.state_dict()
    if len(value) != len(state) or any(v.shape != tuple(s.shape) for v, s in zip(value, state.values())):
        return "train_student must return a Seq2Seq(embed_dim=16, hidden_size=32)"
    if steps == 0:
        same = all(np.array_equal(v, s.numpy()) for v, s in zip(value, state.values()))
        return None if same else "train_student must call torch.manual_seed(seed) before building the model"
    with torch.no_grad():
        for target, got in zip(state.values(), value):
            target.copy_(torch.as_tensor(got))
    fresh.eval()
    tokens, lengths, teacher_says = _hidden_validation(check_seed)
    with torch.no_grad():
        student_says = fresh.greedy(tokens, lengths, max_len=8).best()
    agreement = sum(s == t for s, t in zip(student_says, teacher_says)) / len(teacher_says)
    return None if agreement >= AGREEMENT else f"the trained student agrees with the teacher on under {AGREEMENT:.0%}"


SPEC = AssignmentSpec(
    assignment="a4_distillation",
    notebook="a4_distillation",
    seed=SEED,
    questions=(
        FunctionQuestion("test_label_smoothed_nll", "label_smoothed_nll", 3, label_smoothing_cases,
                         label_smoothed_nll, rtol=1e-4, atol=1e-5, grad_wrt=(0,), adapter=ADAPTERS,
                         options=("epsilon",),
                         banned=(BannedOp("cross_entropy_loss", "F.cross_entropy"),)),
        FunctionQuestion("test_kd_loss", "kd_loss", 4, kd_loss_cases, kd_loss, rtol=1e-4, atol=1e-5, grad_wrt=(0,)),
        FunctionQuestion("test_kd_cross_entropy", "kd_cross_entropy", 2, kd_cross_entropy_cases, kd_cross_entropy,
                         rtol=1e-4, atol=1e-5, grad_wrt=(0,)),
        FunctionQuestion("test_sequence_kd_targets", "_coursekit_kd_targets", 1, kd_target_cases,
                         _reference_kd_targets, student_function="sequence_kd_targets",
                         withholds=(sequence_kd_targets,), outputs=("the targets, padded", "the targets' lengths"),
                         options=("beam_size", "max_len", "batch_size")),
        CheckedQuestion("test_train_student", "_coursekit_train_student", 2, student_cases, check_student,
                        student_function="train_student"),
    ),
)
