"""coursekit.models.bigram: relative frequencies by hand, mass by length against enumeration, sampling."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coursekit.models import mass_by_length, relative_frequencies, sample_bigram
from tests.strategies import gradcheck64, seeds

pytestmark = pytest.mark.models


def _random_table(seed: int, num_contexts: int, num_classes: int) -> torch.Tensor:
    logits = torch.randn(num_contexts, num_classes, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.softmax(logits, dim=-1)


def _enumerated_mass(table: torch.Tensor, start: int, length: int, eos: int | None) -> float:
    """The mass of length `length` by summing over every token sequence (the definition)."""
    tokens = [k for k in range(table.shape[1]) if k != eos]
    total = 0.0
    for sequence in itertools.product(tokens, repeat=length):
        probability, context = 1.0, start
        for token in sequence:
            probability *= float(table[context, token])
            context = token
        total += probability * (float(table[context, eos]) if eos is not None else 1.0)
    return total


def test_relative_frequencies_match_hand_counts():
    # start = 3: "0 1", "0 0 2", "2"; targets end each sentence with eos = 3 (a column only)
    contexts = torch.tensor([3, 0, 1, 3, 0, 0, 2, 3, 2])
    targets = torch.tensor([0, 1, 3, 0, 0, 2, 3, 2, 3])
    table = relative_frequencies(contexts, targets, num_contexts=4, num_classes=4)
    assert table[3].tolist() == pytest.approx([2 / 3, 0, 1 / 3, 0])
    assert table[0].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0])
    assert table[1].tolist() == pytest.approx([0, 0, 0, 1])
    assert table[2].tolist() == pytest.approx([0, 0, 0, 1])


def test_relative_frequencies_skip_ignored_targets_and_make_unseen_rows_uniform():
    contexts = torch.tensor([[2, 0, 0], [2, 1, 7]])          # context 7 is out of range, but ignored
    targets = torch.tensor([[0, 1, -100], [1, -100, -100]])
    table = relative_frequencies(contexts, targets, num_contexts=3, num_classes=2)
    assert table[2].tolist() == pytest.approx([0.5, 0.5])
    assert table[0].tolist() == pytest.approx([0.0, 1.0])
    assert table[1].tolist() == pytest.approx([0.5, 0.5])     # never a counted context
    assert table.dtype == torch.float64


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=0, max_size=6), min_size=1, max_size=8))
def test_relative_frequencies_maximise_the_likelihood_of_their_own_data(sentences):
    # the table of relative frequencies scores its data at least as well as any perturbed table
    start, eos = 4, 4
    contexts = torch.tensor([c for s in sentences for c in [start, *s]])
    targets = torch.tensor([t for s in sentences for t in [*s, eos]])
    table = relative_frequencies(contexts, targets, num_contexts=5, num_classes=5)
    best = table[contexts, targets].log().sum()
    for seed in range(3):
        noise = torch.rand(5, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        other = 0.7 * table + 0.3 * noise / noise.sum(-1, keepdim=True)
        assert float(other[contexts, targets].log().sum()) <= float(best) + 1e-12


@settings(max_examples=20, deadline=None)
@given(seeds, st.integers(2, 3), st.booleans())
def test_mass_by_length_matches_the_sum_over_every_sequence(seed, num_tokens, with_eos):
    eos = num_tokens if with_eos else None
    start = num_tokens                                       # the row after the token rows
    table = _random_table(seed, num_tokens + 1, num_tokens + 1 if with_eos else num_tokens)
    masses = mass_by_length(table, start=start, max_length=4, eos=eos)
    assert masses.shape == (5,)
    for length in range(5):
        assert float(masses[length]) == pytest.approx(_enumerated_mass(table, start, length, eos), rel=1e-10)


def test_mass_without_eos_is_one_at_every_length_and_with_eos_adds_up_to_one():
    table = _random_table(0, 5, 5)                          # tokens 0..3, start = eos id = 4
    with_eos = mass_by_length(table, start=4, max_length=400, eos=4)
    assert float(with_eos.sum()) == pytest.approx(1.0, abs=1e-12)
    tokens_only = table[:, :4] / table[:, :4].sum(-1, keepdim=True)
    without = mass_by_length(tokens_only, start=4, max_length=10)
    assert without.tolist() == pytest.approx([1.0] * 11)


@pytest.mark.slow
@settings(max_examples=20, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2), min_size=1, max_size=7), min_size=1, max_size=10))
def test_maximum_likelihood_table_expects_the_mean_length_of_its_data(sentences):
    # fitted by relative frequencies, a bigram model with eos expects exactly the data's mean length
    start, eos = 3, 3
    contexts = torch.tensor([c for s in sentences for c in [start, *s]])
    targets = torch.tensor([t for s in sentences for t in [*s, eos]])
    table = relative_frequencies(contexts, targets, num_contexts=4, num_classes=4)
    masses = mass_by_length(table, start=start, max_length=3000, eos=eos)
    mean_length = sum(map(len, sentences)) / len(sentences)
    # every context of the data leads to eos in the data, so the fitted model stops with probability 1
    assert float(masses.sum()) == pytest.approx(1.0, abs=1e-9)
    expected = float((torch.arange(len(masses), dtype=torch.float64) * masses).sum())
    assert expected == pytest.approx(mean_length, rel=1e-6)


def test_mass_by_length_is_differentiable():
    logits = torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    assert gradcheck64(lambda z: mass_by_length(torch.softmax(z, -1), start=3, max_length=5, eos=3), (logits,))


@pytest.mark.parametrize("eos", [None, 1])
def test_mass_by_length_stays_on_the_device_of_its_table(eos):
    # "meta" tensors have no data: any working tensor created on the CPU would raise a device mismatch
    table = torch.tensor([[0.5, 0.5], [0.75, 0.25]], device="meta")
    masses = mass_by_length(table if eos is not None else table[:, :1], start=1, max_length=3, eos=eos)
    assert masses.device.type == "meta" and masses.shape == (4,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_relative_frequencies_and_mass_by_length_run_on_cuda_like_on_the_cpu():
    contexts, targets = torch.tensor([[2, 0, 1, 0]]), torch.tensor([[0, 1, 0, 2]])
    on_cpu = relative_frequencies(contexts, targets, num_contexts=3, num_classes=3)
    on_cuda = relative_frequencies(contexts.cuda(), targets.cuda(), num_contexts=3, num_classes=3)
    assert on_cuda.is_cuda and torch.equal(on_cuda.cpu(), on_cpu)
    masses = mass_by_length(on_cuda, start=2, max_length=6, eos=2)
    assert masses.is_cuda and torch.allclose(masses.cpu(), mass_by_length(on_cpu, start=2, max_length=6, eos=2))


def test_sampling_stops_at_eos_and_respects_the_budget():
    table = _random_table(2, 4, 4)                          # tokens 0..2, start = eos = 3
    generated = sample_bigram(table, torch.full((200,), 3), max_new_tokens=6,
                              generator=torch.Generator().manual_seed(0), eos=3)
    assert len(generated) == 200
    for row in generated:
        assert 1 <= len(row) <= 6
        assert 3 not in row[:-1]
    assert any(row[-1] == 3 for row in generated) and any(row[-1] != 3 for row in generated)


def test_sampling_without_eos_runs_to_the_budget_and_follows_the_table():
    table = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], dtype=torch.float64)   # start = 2
    generated = sample_bigram(table, torch.full((4000,), 2), max_new_tokens=3, generator=torch.Generator().manual_seed(0))
    assert all(len(row) == 3 for row in generated)
    after_zero = [b for row in generated for a, b in zip(row, row[1:]) if a == 0]
    assert sum(after_zero) / len(after_zero) == pytest.approx(0.1, abs=0.02)


def test_sampling_is_reproducible_with_the_same_generator():
    table = _random_table(3, 4, 4)
    first = sample_bigram(table, torch.tensor([3, 0, 1]), max_new_tokens=8, generator=torch.Generator().manual_seed(5), eos=3)
    again = sample_bigram(table, torch.tensor([3, 0, 1]), max_new_tokens=8, generator=torch.Generator().manual_seed(5), eos=3)
    assert first == again


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: mass_by_length(torch.ones(3, 3).long(), start=0, max_length=2), TypeError, "transitions must be a float"),
        (lambda: mass_by_length(torch.ones(3), start=0, max_length=2), ValueError, "shape \\(C, K\\)"),
        (lambda: mass_by_length(torch.ones(2, 3) / 3, start=0, max_length=2), ValueError, "a row for every token"),
        (lambda: mass_by_length(torch.ones(3, 3) / 3, start=3, max_length=2), ValueError, "start must be a context id"),
        (lambda: mass_by_length(torch.ones(3, 3) / 3, start=0, max_length=2, eos=3), ValueError, "eos must be a class id"),
        (lambda: mass_by_length(torch.ones(3, 3) / 3, start=0, max_length=-1), ValueError, "max_length must be"),
        (lambda: relative_frequencies(torch.tensor([0.0]), torch.tensor([0]), num_contexts=1, num_classes=1),
         TypeError, "contexts must be an integer tensor"),
        (lambda: relative_frequencies(torch.tensor([0, 1]), torch.tensor([0]), num_contexts=2, num_classes=1),
         ValueError, "targets must have the shape"),
        (lambda: relative_frequencies(torch.tensor([0]), torch.tensor([2]), num_contexts=1, num_classes=2),
         ValueError, "targets must hold ids in \\[0, 2\\) where counted, got 2"),
        (lambda: sample_bigram(torch.ones(2, 2) / 2, torch.tensor([2]), max_new_tokens=1,
                               generator=torch.Generator()), ValueError, "first_contexts must hold"),
        (lambda: sample_bigram(torch.ones(2, 2) / 2, torch.tensor([0]), max_new_tokens=0,
                               generator=torch.Generator()), ValueError, "max_new_tokens must be"),
        (lambda: sample_bigram(torch.ones(2, 2) / 2, torch.tensor([0]), max_new_tokens=1, generator=0),
         TypeError, "generator must be a torch.Generator"),
    ],
)
def test_bad_arguments_are_named_in_the_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
