"""coursekit.models.ctc: the recogniser, the collapsing map, best-path and prefix beam search decoding.

The decoders are checked against brute force: every path of a tiny input is enumerated and the
probabilities of the paths that read as each labelling are added up.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coursekit import recipes
from coursekit.evaluation import evaluate_ctc
from coursekit.losses import ctc_loss
from coursekit.models import CTCRecognizer, ctc_best_path, ctc_collapse, ctc_prefix_beam_search
from coursekit.train import seeded
from tests.strategies import generator, seeds

pytestmark = [pytest.mark.models, pytest.mark.usefixtures("one_thread")]


def random_log_probs(seed: int, num_frames: int, num_classes: int, sharpness: float = 2.0) -> torch.Tensor:
    logits = torch.randn(num_frames, num_classes, generator=generator(seed), dtype=torch.float64) * sharpness
    return torch.log_softmax(logits, dim=-1)


def labelling_probabilities(log_probs: torch.Tensor, blank: int = 0) -> dict[tuple[int, ...], float]:
    """p(labels | x) of every labelling, by enumerating all V^T paths."""
    probs = log_probs.exp()
    totals: dict[tuple[int, ...], float] = defaultdict(float)
    for path in itertools.product(range(probs.shape[1]), repeat=probs.shape[0]):
        totals[tuple(ctc_collapse(list(path), blank=blank))] += math.prod(
            float(probs[t, k]) for t, k in enumerate(path))
    return dict(totals)


def test_collapse_merges_repeats_before_deleting_blanks() -> None:
    assert ctc_collapse([1, 1, 0, 1]) == [1, 1]
    assert ctc_collapse([1, 0, 0, 1, 1, 2]) == [1, 1, 2]
    assert ctc_collapse([2, 2, 1, 2], blank=2) == [1]
    assert ctc_collapse([]) == []


@settings(max_examples=25, deadline=None)
@given(seed=seeds, num_frames=st.integers(1, 5), num_classes=st.integers(2, 4), blank=st.integers(0, 1))
def test_best_path_reads_the_most_probable_path(seed: int, num_frames: int, num_classes: int, blank: int) -> None:
    log_probs = random_log_probs(seed, num_frames, num_classes)
    paths = itertools.product(range(num_classes), repeat=num_frames)
    best = max(paths, key=lambda path: sum(float(log_probs[t, k]) for t, k in enumerate(path)))
    assert ctc_best_path(log_probs, blank=blank) == ctc_collapse(list(best), blank=blank)


@settings(max_examples=25, deadline=None)
@given(seed=seeds, num_frames=st.integers(1, 5), num_classes=st.integers(2, 4), sharpness=st.sampled_from([0.5, 2.0]))
def test_an_unpruned_beam_finds_every_labelling_with_its_exact_probability(
    seed: int, num_frames: int, num_classes: int, sharpness: float
) -> None:
    log_probs = random_log_probs(seed, num_frames, num_classes, sharpness)
    exact = labelling_probabilities(log_probs)
    found = ctc_prefix_beam_search(log_probs, beam_size=10_000)
    assert {tuple(labels) for labels, _ in found} == set(exact)
    for labels, log_p in found:
        assert math.exp(log_p) == pytest.approx(exact[tuple(labels)], rel=1e-9)
    assert [lp for _, lp in found] == sorted((lp for _, lp in found), reverse=True)
    assert tuple(found[0][0]) == max(exact, key=exact.get)


def test_pruned_beam_scores_are_at_most_the_ctc_likelihood_of_the_labelling() -> None:
    log_probs = random_log_probs(11, 12, 5, sharpness=1.0)
    for labels, log_p in ctc_prefix_beam_search(log_probs, beam_size=16):
        exact = -ctc_loss(log_probs[:, None], torch.tensor([labels or [1]]), [12], [len(labels)], reduction="sum")
        # with pruning a prefix may lose some of its alignments, never gain any
        assert log_p <= float(exact) + 1e-9


def test_unpruned_beam_scores_equal_the_ctc_likelihood_of_the_labelling() -> None:
    log_probs = random_log_probs(12, 6, 4, sharpness=1.0)
    for labels, log_p in ctc_prefix_beam_search(log_probs, beam_size=100_000)[:20]:
        exact = -ctc_loss(log_probs[:, None], torch.tensor([labels or [1]]), [6], [len(labels)], reduction="sum")
        assert log_p == pytest.approx(float(exact), rel=1e-9)


def test_beam_search_finds_the_labelling_that_best_path_misses() -> None:
    # two frames of 0.6 blank / 0.4 "1": the best path "_ _" reads as nothing (0.36); "1" has 0.64
    log_probs = torch.tensor([[0.6, 0.4], [0.6, 0.4]], dtype=torch.float64).log()
    assert ctc_best_path(log_probs) == []
    (top, top_lp), (second, second_lp) = ctc_prefix_beam_search(log_probs, beam_size=4)
    assert (top, second) == ([1], [])
    assert math.exp(top_lp) == pytest.approx(0.64) and math.exp(second_lp) == pytest.approx(0.36)


def test_a_repeated_label_needs_a_blank_between_its_copies() -> None:
    # "1 1" can only be read from paths with a blank between the two 1s
    log_probs = torch.tensor([[0.1, 0.9], [0.5, 0.5], [0.1, 0.9]], dtype=torch.float64).log()
    found = dict((tuple(labels), math.exp(lp)) for labels, lp in ctc_prefix_beam_search(log_probs, beam_size=8))
    assert found[(1, 1)] == pytest.approx(0.9 * 0.5 * 0.9)
    assert found[(1,)] == pytest.approx(labelling_probabilities(log_probs)[(1,)])


def test_a_beam_of_one_keeps_a_single_prefix() -> None:
    found = ctc_prefix_beam_search(random_log_probs(3, 6, 4), beam_size=1)
    assert len(found) == 1


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: ctc_best_path(torch.zeros(2, 3, 4)), r"log_probs must be a float tensor of shape \(T, V\)"),
        (lambda: ctc_best_path(torch.zeros(2, 3, dtype=torch.long)), r"log_probs must be a float tensor"),
        (lambda: ctc_best_path(torch.zeros(2, 3), blank=3), r"blank must lie in \[0, 3\)"),
        (lambda: ctc_prefix_beam_search(torch.zeros(2, 3), beam_size=0), "beam_size must be an int >= 1"),
        (lambda: CTCRecognizer(4, 1), "num_classes must be an int >= 2"),
        (lambda: CTCRecognizer(4, 3)(torch.zeros(2, 5, 3), torch.tensor([5, 5])), r"features must have shape \(B, T, 4\)"),
        (lambda: CTCRecognizer(4, 3)(torch.zeros(2, 5, 4), torch.tensor([6, 5])), "input_lengths must hold 2 lengths"),
    ],
)
def test_bad_arguments_raise_naming_them(call, pattern: str) -> None:
    with pytest.raises((ValueError, TypeError), match=pattern):
        call()


def test_the_recogniser_reads_each_utterance_only_up_to_its_length() -> None:
    with seeded(0):
        model = CTCRecognizer(3, 4, hidden_size=5).eval()
    short, long = torch.randn(4, 3, generator=generator(1)), torch.randn(7, 3, generator=generator(2))
    padded = torch.zeros(2, 7, 3)
    padded[0, :4], padded[1] = short, long
    together = model(padded, torch.tensor([4, 7]))
    alone = model(short[None], torch.tensor([4]))
    torch.testing.assert_close(together[0, :4], alone[0])
    torch.testing.assert_close(together.exp().sum(-1), torch.ones(2, 7))


@pytest.mark.slow
def test_the_recipe_learns_to_read_the_frames_and_is_deterministic() -> None:
    model, history = recipes.train_ctc_recognizer(seed=0, epochs=2, progress=False)
    _, again = recipes.train_ctc_recognizer(seed=0, epochs=2, progress=False)
    assert history.step_loss == again.step_loss
    assert history.valid[-1] < history.valid[0] < 1.0
    assert history.epoch_loss[-1] < history.epoch_loss[0]
    task = recipes.ctc_data(0)
    best = evaluate_ctc(model, task.valid)
    beam = evaluate_ctc(model, task.valid, decoder="prefix_beam", beam_size=4)
    assert best.label_error_rate == pytest.approx(history.valid[-1])
    assert 0.0 <= beam.label_error_rate < 1.0 and len(beam.hypotheses) == len(task.valid)
