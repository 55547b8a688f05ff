"""coursekit.data.frames: the synthetic frame task of chapter 7 and its batching."""

from __future__ import annotations

import pytest
import torch

from coursekit.data import FRAME_BLANK, FrameBatch, FrameExample, frame_batch, frame_task
from coursekit.data.frames import MAX_DRAWN

pytestmark = pytest.mark.models

SMALL = dict(num_train=20, num_valid=5, num_test=5)


def test_the_task_is_the_same_for_a_seed_and_differs_between_seeds() -> None:
    first, again, other = frame_task(seed=3, **SMALL), frame_task(seed=3, **SMALL), frame_task(seed=4, **SMALL)
    assert all(torch.equal(a.features, b.features) and a.labels == b.labels for a, b in zip(first.train, again.train))
    assert [e.labels for e in first.train] != [e.labels for e in other.train]


def test_every_label_holds_its_frames_with_one_onset_and_the_rest_is_silence() -> None:
    task = frame_task(seed=0, noise=0.0, frames_per_label=(2, 4), max_silence=2, **SMALL)
    prototypes: dict[int, torch.Tensor] = {}
    for example in task.train + task.valid + task.test:
        assert 2 <= len(example.labels) <= 5 and len(example.spans) == len(example.labels)
        covered = set()
        for label, (start, end) in zip(example.labels, example.spans):
            assert 2 <= end - start <= 4 and 1 <= label < task.num_classes
            frames = example.features[start:end]
            assert frames[0, -1] == 1 and (frames[1:, -1] == 0).all()
            # without noise every frame of a label is its prototype, the same in every example
            prototype = prototypes.setdefault(label, frames[0, :-1])
            assert torch.equal(frames[:, :-1], prototype.expand(end - start, -1))
            covered.update(range(start, end))
        silence = [t for t in range(len(example.features)) if t not in covered]
        assert (example.features[silence] == 0).all()
        starts = [start for start, _ in example.spans]
        assert starts == sorted(starts) and all(b[0] >= a[1] for a, b in zip(example.spans, example.spans[1:]))
        assert example.spans[0][0] <= 2 and len(example.features) - example.spans[-1][1] <= 2


def test_noise_has_the_requested_spread_around_the_prototypes() -> None:
    # the prototypes are drawn first, so a clean and a noisy task of one seed share them
    clean = frame_task(seed=1, noise=0.0, num_train=50, num_valid=1, num_test=1)
    prototypes = {label: e.features[start, :-1] for e in clean.train for label, (start, _) in zip(e.labels, e.spans)}
    noisy = frame_task(seed=1, noise=0.5, num_train=200, num_valid=1, num_test=1)
    residuals = []
    for example in noisy.train:
        expected = torch.zeros_like(example.features[:, :-1])
        for label, (start, end) in zip(example.labels, example.spans):
            expected[start:end] = prototypes[label]
        residuals.append(example.features[:, :-1] - expected)
    spread = torch.cat(residuals)
    assert spread.mean().abs() < 0.02 and spread.std().item() == pytest.approx(0.5, rel=0.02)


