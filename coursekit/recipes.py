"""Recipes: the few training runs the book and the assignments use, one function each.

Pages and assignments call these instead of writing their own training code,
so every figure comes from the same, tested loop (:func:`coursekit.train.train`).
Every recipe takes a ``seed`` and is deterministic on CPU; each trains in well
under 30 s on one core (``bench/bench_models.py`` measures them).

============================  ===============================================
recipe                        returns
============================  ===============================================
:func:`train_ngram_lm`        an :class:`~coursekit.models.NGramLM` and its validation scores
:func:`train_rnn_lm`          ``(RNNLM, History)``; ``history.valid`` = validation NLL per epoch
:func:`train_transformer_lm`  ``(TransformerLM, History)``, same
:func:`train_translator`      ``(Seq2Seq, History)``; ``history.valid`` = validation exact match
:func:`train_ctc_recognizer`  ``(CTCRecognizer, History)``; ``history.valid`` = validation label error rate
:func:`train_seq_kd_student`  a student trained on a teacher's beam outputs
============================  ===============================================
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from torch import nn

from coursekit.data import (
    FrameBatch,
    FrameTask,
    LMBatch,
    Seq2SeqBatch,
    ToyCorpus,
    TranslationTask,
    Vocab,
    bucket_batches,
    default_language,
    frame_batch,
    frame_task,
    lm_batch,
    seq2seq_batch,
    toy_corpus,
    translation_task,
)
from coursekit.data._checks import derived_seed, require_int, require_one_of, require_seed
from coursekit.evaluation import LMScores, evaluate_ctc, evaluate_lm, evaluate_translation, lm_scores
from coursekit.models import CTCRecognizer, NGramLM, RNNLM, Seq2Seq, TransformerLM, model_size, sequence_kd_pairs
from coursekit.train import History, ObjectiveFn, ctc_objective, lm_objective, seeded, train


class Trained(NamedTuple):
    """A trained model and its training history (unpacks as ``model, history``)."""

    model: nn.Module
    history: History


@dataclass(frozen=True)
class LMData:
    """The toy-language corpus as ids, its vocabulary and its true per-token entropy (nats)."""

    corpus: ToyCorpus
    vocab: Vocab
    train: list[list[int]]
    valid: list[list[int]]
    test: list[list[int]]
    entropy: float


@dataclass(frozen=True)
class TranslationData:
    """The translation task as id pairs, with its two vocabularies."""

    task: TranslationTask
    src_vocab: Vocab
    tgt_vocab: Vocab
    train: list[tuple[list[int], list[int]]]


@functools.lru_cache(maxsize=4)
def lm_data(seed: int = 0) -> LMData:
    """The toy-language corpus (4000/500/500 sentences) encoded with its word vocabulary.

    Example:
        >>> data = lm_data(0)
        >>> len(data.vocab), round(data.entropy, 4)
        (35, 1.5843)
    """
    require_seed("seed", seed)
    corpus = toy_corpus(seed=seed)
    vocab = Vocab(default_language().words, level="word")

    def encode(sentences: list[list[str]]) -> list[list[int]]:
        return [vocab.encode(" ".join(s), on_unknown="error") for s in sentences]

    return LMData(corpus=corpus, vocab=vocab, train=encode(corpus.train), valid=encode(corpus.valid),
                  test=encode(corpus.test), entropy=corpus.language.entropy_per_token())


@functools.lru_cache(maxsize=8)
def translation_data(seed: int = 0, target_noise: float = 0.0) -> TranslationData:
    """The number-translation task with word-level vocabularies built from its training split.

    ``target_noise`` corrupts each training target with that probability (one wrong digit), so
    about that fraction of them.
    """
    require_seed("seed", seed)
    task = translation_task(seed=seed, target_noise=target_noise)
    src_vocab = Vocab.build([s for s, _ in task.train], level="word")
    tgt_vocab = Vocab.build([t for _, t in task.train], level="word")
    train_ids = [(src_vocab.encode(s), tgt_vocab.encode(t)) for s, t in task.train]
    return TranslationData(task=task, src_vocab=src_vocab, tgt_vocab=tgt_vocab, train=train_ids)


def train_ngram_lm(*, order: int = 2, k: float = 0.01, seed: int = 0) -> tuple[NGramLM, LMScores]:
    """Fit an add-k n-gram model on the toy corpus; return it with its validation scores."""
    data = lm_data(seed)
    model = NGramLM(len(data.vocab), order=order, k=k).fit(data.train)
    total, count = model.token_nll(data.valid)
    return model, lm_scores(total, count)


def _epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's batch order: ``seed * 1000 + epoch``, modulo 2**63.

    Every ``seed`` below 2**53 gives exactly the seed it always gave (so the recipes' batch
    orders, and the book's numbers, stay the same); a larger seed in ``[0, 2**63)``, which the
    recipes accept, gives a seed in that range instead of one that ``bucket_batches`` refuses.

    Example:
        >>> _epoch_seed(7, 2), _epoch_seed(2**63 - 1, 0)
        (7002, 9223372036854774808)
    """
    return derived_seed(seed * 1000 + epoch)


