"""A synthetic speech-like task for CTC: noisy feature frames and the label sequence they spell.

Each example stands for a short utterance of "digits" (labels ``1 .. V - 1``;
``0`` is kept for CTC's blank). Every label is held for a few frames, with runs
of silence before, between and after the labels. A frame is a feature vector:
the label's fixed random prototype (zeros for silence) plus Gaussian noise, and
one extra feature that is 1 on the first frame of each label (an *onset*, which
lets a model tell "3 3" from one long "3" even without silence between them).
The data say which labels occur, in order, but not at which frames: the
setting CTC was made for. The frame spans of the labels are kept, only to draw
where the labels really were.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from coursekit.data._checks import (
    as_int,
    id_list,
    items_text,
    require_int,
    require_number,
    require_seed,
    row_list,
    shown,
)
from coursekit.losses._checks import INT64_MAX, type_text

#: the class index of CTC's blank in this task
FRAME_BLANK = 0


@dataclass(frozen=True)
class FrameExample:
    """One utterance.

    Attributes:
        features: ``(T, F)`` frame features.
        labels: the label sequence, ids in ``1 .. V - 1``.
        spans: ``(first frame, last frame + 1)`` of every label, in order.
    """

    features: torch.Tensor
    labels: list[int]
    spans: list[tuple[int, int]]


@dataclass(frozen=True)
class FrameTask:
    """The splits of the task and its sizes.

    Attributes:
        train, valid, test: the examples of each split.
        num_classes: :math:`V`, the labels plus the blank.
        feature_dim: :math:`F`, features per frame.
    """

    train: list[FrameExample]
    valid: list[FrameExample]
    test: list[FrameExample]
    num_classes: int
    feature_dim: int


@dataclass(frozen=True)
class FrameBatch:
    """Padded frames and labels of several utterances.

    ``targets``, ``input_lengths`` and ``target_lengths`` are in the layout
    :func:`coursekit.losses.ctc_loss` reads. ``features`` is not: it is batch-first, ``(B, T, F)``, as
    :class:`~coursekit.models.CTCRecognizer` reads it, and the model's log-probabilities come out
    batch-first too, ``(B, T, V)``, while ``ctc_loss`` reads them time-first, ``(T, B, V)``: pass
    ``log_probs.transpose(0, 1)``, as :func:`coursekit.train.ctc_objective` does.

    Attributes:
        features: ``(B, T, F)``, zero past each input length, in torch's default dtype (the dtype of the
            models it feeds), whatever the examples' dtype: :func:`frame_task`'s float32 features are copied
            exactly under the usual float32 default.
        input_lengths: ``(B,)`` frames per utterance.
        targets: ``(B, max T_y)`` labels, padded with the blank (at least one column).
        target_lengths: ``(B,)`` labels per utterance.
    """

    features: torch.Tensor
    input_lengths: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor


#: The largest high end of each of frame_task's ranges: ``labels_per_example``, ``frames_per_label`` and
#: ``max_silence``. It bounds one example's length: with all three at it, an example holds at most
#: 1000 * 1000 + 1001 * 1000 = 2,001,000 frames of ``prototype_dim + 1`` float32 features, 8 MB per feature:
#: 72 MB at the default 9 features per frame (building them takes a few times that), 8 GB at
#: ``prototype_dim=1000``. ``prototype_dim`` is not capped: a wide example is the caller's to fit. A larger range
#: (``frames_per_label=(1, 2**62)``) passed int64's bound and ended in a ``MemoryError`` with no message, or
#: allocated gigabytes before it, for a task whose utterances are a few dozen frames long (the defaults
#: draw at most 5 * 5 + 6 * 2 = 37).
MAX_DRAWN = 1000
#: The most float32 numbers a tensor of frame_task may hold: torch's storage size in bytes is an int64.
MAX_FEATURES = INT64_MAX // 4


def _require_tensor_sizes(num_labels: int, prototype_dim: int, max_frames: int) -> None:
    """Refuse sizes whose float32 tensors torch cannot describe: more than ``MAX_FEATURES`` numbers.

    The prototypes hold ``(num_labels + 1) * prototype_dim`` numbers and an example of ``max_frames`` frames
    ``max_frames * (prototype_dim + 1)``; torch counts a tensor's storage in bytes, in an int64, so past
    ``(2**63 - 1) // 4`` float32 numbers it raised an overflow naming no argument. A size below that bound
    but too large for memory is still the caller's to fit.
    """
    if (num_labels + 1) * prototype_dim > MAX_FEATURES:
        raise ValueError(f"num_labels and prototype_dim must give the prototypes at most 2**61 - 1 numbers "
                         f"((num_labels + 1) * prototype_dim float32 numbers of 4 bytes, at most 2**63 - 1 bytes), "
                         f"got num_labels={shown(num_labels)} and prototype_dim={shown(prototype_dim)}")
    if max_frames * (prototype_dim + 1) > MAX_FEATURES:
        raise ValueError(f"prototype_dim must be <= {MAX_FEATURES // max_frames - 1} so that an example of up to "
                         f"{max_frames} frames holds at most 2**61 - 1 float32 numbers, got {shown(prototype_dim)}")


def _require_draw_bounds(name: str, bounds: object) -> tuple[int, int]:
    """``bounds`` as a pair of Python ints ``(low, high)``, if it holds two integers (``as_int``) with
    ``1 <= low <= high <= MAX_DRAWN``.

    A ``TypeError`` names only the types received (and the length of a tuple or list of other than two
    items), so that a nested huge int is never printed.
    """
    is_pair = isinstance(bounds, (tuple, list)) and len(bounds) == 2
    pair = [as_int(b) for b in bounds] if is_pair else [None]
    if None in pair:
        received = f"({', '.join(type_text(b) for b in bounds)})" if is_pair else items_text(bounds)
        raise TypeError(f"{name} must be (low, high) ints, got {received}")
    low, high = pair
    if not 1 <= low <= high <= MAX_DRAWN:
        raise ValueError(f"{name} must be (low, high) ints with 1 <= low <= high <= {MAX_DRAWN}, "
                         f"got ({shown(low)}, {shown(high)})")
    return low, high


def frame_task(*, seed: int = 0, num_train: int = 1200, num_valid: int = 200, num_test: int = 200,
               num_labels: int = 5, prototype_dim: int = 8, noise: float = 0.8, labels_per_example: tuple[int, int] = (2, 5),
               frames_per_label: tuple[int, int] = (2, 5), max_silence: int = 2) -> FrameTask:
    """Generate the three splits of the task (deterministic for a seed).

    The ranges' high ends are capped at ``MAX_DRAWN`` = 1000, which bounds one example's length: at most
    2,001,000 frames, of ``prototype_dim + 1`` float32 features each, so at most
    ``8 MB * (prototype_dim + 1)``: 72 MB at the default ``prototype_dim`` (see ``MAX_DRAWN``).
    ``prototype_dim`` and the splits are not capped (beyond sizes torch can describe): ``num_train``
    examples of up to that length, with as many features per frame as asked for, are the caller's to fit.

    Args:
        seed: seeds the prototypes and every example.
        num_train, num_valid, num_test: examples per split.
        num_labels: distinct labels; the task has ``num_labels + 1`` classes with the blank.
        prototype_dim: features of a label's prototype; each frame has one more (the onset flag).
        noise: standard deviation of the Gaussian noise added to every feature but the onset flag.
        labels_per_example: smallest and largest number of labels of an utterance, a tuple or list
            ``(low, high)`` of ints with ``1 <= low <= high <= MAX_DRAWN`` (1000).
        frames_per_label: shortest and longest run of frames of one label, ``(low, high)`` as for
            ``labels_per_example``: ``1 <= low <= high <= 1000``. CTC can align an
            example only if its frames number at least its labels plus its repeated neighbours
            (``T >= L + repeats``: a blank must part "3 3"); with a low end >= 2 (the default
            ``(2, 5)``) every example has ``T >= 2L`` and so qualifies. With a low end of 1 that
            is not guaranteed, silence or not (a silence run may draw 0 frames): with
            ``(1, 1)`` and ``max_silence=0``, 206 of 500 training examples (seed 0) have an
            infinite CTC loss. Such examples are kept, not redrawn.
        max_silence: longest run of silence frames before, between and after labels (each run 0 .. max),
            an int in ``[0, 1000]``.

    Returns:
        A :class:`FrameTask`.

    Raises:
        TypeError: a size, ``max_silence`` or a range bound that is not a Python or NumPy integer, a range
            that is not a tuple or list of two items, a ``seed`` that is not a Python int, a ``noise``
            that is not a real number.
        ValueError: a size that is not positive, a range whose low end is below 1 or exceeds its high end
            or whose high end exceeds 1000, a ``max_silence`` outside ``[0, 1000]``, a seed outside
            ``[0, 2**63)``, a negative or non-finite ``noise``, or a ``num_labels`` and ``prototype_dim``
            whose prototypes or longest possible example would hold more than ``MAX_FEATURES`` (``2**61 - 1``)
            float32 numbers.

    Example:
        >>> task = frame_task(seed=0, num_train=3, num_valid=1, num_test=1)
        >>> task.num_classes, task.feature_dim
        (6, 9)
        >>> example = task.train[0]
        >>> len(example.labels) == len(example.spans), example.features.shape[1]
        (True, 9)
        >>> all(example.features[start, -1] == 1 for start, _ in example.spans)   # onsets
        True
    """
    require_seed("seed", seed)
    # Python ints from here on (a NumPy integer is taken), so that the task's sizes are ints too.
    num_train, num_valid, num_test, num_labels, prototype_dim = (
        require_int(name, value, minimum=1)
        for name, value in (("num_train", num_train), ("num_valid", num_valid), ("num_test", num_test),
                            ("num_labels", num_labels), ("prototype_dim", prototype_dim))
    )
    max_silence = require_int("max_silence", max_silence, minimum=0)
    if max_silence > MAX_DRAWN:
        raise ValueError(f"max_silence must be <= {MAX_DRAWN} (frame_task's cap on a run), got {shown(max_silence)}")
    noise = require_number("noise", noise, low=0.0)
    labels_per_example = _require_draw_bounds("labels_per_example", labels_per_example)
    frames_per_label = _require_draw_bounds("frames_per_label", frames_per_label)
    _require_tensor_sizes(num_labels, prototype_dim, labels_per_example[1] * (frames_per_label[1] + max_silence)
                          + max_silence)
    generator = torch.Generator().manual_seed(seed)
    # float32 whatever torch's default dtype: MAX_FEATURES counts 4-byte numbers
    prototypes = torch.cat([torch.zeros(1, prototype_dim, dtype=torch.float32),
                            torch.randn(num_labels, prototype_dim, generator=generator, dtype=torch.float32)])

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    def example() -> FrameExample:
        labels = [draw(1, num_labels) for _ in range(draw(*labels_per_example))]
        classes: list[int] = []
        onsets: list[float] = []
        spans: list[tuple[int, int]] = []
        for label in labels:
            classes += [FRAME_BLANK] * draw(0, max_silence)
            duration = draw(*frames_per_label)
            spans.append((len(classes), len(classes) + duration))
            onsets += [0.0] * (len(classes) - len(onsets)) + [1.0] + [0.0] * (duration - 1)
            classes += [label] * duration
        classes += [FRAME_BLANK] * draw(0, max_silence)
        onsets += [0.0] * (len(classes) - len(onsets))
        index = torch.tensor(classes)
        noisy = prototypes[index] + noise * torch.randn(len(classes), prototype_dim, generator=generator,
                                                        dtype=torch.float32)
        features = torch.cat([noisy, torch.tensor(onsets, dtype=torch.float32).unsqueeze(1)], dim=1)
        return FrameExample(features=features, labels=labels, spans=spans)

    splits = [[example() for _ in range(n)] for n in (num_train, num_valid, num_test)]
    return FrameTask(train=splits[0], valid=splits[1], test=splits[2], num_classes=num_labels + 1,
                     feature_dim=prototype_dim + 1)


def frame_batch(examples: Iterable[FrameExample]) -> FrameBatch:
    """Pad the frames and the labels of ``examples`` into one :class:`FrameBatch`.

    Args:
        examples: the utterances, a sequence (or other iterable, a generator too) of
            :class:`FrameExample`, all with the same number of features per frame: a split of a
            :class:`FrameTask` or part of one (``task.train[:8]``; one example is ``[example]``).

    Returns:
        A :class:`FrameBatch`.

    Shapes:
        features: ``(B, max T, F)``; targets: ``(B, max(max T_y, 1))``; input_lengths,
        target_lengths: ``(B,)``.

    Raises:
        TypeError: ``examples`` is not a sequence (a :class:`FrameExample` or a :class:`FrameTask`
            given as the batch, a str, anything not iterable); an element is not a :class:`FrameExample`
            (the message names it, e.g. ``examples[2]``); its ``features`` is not a 2-D tensor; its
            ``labels`` is not a sequence of ints or a 1-D integer tensor or array (``examples[2].labels``);
            or a label is not an int (``examples[2].labels[0]``).
        ValueError: no examples, an example whose features per frame differ from those of
            ``examples[0]``, or a label outside ``[0, 2**63)`` (negative, or too large for ``torch.long``).

    Example:
        >>> task = frame_task(seed=0, num_train=4, num_valid=1, num_test=1)
        >>> batch = frame_batch(task.train)
        >>> batch.features.shape[0], batch.targets.shape[0], batch.input_lengths.tolist() == [
        ...     len(e.features) for e in task.train]
        (4, 4, True)
        >>> frame_batch(task.train[0])
        Traceback (most recent call last):
        ...
        TypeError: examples must be a sequence of FrameExamples, got a FrameExample; for one example pass [example]
    """
    if isinstance(examples, FrameExample):
        raise TypeError("examples must be a sequence of FrameExamples, got a FrameExample; "
                        "for one example pass [example]")
    if isinstance(examples, FrameTask):
        raise TypeError("examples must be a sequence of FrameExamples, got a FrameTask; "
                        "pass one of its splits (task.train)")
    examples = row_list("examples", examples, "FrameExamples")  # type: ignore[assignment]
    if len(examples) == 0:
        raise ValueError("examples must hold at least one example, got an empty sequence")
    labels = [_checked_example(i, e) for i, e in enumerate(examples)]
    width = examples[0].features.shape[1]
    for i, e in enumerate(examples):
        if e.features.shape[1] != width:
            raise ValueError(f"examples[{i}] must have {width} features per frame, as examples[0] has, "
                             f"got {e.features.shape[1]}")
    input_lengths = torch.tensor([len(e.features) for e in examples])
    target_lengths = torch.tensor([len(row) for row in labels])
    features = torch.zeros(len(examples), int(input_lengths.max()), width)
    targets = torch.full((len(examples), max(int(target_lengths.max()), 1)), FRAME_BLANK, dtype=torch.long)
    for b, (e, row) in enumerate(zip(examples, labels)):
        features[b, : len(e.features)] = e.features
        targets[b, : len(row)] = torch.tensor(row, dtype=torch.long)
    return FrameBatch(features=features, input_lengths=input_lengths, targets=targets, target_lengths=target_lengths)


def _checked_example(i: int, example: object) -> list[int]:
    """The labels of ``examples[i]`` (``id_list``), if it is a :class:`FrameExample` with ``(T, F)`` features."""
    if not isinstance(example, FrameExample):
        raise TypeError(f"examples[{i}] must be a FrameExample, got {type_text(example)}")
    if not isinstance(example.features, torch.Tensor) or example.features.dim() != 2:
        raise TypeError(f"examples[{i}].features must be a (T, F) tensor, got {type_text(example.features)}")
    return id_list(f"examples[{i}].labels", example.labels)
