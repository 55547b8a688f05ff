"""policy_loss_aggregate: GRPO, BNPO, DAPO and Dr. GRPO against NumPy, hand values, length bias, accumulation, gradcheck."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from coursekit.losses import batch_loss, policy_loss_aggregate
from tests.strategies import generator, gradcheck64, loss_settings, response_batches, token_loss_batches

pytestmark = [pytest.mark.losses, pytest.mark.a5]


def _numpy_policy(losses: np.ndarray, mask: np.ndarray, mode: str, max_len: int) -> float:
    kept = np.where(mask, losses, 0.0)
    counts = mask.sum(axis=-1)
    if mode == "dr_grpo":
        return float(kept.sum() / (losses.shape[0] * max_len))
    if counts.sum() == 0:
        return 0.0
    if mode in ("bnpo", "dapo"):
        return float(kept.sum() / counts.sum())
    nonempty = counts > 0
    return float(np.mean(kept.sum(axis=-1)[nonempty] / counts[nonempty]))


@loss_settings
@given(token_loss_batches(), st.sampled_from(["grpo", "bnpo", "dapo", "dr_grpo"]), st.integers(0, 3))
def test_modes_match_numpy(losses_and_mask, mode, extra_budget):
    losses, mask = losses_and_mask
    losses = losses - 2.5  # policy losses take both signs
    max_len = losses.shape[-1] + extra_budget
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = policy_loss_aggregate(losses, mask, mode=mode, max_len=max_len)
    expected = _numpy_policy(losses.double().numpy(), mask.numpy(), mode, max_len)
    assert got.dtype == losses.dtype
    assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_hand_values_and_length_bias():
    losses = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 3.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    assert policy_loss_aggregate(losses, mask, mode="grpo").item() == pytest.approx(2.0)
    assert policy_loss_aggregate(losses, mask, mode="dapo").item() == pytest.approx(10 / 6)
    assert policy_loss_aggregate(losses, mask, mode="dr_grpo").item() == pytest.approx(10 / 8)
    assert policy_loss_aggregate(losses, mask, mode="dr_grpo", max_len=10).item() == pytest.approx(0.5)
    # Per-token gradient weights: GRPO gives a token of the short response 1/(2*2), of the long one 1/(2*4).
    x = losses.clone().requires_grad_(True)
    policy_loss_aggregate(x, mask, mode="grpo").backward()
    torch.testing.assert_close(x.grad, torch.tensor([[0.125] * 4, [0.25, 0.25, 0.0, 0.0]]))
    x.grad = None
    policy_loss_aggregate(x, mask, mode="dapo").backward()
    torch.testing.assert_close(x.grad, mask.float() / 6)


def test_grpo_and_dapo_are_the_sequence_and_token_means():
    losses = torch.rand(3, 5, generator=generator(0))
    mask = torch.rand(3, 5, generator=generator(1)) < 0.6
    mask[0, 0] = True
    torch.testing.assert_close(policy_loss_aggregate(losses, mask, mode="grpo"), batch_loss(losses, mask, reduction="sequence_mean"))
    torch.testing.assert_close(policy_loss_aggregate(losses, mask, mode="dapo"), batch_loss(losses, mask, reduction="token_mean"))


def test_empty_response_is_left_out_of_grpo_but_counted_by_dr_grpo():
    losses = torch.tensor([[2.0, 4.0], [9.0, 9.0]])
    mask = torch.tensor([[True, True], [False, False]])
    assert policy_loss_aggregate(losses, mask, mode="grpo").item() == pytest.approx(3.0)
    assert policy_loss_aggregate(losses, mask, mode="dr_grpo").item() == pytest.approx(6 / 4)


@pytest.mark.parametrize("mode", ["grpo", "bnpo", "dapo"])
def test_all_masked_gives_zero_with_warning(mode):
    losses = torch.ones(2, 3, requires_grad=True)
    with pytest.warns(RuntimeWarning, match=rf"policy_loss_aggregate\(mode='{mode}'\): every token is masked"):
        value = policy_loss_aggregate(losses, torch.zeros(2, 3, dtype=torch.bool), mode=mode)
    assert value.item() == 0.0
    value.backward()
    torch.testing.assert_close(losses.grad, torch.zeros(2, 3))


def test_all_masked_dapo_with_num_items_in_batch_is_zero_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = policy_loss_aggregate(torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool), mode="dapo",
                                      num_items_in_batch=4)
    assert value.item() == 0.0


def test_all_masked_dr_grpo_is_zero_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert policy_loss_aggregate(torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool), mode="dr_grpo").item() == 0.0


@pytest.mark.parametrize("mode", ["grpo", "bnpo", "dapo", "dr_grpo"])
def test_an_empty_time_axis_gives_zero_in_every_mode(mode):
    # (G, 0): no token at all; dr_grpo's default T_max is the padded length, 0 here
    losses = torch.zeros(2, 0, dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the all-masked warning of the other modes
        value = policy_loss_aggregate(losses, None, mode=mode)
    assert value.item() == 0.0
    (gradient,) = torch.autograd.grad(value, losses)
    assert gradient.shape == (2, 0)


def test_masked_content_never_changes_value_or_gradient():
    losses = torch.randn(3, 4, generator=generator(2), dtype=torch.float64)
    mask = torch.tensor([[True, True, False, False], [True] * 4, [True, False, False, False]])
    other = torch.where(mask, losses, torch.full_like(losses, float("nan")))
    for mode in ("grpo", "bnpo", "dapo", "dr_grpo"):
        results = []
        for x in (losses, other):
            x = x.clone().requires_grad_(True)
            value = policy_loss_aggregate(x, mask, mode=mode)
            results.append((value.detach(), *torch.autograd.grad(value, x)))
        torch.testing.assert_close(results[0], results[1])


@pytest.mark.parametrize("mode", ["grpo", "bnpo", "dapo", "dr_grpo"])
def test_gradcheck_policy_loss_aggregate(mode):
    losses = torch.randn(3, 4, generator=generator(3), dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, False, False], [True] * 4, [False] * 4])
    options = {"num_items_in_batch": 9} if mode == "dapo" else {"max_len": 6} if mode == "dr_grpo" else {}
    assert gradcheck64(lambda x: policy_loss_aggregate(x, mask, mode=mode, **options), (losses,))


def test_bnpo_is_dapo_without_num_items_in_batch():
    losses = torch.randn(3, 5, generator=generator(4), dtype=torch.float64)
    mask = torch.rand(3, 5, generator=generator(5)) < 0.6
    mask[0, 0] = True
    torch.testing.assert_close(policy_loss_aggregate(losses, mask, mode="bnpo"),
                               policy_loss_aggregate(losses, mask, mode="dapo"))


@loss_settings
@given(response_batches(allow_empty_rows=True), st.integers(1, 3))
def test_dapo_micro_batches_with_num_items_in_batch_add_up_to_the_whole_batch_token_mean(batch, parts):
    losses, mask = batch.log_probs, batch.mask
    if not bool(batch.counted.any()):
        mask = torch.ones_like(mask)
    whole = policy_loss_aggregate(losses, mask, mode="bnpo")
    num_items = int((mask != 0).sum())
    pieces = [policy_loss_aggregate(x, m, mode="dapo", num_items_in_batch=num_items)
              for x, m in zip(losses.tensor_split(parts), mask.tensor_split(parts)) if x.shape[0]]
    torch.testing.assert_close(sum(pieces), whole)
    # num_items_in_batch may also be a tensor, as Hugging Face and TRL pass it
    as_tensor = torch.tensor(num_items)
    torch.testing.assert_close(
        policy_loss_aggregate(losses, mask, mode="dapo", num_items_in_batch=as_tensor), whole
    )


@pytest.mark.parametrize("count", [torch.tensor(0), torch.tensor(0.0), torch.tensor(0.5), 0.5, 0, 0.0])
def test_dapo_counts_num_items_in_batch_as_at_least_one(count):
    # TRL 1.16 divides by num_items_in_batch.clamp(min=1.0): a batch with every token masked has a count of 0.
    losses = torch.randn(2, 3, generator=generator(8), dtype=torch.float64, requires_grad=True)
    nothing = torch.zeros(2, 3, dtype=torch.bool)
    empty = policy_loss_aggregate(losses, nothing, mode="dapo", num_items_in_batch=count)
    assert empty.item() == 0.0
    (gradient,) = torch.autograd.grad(empty, losses)
    assert bool((gradient == 0).all())
    some = torch.tensor([[True, False, True], [False, False, True]])
    expected = losses.detach()[some].sum()  # divided by 1
    torch.testing.assert_close(policy_loss_aggregate(losses, some, mode="dapo", num_items_in_batch=count), expected)


def test_a_dapo_count_given_as_a_tensor_is_not_read_so_a_negative_one_counts_as_1_and_nan_gives_nan():
    # As documented: a tensor (which may live on the accelerator) is not read, so its value is not
    # checked; the clamp to at least 1 (TRL's clamp(min=1)) takes a negative count as 1 and keeps nan.
    # A Python number with those values is an error instead.
    losses = torch.randn(2, 3, generator=generator(9), dtype=torch.float64)
    some = torch.tensor([[True, False, True], [False, False, True]])
    masked_sum = losses[some].sum()
    torch.testing.assert_close(
        policy_loss_aggregate(losses, some, mode="dapo", num_items_in_batch=torch.tensor(-1.0)), masked_sum
    )
    assert policy_loss_aggregate(losses, some, mode="dapo", num_items_in_batch=torch.tensor(float("nan"))).isnan()
    for number in (-1, float("nan")):
        with pytest.raises(ValueError, match="num_items_in_batch must be a finite number >= 0"):
            policy_loss_aggregate(losses, some, mode="dapo", num_items_in_batch=number)


@loss_settings
@given(response_batches(), st.sampled_from(["grpo", "bnpo", "dapo", "dr_grpo"]))
def test_integer_masks_act_as_boolean_masks(batch, mode):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        torch.testing.assert_close(
            policy_loss_aggregate(batch.log_probs, batch.mask, mode=mode),
            policy_loss_aggregate(batch.log_probs, batch.counted, mode=mode),
        )
