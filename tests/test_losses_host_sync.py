"""The losses never read a tensor value on the training path, so on an accelerator they never stall it.

Reading a value (``int(x)``, ``float(x)``, ``bool(x)``, ``x.item()``, boolean
indexing) makes the host wait for the device. The meta device has shapes and
dtypes but no values: any such read there raises. So running forward and
backward on meta tensors proves that no read is left on the path, whatever the
device. (Checks that read values run on the CPU only; see coursekit.losses.)
On a CUDA machine, tests/test_losses_cuda.py checks the same with PyTorch's
synchronisation debug mode.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from coursekit.losses import (
    batch_loss,
    causal_lm_loss,
    chunked_cross_entropy,
    clipped_surrogate,
    dpo_loss,
    kd_cross_entropy,
    kd_loss,
    kl_penalty,
    label_smoothed_nll,
    mrt_risk,
    policy_loss_aggregate,
    sequence_importance_ratio,
    top_k_kd_loss,
    sequence_loss,
    simpo_loss,
    token_nll,
    vocab_parallel_cross_entropy,
    z_loss,
)

pytestmark = pytest.mark.losses

META = torch.device("meta")
B, T, V, H = 3, 5, 7, 4


def floats(*shape: int) -> torch.Tensor:
    return torch.empty(shape, device=META).requires_grad_(True)


def longs(*shape: int) -> torch.Tensor:
    return torch.empty(shape, dtype=torch.long, device=META)


def bools(*shape: int) -> torch.Tensor:
    return torch.empty(shape, dtype=torch.bool, device=META)


# name -> function of no arguments returning (loss, float inputs)
CASES: dict[str, Callable[[], tuple[torch.Tensor, list[torch.Tensor]]]] = {}


def case(name: str):
    def register(fn):
        CASES[name] = fn
        return fn
    return register


@case("token_nll")
def _token_nll():
    z = floats(B, T, V)
    return token_nll(z, longs(B, T)), [z]


@case("sequence_loss mean")
def _sequence_loss():
    x = floats(B, T)
    return sequence_loss(x, bools(B, T), reduction="mean"), [x]


@case("batch_loss token_mean")
def _batch_token_mean():
    x = floats(B, T)
    return batch_loss(x, longs(B, T)), [x]


@case("batch_loss sequence_mean")
def _batch_sequence_mean():
    x = floats(B, T)
    return batch_loss(x, bools(B, T), reduction="sequence_mean"), [x]


@case("causal_lm_loss token_mean")
def _causal():
    z = floats(B, T, V)
    return causal_lm_loss(z, longs(B, T), loss_mask=longs(B, T)), [z]


@case("causal_lm_loss num_items_in_batch")
def _causal_items():
    z = floats(B, T, V)
    return causal_lm_loss(z, longs(B, T), num_items_in_batch=torch.empty((), device=META)), [z]


@case("causal_lm_loss bfloat16 upcast")
def _causal_bf16():
    z = torch.empty(B, T, V, device=META, dtype=torch.bfloat16).requires_grad_(True)
    return causal_lm_loss(z, longs(B, T), reduction="sequence_mean"), [z]


@case("label_smoothed_nll fairseq")
def _smoothing():
    z = floats(B, T, V)
    return label_smoothed_nll(z, longs(B, T), 0.1, variant="fairseq"), [z]


@case("kd_loss")
def _kd():
    s, t = floats(B, T, V), floats(B, T, V)
    return kd_loss(s, t, temperature=2.0, mask=bools(B, T), reduction="sequence_mean"), [s, t]


@case("kd_cross_entropy")
def _kd_ce():
    s, t = floats(B, T, V), floats(B, T, V)
    return kd_cross_entropy(s, t, mask=longs(B, T)), [s, t]


@case("mrt_risk")
def _mrt():
    p = floats(B, T)
    return mrt_risk(p, torch.empty(B, T, device=META), mask=bools(B, T)), [p]


@case("dpo_loss label smoothing")
def _dpo():
    xs = [floats(B) for _ in range(4)]
    return dpo_loss(*xs, label_smoothing=0.1), xs


@case("simpo_loss")
def _simpo():
    xs = [floats(B) for _ in range(2)]
    return simpo_loss(*xs, longs(B), longs(B)), xs


@case("GRPO objective")
def _grpo():
    lp = floats(B, T)
    old, ref, mask = torch.empty(B, T, device=META), torch.empty(B, T, device=META), longs(B, T)
    per_token = clipped_surrogate(lp, old, torch.empty(B, device=META), eps_high=0.28) + 0.04 * kl_penalty(lp, ref)
    return policy_loss_aggregate(per_token, mask, mode="grpo"), [lp]


@pytest.mark.parametrize("mode", ["bnpo", "dapo", "dr_grpo"])
def test_policy_aggregation_reads_no_value(mode):
    x = floats(B, T)
    options = {"num_items_in_batch": torch.empty((), device=META)} if mode == "dapo" else {}
    loss = policy_loss_aggregate(x, bools(B, T), mode=mode, **options)
    loss.backward()
    assert x.grad is not None and x.grad.device == META


@case("GSPO sequence ratio")
def _gspo():
    lp = floats(B, T)
    return sequence_importance_ratio(lp, torch.empty(B, T, device=META), bools(B, T)).sum(), [lp]


@case("z_loss")
def _z_loss():
    z = floats(B, T, V)
    return z_loss(z), [z]


@case("top_k_kd_loss")
def _top_k_kd():
    z = floats(B, T, V)
    return top_k_kd_loss(z, floats(B, T, 2).detach(), longs(B, T, 2)), [z]


@case("vocab_parallel_cross_entropy")
def _vocab_parallel():
    shards = [floats(B, T, 3), floats(B, T, V - 3)]
    return vocab_parallel_cross_entropy(shards, longs(B, T)), shards


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_chunked_cross_entropy_reads_no_value_in_either_backward(reduction, dtype):
    # float16 has its own backward (the upstream gradient, a GradScaler's loss scale, goes into the row scale).
    hidden = torch.empty(B * T, H, device=META, dtype=dtype).requires_grad_(True)
    weight = torch.empty(V, H, device=META, dtype=dtype).requires_grad_(True)
    loss = 2 * chunked_cross_entropy(hidden, weight, longs(B * T), chunk_size=4, reduction=reduction).sum()
    loss.backward(retain_graph=True)  # the first backward hands over the gradients of the forward pass
    loss.backward()  # the second recomputes them
    assert hidden.grad is not None and weight.grad is not None


@pytest.mark.parametrize("name", list(CASES))
def test_forward_and_backward_read_no_value(name):
    loss, inputs = CASES[name]()
    assert loss.device == META
    loss.sum().backward()
    assert all(x.grad is not None for x in inputs)