def test_frame_batch_pads_features_with_zeros_and_targets_with_the_blank() -> None:
    task = frame_task(seed=2, **SMALL)
    batch = frame_batch(task.train[:6])
    assert batch.features.shape == (6, int(batch.input_lengths.max()), task.feature_dim)
    for b, example in enumerate(task.train[:6]):
        n, k = len(example.features), len(example.labels)
        assert torch.equal(batch.features[b, :n], example.features) and (batch.features[b, n:] == 0).all()
        assert batch.targets[b, :k].tolist() == example.labels and (batch.targets[b, k:] == FRAME_BLANK).all()
        assert int(batch.input_lengths[b]) == n and int(batch.target_lengths[b]) == k


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"num_train": 0}, ValueError, "num_train must be an int >= 1"),
        ({"noise": -1.0}, ValueError, "noise must be >= 0.0"),
        ({"labels_per_example": (3, 2)}, ValueError, r"labels_per_example must be \(low, high\)"),
        ({"frames_per_label": (0, 2)}, ValueError, r"frames_per_label must be \(low, high\)"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0"),
        ({"num_labels": 2.0}, TypeError, "num_labels must be an int"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs: dict, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        frame_task(**{**SMALL, **kwargs})
    with pytest.raises(ValueError, match="examples must hold at least one example"):
        frame_batch([])


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"labels_per_example": (10**5000, 1)}, r"labels_per_example must be \(low, high\) ints with 1 <= low <= high "
                                                r"<= 1000, got \(an int of 16610 bits, 1\)$"),
        ({"frames_per_label": (1, 10**5000)}, r"frames_per_label must be .*, got \(1, an int of 16610 bits\)$"),
        ({"labels_per_example": (1, 2**70)}, r"labels_per_example must be .* <= 1000, got \(1, an int of 71 bits\)$"),
        ({"frames_per_label": (2**63 - 1, 2**63 - 1)}, r"frames_per_label must be .*, got \(9223372036854775807, 9223372036854775807\)$"),
        ({"max_silence": 2**70}, r"max_silence must be <= 1000 .*, got an int of 71 bits$"),
    ],
    ids=["1e5000 low", "1e5000 high", "2**70 high", "int64 max", "2**70 max_silence"],
)
def test_a_range_beyond_int64_is_a_value_error_naming_its_argument(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        frame_task(**{**SMALL, **kwargs})


def _ctc_losses_under_a_uniform_model(examples, num_classes: int) -> torch.Tensor:
    batch = frame_batch(examples)
    log_probs = torch.zeros(batch.features.shape[1], batch.features.shape[0], num_classes).log_softmax(-1)
    return torch.nn.functional.ctc_loss(log_probs, batch.targets, batch.input_lengths, batch.target_lengths,
                                        blank=FRAME_BLANK, reduction="none")


def _alignable(example) -> bool:
    labels = list(example.labels)
    repeats = sum(a == b for a, b in zip(labels, labels[1:]))
    return len(example.features) >= len(labels) + repeats


@pytest.mark.parametrize("settings", [{}, {"frames_per_label": (2, 2), "max_silence": 0}])
def test_with_runs_of_two_frames_or_more_every_example_is_alignable_by_ctc(settings: dict) -> None:
    # frames_per_label's Args: a low end >= 2 gives T >= 2L >= L + repeats.
    task = frame_task(seed=0, num_train=500, num_valid=1, num_test=1, **settings)
    assert all(_alignable(example) for example in task.train)
    assert bool(torch.isfinite(_ctc_losses_under_a_uniform_model(task.train, task.num_classes)).all())


def test_with_runs_of_one_frame_some_examples_cannot_be_aligned() -> None:
    # The count frames_per_label's Args quotes; T < L + repeats is exactly where CTC's loss is infinite.
    task = frame_task(seed=0, num_train=500, num_valid=1, num_test=1, frames_per_label=(1, 1), max_silence=0)
    infinite = torch.isinf(_ctc_losses_under_a_uniform_model(task.train, task.num_classes))
    assert int(infinite.sum()) == 206
    assert infinite.tolist() == [not _alignable(example) for example in task.train]


# --- frame_task's documented bounds, and a cap on what one example may hold (losses review r23, F5) -----------

@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"labels_per_example": (0, 2)}, ValueError,
         r"^labels_per_example must be \(low, high\) ints with 1 <= low <= high <= 1000, got \(0, 2\)$"),
        ({"frames_per_label": (1, 2**62)}, ValueError,
         r"^frames_per_label must be \(low, high\) ints with 1 <= low <= high <= 1000, got \(1, 4611686018427387904\)$"),
        ({"frames_per_label": (1, 10**9)}, ValueError,
         r"^frames_per_label must be \(low, high\) ints with 1 <= low <= high <= 1000, got \(1, 1000000000\)$"),
        ({"labels_per_example": (1, 1001)}, ValueError,
         r"^labels_per_example must be \(low, high\) ints with 1 <= low <= high <= 1000, got \(1, 1001\)$"),
        ({"max_silence": 1001}, ValueError, r"^max_silence must be <= 1000 \(frame_task's cap on a run\), got 1001$"),
        ({"max_silence": -1}, ValueError, r"^max_silence must be an int >= 0, got -1$"),
        ({"labels_per_example": (1, 2, 3)}, TypeError, r"^labels_per_example must be \(low, high\) ints, got a tuple of 3 items$"),
        ({"frames_per_label": [2]}, TypeError, r"^frames_per_label must be \(low, high\) ints, got a list of 1 item$"),
        ({"frames_per_label": 3}, TypeError, r"^frames_per_label must be \(low, high\) ints, got int$"),
        # losses review r25: torch overflowed unpacking the size and named no argument
        ({"prototype_dim": 2**63}, ValueError,
         r"^num_labels and prototype_dim must give the prototypes at most 2\*\*61 - 1 numbers \(\(num_labels \+ 1\) "
         r"\* prototype_dim float32 numbers of 4 bytes, at most 2\*\*63 - 1 bytes\), got num_labels=\d+ and "
         r"prototype_dim=an int of 64 bits$"),
        ({"num_labels": 2**63}, ValueError,
         r"^num_labels and prototype_dim must give .*, got num_labels=an int of 64 bits and prototype_dim=\d+$"),
        # losses review r27, F1: torch's limit is 2**63 - 1 bytes, so 2**61 float32 numbers passed the check
        ({"prototype_dim": 2**61 // 6 + 1}, ValueError,
         r"^num_labels and prototype_dim must give .*, got num_labels=5 and prototype_dim=384307168202282326$"),
        ({"num_labels": 1, "prototype_dim": 2**58, "labels_per_example": (1, 5), "frames_per_label": (1, 5),
          "max_silence": 2}, ValueError,
         r"^prototype_dim must be <= 62320081330099835 so that an example of up to 37 frames holds at most "
         r"2\*\*61 - 1 float32 numbers, got 288230376151711744$"),
    ],
    ids=["low end 0", "2**62 frames", "1e9 frames", "1001 labels", "1001 silence", "negative silence", "three bounds",
         "one bound", "int range", "2**63 features", "2**63 labels", "2**61 bytes of prototypes",
         "2**58 features in 37 frames"],
)
def test_frame_task_refuses_a_range_outside_its_documented_bounds_naming_it(kwargs, error, pattern):
    # (1, 2**62) passed the int64 check and died in [label] * duration with an empty MemoryError
    with pytest.raises(error, match=pattern):
        frame_task(**{**SMALL, **kwargs})