def _lm_batches(sentences: Sequence[Sequence[int]], batch_size: int, seed: int) -> Callable[[int], list[LMBatch]]:
    lengths = [len(s) for s in sentences]

    def batches(epoch: int) -> list[LMBatch]:
        order = bucket_batches(lengths, batch_size, seed=_epoch_seed(seed, epoch))
        return [lm_batch([sentences[i] for i in idx]) for idx in order]

    return batches


def _train_lm(model: nn.Module, data: LMData, *, seed: int, epochs: int, batch_size: int, lr: float,
              objective: ObjectiveFn | None, progress: bool | None) -> Trained:
    history = train(model, _lm_batches(data.train, batch_size, seed), objective or lm_objective(), epochs=epochs,
                    lr=lr, seed=seed, evaluate=lambda m: evaluate_lm(m, data.valid).nll, progress=progress)
    return Trained(model, history)


def train_rnn_lm(*, seed: int = 0, cell: str = "gru", size: str = "teacher", epochs: int = 6, batch_size: int = 32,
                 lr: float = 1e-2, objective: ObjectiveFn | None = None, progress: bool | None = None) -> Trained:
    """Train a recurrent LM on the toy language.

    Args:
        seed: data, initialisation and batching seed.
        cell: ``"elman"``, ``"gru"`` or ``"lstm"``.
        size: ``"teacher"`` or ``"student"`` (:func:`coursekit.models.model_size`).
        epochs, batch_size, lr: the usual.
        objective: the training objective (default token-level NLL), e.g. a word-level KD one.
        progress: progress bar (default: only on a terminal).

    Returns:
        ``(model, history)``; ``history.valid`` holds the validation NLL per token after each epoch,
        to compare with ``lm_data(seed).entropy``.
    """
    size = require_one_of("size", size, ("teacher", "student"))
    data = lm_data(seed)
    with seeded(seed):
        model = RNNLM(len(data.vocab), cell=cell, **model_size("rnn", size))
    return _train_lm(model, data, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr, objective=objective,
                     progress=progress)


def train_transformer_lm(*, seed: int = 0, size: str = "teacher", positions: str = "learned", epochs: int = 6,
                         batch_size: int = 32, lr: float = 3e-3, objective: ObjectiveFn | None = None,
                         progress: bool | None = None) -> Trained:
    """Train a decoder-only Transformer LM on the toy language (arguments as :func:`train_rnn_lm`)."""
    size = require_one_of("size", size, ("teacher", "student"))
    data = lm_data(seed)
    longest = max(len(s) for s in data.train + data.valid + data.test) + 1
    with seeded(seed):
        model = TransformerLM(len(data.vocab), max_len=max(64, longest), positions=positions,
                              **model_size("transformer", size))
    return _train_lm(model, data, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr, objective=objective,
                     progress=progress)


