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

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from coursekit.data._checks import as_int, require_int, require_number, require_seed, shown
from coursekit.losses._checks import type_text

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
    """Padded frames and labels of several utterances, in the layout :func:`coursekit.losses.ctc_loss` reads.

    Attributes:
        features: ``(B, T, F)``, zero past each input length.
        input_lengths: ``(B,)`` frames per utterance.
        targets: ``(B, max T_y)`` labels, padded with the blank (at least one column).
        target_lengths: ``(B,)`` labels per utterance.
    """

    features: torch.Tensor
    input_lengths: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor


#: The largest value a range of frame_task may draw: ``torch.randint`` takes ``high + 1`` as an int64.
_MAX_DRAWN = 2**63 - 2


def _require_draw_bounds(name: str, bounds: object) -> tuple[int, int]:
    """``bounds`` as a pair of Python ints ``(low, high)``, if it holds two integers (``as_int``) with
    ``1 <= low <= high <= _MAX_DRAWN``.

    A ``TypeError`` names only the types received, so that a nested huge int is never printed.
    """
    is_pair = isinstance(bounds, (tuple, list)) and len(bounds) == 2
    pair = [as_int(b) for b in bounds] if is_pair else [None]
    if None in pair:
        received = f"({', '.join(type_text(b) for b in bounds)})" if is_pair else type_text(bounds)
        raise TypeError(f"{name} must be (low, high) ints, got {received}")
    low, high = pair
    if not 1 <= low <= high <= _MAX_DRAWN:
        raise ValueError(f"{name} must be (low, high) ints with 1 <= low <= high <= {_MAX_DRAWN}, "
                         f"got ({shown(low)}, {shown(high)})")
    return low, high


def frame_task(*, seed: int = 0, num_train: int = 1200, num_valid: int = 200, num_test: int = 200,
               num_labels: int = 5, prototype_dim: int = 8, noise: float = 0.8, labels_per_example: tuple[int, int] = (2, 5),
               frames_per_label: tuple[int, int] = (2, 5), max_silence: int = 2) -> FrameTask:
    """Generate the three splits of the task (deterministic for a seed).

    Args:
        seed: seeds the prototypes and every example.
        num_train, num_valid, num_test: examples per split.
        num_labels: distinct labels; the task has ``num_labels + 1`` classes with the blank.
        prototype_dim: features of a label's prototype; each frame has one more (the onset flag).
        noise: standard deviation of the Gaussian noise added to every feature but the onset flag.
        labels_per_example: smallest and largest number of labels of an utterance.
        frames_per_label: shortest and longest run of frames of one label. CTC can align an
            example only if its frames number at least its labels plus its repeated neighbours
            (``T >= L + repeats``: a blank must part "3 3"); with a low end >= 2 (the default
            ``(2, 5)``) every example has ``T >= 2L`` and so qualifies. With a low end of 1 that
            is not guaranteed, silence or not (a silence run may draw 0 frames): with
            ``(1, 1)`` and ``max_silence=0``, 206 of 500 training examples (seed 0) have an
            infinite CTC loss. Such examples are kept, not redrawn.
        max_silence: longest run of silence frames before, between and after labels (each run 0 .. max).

    Returns:
        A :class:`FrameTask`.

    Raises:
        TypeError: a size or a range bound that is not a Python or NumPy integer, a ``seed`` that is
            not a Python int, a ``noise`` that is not a real number.
        ValueError: a size that is not positive, a range whose low end exceeds its high end, or a
            negative or non-finite ``noise``.

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
    if max_silence > _MAX_DRAWN:
        raise ValueError(f"max_silence must be <= {_MAX_DRAWN} (torch.randint's int64 range), got {shown(max_silence)}")
    noise = require_number("noise", noise, low=0.0)
    labels_per_example = _require_draw_bounds("labels_per_example", labels_per_example)
    frames_per_label = _require_draw_bounds("frames_per_label", frames_per_label)
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.cat([torch.zeros(1, prototype_dim), torch.randn(num_labels, prototype_dim, generator=generator)])

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
        noisy = prototypes[index] + noise * torch.randn(len(classes), prototype_dim, generator=generator)
        features = torch.cat([noisy, torch.tensor(onsets).unsqueeze(1)], dim=1)
        return FrameExample(features=features, labels=labels, spans=spans)

    splits = [[example() for _ in range(n)] for n in (num_train, num_valid, num_test)]
    return FrameTask(train=splits[0], valid=splits[1], test=splits[2], num_classes=num_labels + 1,
                     feature_dim=prototype_dim + 1)


def frame_batch(examples: Sequence[FrameExample]) -> FrameBatch:
    """Pad the frames and the labels of ``examples`` into one :class:`FrameBatch`.

    Raises:
        ValueError: no examples.

    Example:
        >>> task = frame_task(seed=0, num_train=4, num_valid=1, num_test=1)
        >>> batch = frame_batch(task.train)
        >>> batch.features.shape[0], batch.targets.shape[0], batch.input_lengths.tolist() == [
        ...     len(e.features) for e in task.train]
        (4, 4, True)
    """
    if len(examples) == 0:
        raise ValueError("examples must hold at least one example, got an empty sequence")
    input_lengths = torch.tensor([len(e.features) for e in examples])
    target_lengths = torch.tensor([len(e.labels) for e in examples])
    features = torch.zeros(len(examples), int(input_lengths.max()), examples[0].features.shape[1])
    targets = torch.full((len(examples), max(int(target_lengths.max()), 1)), FRAME_BLANK, dtype=torch.long)
    for b, e in enumerate(examples):
        features[b, : len(e.features)] = e.features
        targets[b, : len(e.labels)] = torch.tensor(e.labels, dtype=torch.long)
    return FrameBatch(features=features, input_lengths=input_lengths, targets=targets, target_lengths=target_lengths)