def test_frame_task_draws_at_the_cap_and_its_docstring_states_it():
    task = frame_task(num_train=1, num_valid=1, num_test=1, labels_per_example=(1, 1),
                      frames_per_label=(MAX_DRAWN, MAX_DRAWN), max_silence=MAX_DRAWN)
    assert all(end - start == MAX_DRAWN for e in task.train + task.valid + task.test for start, end in e.spans)
    assert all(MAX_DRAWN <= len(e.features) <= 3 * MAX_DRAWN for e in task.train + task.valid + task.test)
    # the longest example the caps allow, as MAX_DRAWN's comment and frame_task's docstring state it
    longest = MAX_DRAWN * MAX_DRAWN + (MAX_DRAWN + 1) * MAX_DRAWN
    assert longest == 2_001_000 and round(longest * 9 * 4 / 1e6) == 72
    doc = " ".join(frame_task.__doc__.split())
    assert f"MAX_DRAWN`` = {MAX_DRAWN}" in doc and "at most 2,001,000 frames" in doc
    # the size grows with prototype_dim, which is not capped: the docstring gives the bound in terms of it
    assert round(longest * 4 / 1e6) == 8 and "``8 MB * (prototype_dim + 1)``" in doc
    assert "``prototype_dim`` and the splits are not capped" in doc


# --- frame_batch names a bad batch or example (losses review r23, F4) -----------------------------------------

_TASK = frame_task(seed=0, num_train=3, num_valid=1, num_test=1)


def _example(features, labels=(1,)) -> FrameExample:
    return FrameExample(features=features, labels=list(labels), spans=[(0, 1)] * len(labels))