def train_translator(*, seed: int = 0, size: str = "teacher", epochs: int = 6, batch_size: int = 32,
                     lr: float = 5e-3, pairs: Sequence[tuple[Sequence[int], Sequence[int]]] | None = None,
                     target_noise: float = 0.0, objective: ObjectiveFn | None = None,
                     progress: bool | None = None, data_seed: int | None = None) -> Trained:
    """Train the encoder-decoder on number words -> digits.

    Args:
        seed: data, initialisation and batching seed.
        data_seed: the seed of the task's splits and vocabularies, if it differs from ``seed``;
            several training seeds on one data set (as a comparison of methods needs) keep it fixed.
        size: ``"teacher"`` or ``"student"``.
        pairs: training id pairs (default: the task's training split); pass teacher outputs for
            sequence-level distillation.
        target_noise: per-target probability of a noisy training target (see
            :func:`coursekit.data.translation_task`).
        objective: default token-level NLL; any :mod:`coursekit.train` objective plugs in.

    Returns:
        ``(model, history)``; ``history.valid`` holds greedy exact match on the validation split per epoch.
    """
    size = require_one_of("size", size, ("teacher", "student"))
    epochs = require_int("epochs", epochs, minimum=1)
    data = translation_data(seed if data_seed is None else data_seed, target_noise)
    train_pairs = list(pairs) if pairs is not None else data.train
    if not train_pairs:
        raise ValueError("pairs must hold at least one pair, got an empty sequence")
    with seeded(seed):
        model = Seq2Seq(len(data.src_vocab), len(data.tgt_vocab), **model_size("seq2seq", size))
    lengths = [len(s) for s, _ in train_pairs]

    def batches(epoch: int) -> list[Seq2SeqBatch]:
        order = bucket_batches(lengths, batch_size, seed=_epoch_seed(seed, epoch))
        return [seq2seq_batch([train_pairs[i] for i in idx]) for idx in order]

    def validate(m: nn.Module) -> float:
        return evaluate_translation(m, data.task.valid, data.src_vocab, data.tgt_vocab).exact_match

    history = train(model, batches, objective or lm_objective(), epochs=epochs, lr=lr, seed=seed,
                    evaluate=validate, progress=progress)
    return Trained(model, history)


@functools.lru_cache(maxsize=4)
def ctc_data(seed: int = 0) -> FrameTask:
    """The frame task of chapter 7: 600/200/200 utterances of 2 to 5 labels, noise 1.0.

    Example:
        >>> task = ctc_data(0)
        >>> len(task.train), task.num_classes
        (600, 6)
    """
    require_seed("seed", seed)
    return frame_task(seed=seed, num_train=600, num_valid=200, num_test=200, noise=1.0)


def train_ctc_recognizer(*, seed: int = 0, epochs: int = 6, batch_size: int = 32, lr: float = 1e-2,
                         hidden_size: int = 32, evaluate: Callable[[nn.Module], float] | None = None,
                         progress: bool | None = None) -> Trained:
    """Train a :class:`~coursekit.models.CTCRecognizer` with the CTC loss on :func:`ctc_data`.

    Args:
        seed: data, initialisation and batching seed.
        epochs, batch_size, lr: the usual (Adam; batches of similar length, reshuffled every epoch).
        hidden_size: GRU state size per direction.
        evaluate: called after every epoch; default: the best-path label error rate on the validation split.
        progress: progress bar (default: only on a terminal).

    Returns:
        ``(model, history)``; ``history.valid`` holds ``evaluate``'s value after each epoch.
    """
    epochs = require_int("epochs", epochs, minimum=1)
    task = ctc_data(seed)
    with seeded(seed):
        model = CTCRecognizer(task.feature_dim, task.num_classes, hidden_size=hidden_size)
    lengths = [len(e.features) for e in task.train]

    def batches(epoch: int) -> list[FrameBatch]:
        order = bucket_batches(lengths, batch_size, seed=_epoch_seed(seed, epoch))
        return [frame_batch([task.train[i] for i in idx]) for idx in order]

    def validate(m: nn.Module) -> float:
        return evaluate_ctc(m, task.valid).label_error_rate

    history = train(model, batches, ctc_objective(), epochs=epochs, lr=lr, seed=seed,
                    evaluate=evaluate or validate, progress=progress)
    return Trained(model, history)


def train_seq_kd_student(teacher: Seq2Seq, *, seed: int = 0, beam_size: int = 4, epochs: int = 6,
                         target_noise: float = 0.0, progress: bool | None = None) -> Trained:
    """Sequence-level KD (Kim & Rush 2016): train a student on the teacher's beam outputs for the training sources.

    The teacher must use the vocabularies of ``translation_data(seed, target_noise)``.
    """
    data = translation_data(seed, target_noise)
    pairs = sequence_kd_pairs(teacher, [s for s, _ in data.train], beam_size=beam_size)
    return train_translator(seed=seed, size="student", epochs=epochs, pairs=pairs, target_noise=target_noise,
                            progress=progress)
