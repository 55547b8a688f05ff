"""Tensors on two devices are refused by the loss, with a message naming both arguments and both devices.

PyTorch's own answer ("Tensor on device cpu is not on the expected device
meta!") names no argument. The meta device stands in for a second device: it
has no values, so no value check runs before the device check, and the CPU
suite reaches it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch

from coursekit.losses import (
    batch_loss,
    causal_lm_loss,
    chunked_cross_entropy,
    clipped_surrogate,
    confidence_penalty_nll,
    dpo_loss,
    dpo_rewards,
    generalized_jsd,
    kd_cross_entropy,
    kd_loss,
    kl_penalty,
    label_smoothed_nll,
    mrt_risk,
    policy_loss_aggregate,
    reinforce_loss,
    response_mask,
    sequence_importance_ratio,
    sequence_loss,
    simpo_loss,
    token_nll,
    top_k_kd_loss,
    top_k_teacher,
    turn_mask,
    vocab_parallel_cross_entropy,
)

pytestmark = pytest.mark.losses

Z = torch.zeros(2, 3, 4)  # logits (B, T, V)
Y = torch.zeros(2, 3, dtype=torch.long)  # targets (B, T)
L = torch.ones(2, 3)  # token losses, log-probabilities
M = torch.ones(2, 3, dtype=torch.bool)  # mask
P = torch.zeros(3)  # per-pair log-probabilities
N3 = torch.tensor([3, 4, 5])  # per-pair response lengths


def meta(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to("meta")


#: (argument on the meta device, the argument whose device it must share, call)
SECOND_DEVICE: list[tuple[str, str, Callable[[], object]]] = [
    ("targets", "logits", lambda: token_nll(Z, meta(Y))),
    ("weight", "logits", lambda: token_nll(Z, Y, weight=meta(torch.ones(4)))),
    ("mask", "token_losses", lambda: sequence_loss(L, meta(M))),
    ("mask", "token_losses", lambda: batch_loss(L, meta(M))),
    ("token_weights", "token_losses", lambda: batch_loss(L, M, token_weights=meta(L))),
    ("input_ids", "logits", lambda: causal_lm_loss(Z, meta(Y))),
    ("loss_mask", "logits", lambda: causal_lm_loss(Z, Y, loss_mask=meta(M))),
    ("num_items_in_batch", "logits", lambda: causal_lm_loss(Z, Y, num_items_in_batch=meta(torch.tensor([4.0])))),
    ("targets", "logits", lambda: confidence_penalty_nll(Z, meta(Y), 0.1)),
    ("targets", "logits", lambda: label_smoothed_nll(Z, meta(Y), 0.1)),
    ("teacher_logits", "student_logits", lambda: kd_loss(Z, meta(Z))),
    ("mask", "student_logits", lambda: kd_loss(Z, Z, mask=meta(M))),
    ("teacher_logits", "student_logits", lambda: kd_cross_entropy(Z, meta(Z))),
    ("teacher_logits", "student_logits", lambda: generalized_jsd(Z, meta(Z))),
    ("teacher_log_probs", "student_logits", lambda: top_k_kd_loss(Z, *[meta(t) for t in top_k_teacher(Z, 2)])),
    ("teacher_indices", "student_logits",
     lambda: top_k_kd_loss(Z, top_k_teacher(Z, 2)[0], meta(top_k_teacher(Z, 2)[1]))),
    ("costs", "sequence_log_probs", lambda: mrt_risk(L, meta(L))),
    ("rewards", "sequence_log_probs", lambda: reinforce_loss(P, meta(P))),
    ("baseline", "rewards", lambda: reinforce_loss(P, P, baseline=meta(P))),
    ("reference_chosen_logps", "policy_chosen_logps", lambda: dpo_loss(P, P, meta(P), P)),
    ("policy_rejected_logps", "policy_chosen_logps", lambda: dpo_rewards(P, meta(P), P, P)),
    ("rejected_logps", "chosen_logps", lambda: simpo_loss(P, meta(P), N3, N3)),
    ("rejected_lengths", "chosen_logps", lambda: simpo_loss(P, P, N3, meta(N3))),
    ("old_log_probs", "log_probs", lambda: clipped_surrogate(L, meta(L), P[:2])),
    ("advantages", "log_probs", lambda: clipped_surrogate(L, L, meta(P[:2]))),
    ("ref_log_probs", "log_probs", lambda: kl_penalty(L, meta(L))),
    ("old_log_probs", "log_probs", lambda: sequence_importance_ratio(L, meta(L), None)),
    ("mask", "log_probs", lambda: sequence_importance_ratio(L, L, meta(M))),
    ("mask", "token_losses", lambda: policy_loss_aggregate(L, meta(M))),
    ("num_items_in_batch", "token_losses",
     lambda: policy_loss_aggregate(L, M, mode="dapo", num_items_in_batch=meta(torch.tensor([3.0])))),
    ("logit_shards[1]", "logit_shards[0]", lambda: vocab_parallel_cross_entropy([Z[..., :2], meta(Z[..., 2:])], Y)),
    ("targets", "logit_shards[0]", lambda: vocab_parallel_cross_entropy([Z[..., :2], Z[..., 2:]], meta(Y))),
    ("weight", "hidden", lambda: chunked_cross_entropy(Z.reshape(6, 4), meta(torch.zeros(5, 4)), Y.reshape(6))),
    ("bias", "hidden",
     lambda: chunked_cross_entropy(Z.reshape(6, 4), torch.zeros(5, 4), Y.reshape(6), bias=meta(torch.zeros(5)))),
    ("targets", "hidden", lambda: chunked_cross_entropy(Z.reshape(6, 4), torch.zeros(5, 4), meta(Y.reshape(6)))),
    ("prompt_lengths", "lengths", lambda: response_mask(meta(torch.tensor([1])), torch.tensor([2]))),
    ("scored_turns", "turn_lengths", lambda: turn_mask(torch.tensor([[1, 2]]), meta(torch.tensor([[1, 0]])))),
]


@pytest.mark.parametrize(("argument", "reference", "call"), SECOND_DEVICE,
                         ids=[f"{i}-{a}" for i, (a, _, _) in enumerate(SECOND_DEVICE)])
def test_a_tensor_on_another_device_is_a_value_error_naming_both_arguments_and_devices(argument, reference, call):
    expected = rf"^{re.escape(argument)} must be on the device of {re.escape(reference)} \(cpu\), got meta$"
    with pytest.raises(ValueError, match=expected):
        call()


def test_pytorchs_own_message_for_two_devices_names_no_argument():
    """Why the check exists: what the same inputs give without it."""
    with pytest.raises(RuntimeError) as raised:
        torch.exp(L - meta(L))
    assert "old_log_probs" not in str(raised.value) and "device" in str(raised.value)


@pytest.mark.parametrize("call", [
    lambda count: causal_lm_loss(Z, Y, num_items_in_batch=count),
    lambda count: policy_loss_aggregate(L, M, mode="dapo", num_items_in_batch=count),
], ids=["causal_lm_loss", "policy_loss_aggregate"])
def test_a_0d_cpu_token_count_is_allowed_with_tensors_anywhere(call):
    """PyTorch takes a 0-d CPU tensor with tensors of any device; Hugging Face may pass one."""
    count = torch.tensor(4.0)
    torch.testing.assert_close(call(count), call(4.0))


@pytest.mark.parametrize("call", [
    lambda count: causal_lm_loss(meta(Z), meta(Y), num_items_in_batch=count),
    lambda count: policy_loss_aggregate(meta(L), meta(M), mode="dapo", num_items_in_batch=count),
], ids=["causal_lm_loss", "policy_loss_aggregate"])
def test_a_0d_cpu_token_count_is_allowed_with_tensors_on_another_device(call):
    """The same on the meta device, where a device check without the 0-d CPU exception refuses it."""
    with_tensor, with_number = call(torch.tensor(4.0)), call(4.0)
    assert (with_tensor.device, with_tensor.shape, with_tensor.dtype) == \
        (with_number.device, with_number.shape, with_number.dtype) == (torch.device("meta"), torch.Size([]), Z.dtype)


def test_a_0d_cpu_baseline_is_allowed_as_pytorch_allows_it():
    torch.testing.assert_close(reinforce_loss(P, P + 1, baseline=torch.tensor(0.5)), reinforce_loss(P, P + 1, baseline=0.5))
    on_meta = reinforce_loss(meta(P), meta(P + 1), baseline=torch.tensor(0.5))
    assert on_meta.device == torch.device("meta") and on_meta.shape == torch.Size([])