@pytest.mark.parametrize(
    ("examples", "error", "pattern"),
    [
        (_TASK, TypeError, r"^examples must be a sequence of FrameExamples, got a FrameTask; pass one of its splits \(task.train\)$"),
        (_TASK.train[0], TypeError,
         r"^examples must be a sequence of FrameExamples, got a FrameExample; for one example pass \[example\]$"),
        (7, TypeError, r"^examples must be a sequence of FrameExamples, got int$"),
        ("ab", TypeError, r"^examples must be a sequence of FrameExamples, got str$"),
        ([torch.zeros(3)], TypeError, r"^examples\[0\] must be a FrameExample, got a tensor of shape \(3,\) and dtype torch.float32$"),
        ([_TASK.train[0], None], TypeError, r"^examples\[1\] must be a FrameExample, got NoneType$"),
        ([_TASK.train[0], _example(torch.zeros(5, 4))], ValueError,
         r"^examples\[1\] must have 9 features per frame, as examples\[0\] has, got 4$"),
        ([_example(torch.zeros(5))], TypeError,
         r"^examples\[0\]\.features must be a \(T, F\) tensor, got a tensor of shape \(5,\) and dtype torch.float32$"),
        ([_example([[0.0] * 9] * 5)], TypeError, r"^examples\[0\]\.features must be a \(T, F\) tensor, got list$"),
        ([_example(torch.zeros(5, 9), labels=[1, 2.5])], TypeError, r"^examples\[0\]\.labels\[1\] must be an int, got float 2.5$"),
        ([_example(torch.zeros(5, 9), labels=[-1])], ValueError, r"^examples\[0\]\.labels\[0\] must lie in \[0, 2\*\*63\), got -1$"),
        ([_example(torch.zeros(5, 9), labels=[2**63])], ValueError,
         r"^examples\[0\]\.labels\[0\] must lie in \[0, 2\*\*63\), got an int of 64 bits$"),
        ([FrameExample(features=torch.zeros(5, 9), labels=None, spans=[])], TypeError,
         r"^examples\[0\]\.labels must be a sequence of ints, got NoneType$"),
        ((e for e in []), ValueError, r"^examples must hold at least one example, got an empty sequence$"),
    ],
    ids=["task", "one example", "int", "str", "tensor element", "None element", "widths differ", "1-D features",
         "list features", "float label", "negative label", "label 2**63", "None labels", "empty generator"],
)
def test_frame_batch_refuses_a_bad_batch_naming_the_example(examples, error, pattern):
    # len() of a task, an example or a generator raised "object of type ... has no len()"; a tensor element
    # gave AttributeError, a width mismatch PyTorch's "expanded size" RuntimeError, a float label was truncated
    with pytest.raises(error, match=pattern):
        frame_batch(examples)


def test_frame_batch_takes_a_generator_of_examples_as_its_list():
    want, got = frame_batch(_TASK.train), frame_batch(e for e in _TASK.train)
    assert all(torch.equal(getattr(got, f), getattr(want, f))
               for f in ("features", "input_lengths", "targets", "target_lengths"))


def test_frame_batch_says_which_fields_are_in_ctc_losss_layout():
    # losses review r23, F7c: features are (B, T, F); ctc_loss reads (T, B, V), so a model's output is transposed
    from coursekit.losses import ctc_loss

    doc = " ".join(FrameBatch.__doc__.split())
    assert "``(B, T, F)``" in doc and "``(T, B, V)``" in doc and "transpose(0, 1)" in doc
    batch = frame_batch(_TASK.train)
    log_probs = torch.randn(*batch.features.shape[:2], _TASK.num_classes).log_softmax(-1)     # (B, T, V)
    want = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), batch.targets, batch.input_lengths,
                                        batch.target_lengths, blank=FRAME_BLANK, reduction="none")
    got = ctc_loss(log_probs.transpose(0, 1), batch.targets, batch.input_lengths, batch.target_lengths,
                   blank=FRAME_BLANK, reduction="none")
    assert torch.allclose(got, want)


def test_frame_task_draws_float32_features_whatever_the_default_dtype():
    # losses review r28, F4: MAX_FEATURES counts 4-byte numbers; under a float64 default the tensors doubled
    import torch

    before = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        task = frame_task(seed=0, num_train=2, num_valid=1, num_test=1)
    finally:
        torch.set_default_dtype(before)
    assert {example.features.dtype for example in task.train} == {torch.float32}
    assert torch.equal(task.train[0].features, frame_task(seed=0, num_train=2, num_valid=1, num_test=1).train[0].features)
