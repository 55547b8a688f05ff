"""Every loss of coursekit.losses gives the same values and gradients on CUDA as on the CPU (to 1e-5).

Also what F.cross_entropy computes under CUDA autocast, which the autocast docstrings state.
Skipped where no CUDA device exists (CI has none); run on a GPU machine to check it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch

from coursekit.losses import (
    batch_loss,
    causal_lm_loss,
    chunked_cross_entropy,
    clipped_surrogate,
    ctc_loss,
    dpo_loss,
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
    sequence_mask,
    simpo_loss,
    token_nll,
)
from tests.strategies import IGNORE_INDEX, generator

pytestmark = [
    pytest.mark.losses,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

B, T, V = 3, 7, 11
LOGITS = torch.randn(B, T, V, generator=generator(0)) * 3
TEACHER = torch.randn(B, T, V, generator=generator(1)) * 3
IDS = torch.randint(0, V, (B, T), generator=generator(2))
LENGTHS = torch.tensor([7, 4, 0])
MASK = sequence_mask(LENGTHS, T)
TARGETS = IDS.masked_fill(~MASK, IGNORE_INDEX)
LOSSES = torch.rand(B, T, generator=generator(3)) * 4
SEQ_LOGP = -torch.rand(4, 5, generator=generator(4)) * 20
COSTS = torch.rand(4, 5, generator=generator(5))
PAIRS = [-torch.rand(6, generator=generator(10 + i)) * 30 for i in range(4)]

# name -> (function of the float inputs, float inputs, other inputs)
CASES: dict[str, tuple[Callable[..., torch.Tensor], list[torch.Tensor], list[torch.Tensor]]] = {
    "token_nll": (lambda z, y: token_nll(z, y), [LOGITS], [TARGETS]),
    "token_nll weighted": (lambda z, w, y: token_nll(z, y, weight=w), [LOGITS, torch.rand(V, generator=generator(6))], [TARGETS]),
    "sequence_loss mean": (lambda x, m: sequence_loss(x, m, reduction="mean")[:2], [LOSSES], [MASK]),
    "batch_loss token_mean": (lambda x, m: batch_loss(x, m), [LOSSES], [MASK]),
    "batch_loss sequence_mean": (lambda x, m: batch_loss(x, m, reduction="sequence_mean"), [LOSSES], [MASK]),
    "causal_lm_loss token_mean": (lambda z, y, m: causal_lm_loss(z, y, loss_mask=m), [LOGITS], [IDS, MASK]),
    "causal_lm_loss response none": (
        lambda z, y, p, n: causal_lm_loss(z, y, loss_mask=response_mask(p, n, T), reduction="none"),
        [LOGITS],
        [IDS, torch.tensor([2, 1, 0]), LENGTHS],
    ),
    "label_smoothed_nll pytorch": (lambda z, y: label_smoothed_nll(z, y, 0.1), [LOGITS], [TARGETS]),
    "label_smoothed_nll fairseq": (lambda z, y: label_smoothed_nll(z, y, 0.1, variant="fairseq"), [LOGITS], [TARGETS]),
    "kd_loss": (lambda s, t, m: kd_loss(s, t, temperature=2.0, mask=m, reduction="sequence_mean"), [LOGITS, TEACHER], [MASK]),
    "kd_cross_entropy": (lambda s, t, m: kd_cross_entropy(s, t, temperature=0.5, mask=m), [LOGITS, TEACHER], [MASK]),
    "mrt_risk": (lambda p, c: mrt_risk(p, c, alpha=0.5), [SEQ_LOGP], [COSTS]),
    "reinforce_loss": (lambda p, r: reinforce_loss(p, r, baseline="mean"), [SEQ_LOGP], [COSTS]),
    "dpo_loss": (lambda a, b, c, d: dpo_loss(a, b, c, d, beta=0.2), PAIRS, []),
    "policy grpo": (lambda x, m: policy_loss_aggregate(x, m, mode="grpo"), [LOSSES], [MASK]),
    "policy dr_grpo": (lambda x, m: policy_loss_aggregate(x, m, mode="dr_grpo", max_len=10), [LOSSES], [MASK]),
    "policy dapo num_items": (lambda x, m: policy_loss_aggregate(x, m, mode="dapo", num_items_in_batch=20), [LOSSES], [MASK.long()]),
    "causal_lm_loss num_items": (lambda z, y, m: causal_lm_loss(z, y, loss_mask=m, num_items_in_batch=9), [LOGITS], [IDS, MASK.int()]),
    "dpo_loss label smoothing": (lambda a, b, c, d: dpo_loss(a, b, c, d, beta=0.2, label_smoothing=0.1), PAIRS, []),
    "simpo_loss": (lambda a, b, n: simpo_loss(a, b, n, n + 2), PAIRS[:2], [torch.arange(1, 7)]),
    "clipped_surrogate + k3": (
        lambda lp, old, ref, adv: clipped_surrogate(lp, old, adv, eps_high=0.28) + 0.04 * kl_penalty(lp, ref),
        [-LOSSES], [-LOSSES.flip(0), -LOSSES.flip(1), torch.randn(B, generator=generator(7))],
    ),
    "sequence_importance_ratio": (lambda lp, old, m: sequence_importance_ratio(lp, old, m), [-LOSSES], [-LOSSES.flip(0), MASK]),
}


def _value_and_grads(fn: Callable[..., torch.Tensor], floats: list[torch.Tensor], others: list[torch.Tensor], device: str):
    inputs = [x.to(device).requires_grad_(True) for x in floats]
    value = fn(*inputs, *(o.to(device) for o in others))
    grads = torch.autograd.grad(value.sum(), inputs)
    return value.detach().cpu(), [g.cpu() for g in grads]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(CASES))
def test_cuda_matches_cpu(name, dtype):
    fn, floats, others = CASES[name]
    floats = [x.to(dtype) for x in floats]
    cpu_value, cpu_grads = _value_and_grads(fn, floats, others, "cpu")
    cuda_value, cuda_grads = _value_and_grads(fn, floats, others, "cuda")
    torch.testing.assert_close(cuda_value, cpu_value, atol=1e-5, rtol=1e-5)
    for cuda_grad, cpu_grad in zip(cuda_grads, cpu_grads):
        torch.testing.assert_close(cuda_grad, cpu_grad, atol=1e-5, rtol=1e-5)


def test_masks_are_made_on_the_device_of_lengths():
    lengths = LENGTHS.cuda()
    assert sequence_mask(lengths, T).device == lengths.device
    assert torch.equal(sequence_mask(lengths, T).cpu(), MASK)


def _training_inputs(device: str) -> dict[str, torch.Tensor]:
    """Inputs of a training step, made on ``device`` beforehand (a copy from the host may synchronise)."""
    return {
        "logits": LOGITS.detach().to(device).requires_grad_(True),
        "teacher": TEACHER.to(device),
        "ids": IDS.to(device),
        "targets": TARGETS.to(device),
        "mask": MASK.to(device),
        "int_mask": MASK.long().to(device),
        "losses": LOSSES.detach().to(device).requires_grad_(True),
        "log_probs": (-LOSSES).detach().to(device).requires_grad_(True),
        "old_log_probs": (-LOSSES.flip(0)).to(device),
        "ref_log_probs": (-2 * LOSSES).to(device),
        "advantages": torch.randn(B, generator=generator(9)).to(device),
        "num_tokens": torch.tensor(12).to(device),
        "pairs": [x.detach().to(device).requires_grad_(True) for x in PAIRS],
        "hidden": torch.randn(16, 8, generator=generator(10)).to(device).requires_grad_(True),
        "weight": torch.randn(V, 8, generator=generator(11)).to(device).requires_grad_(True),
        "class_ids": torch.randint(0, V, (16,), generator=generator(12)).to(device),
        # float16 has its own chunked backward (the loss scale goes into the row scale), the GradScaler path
        "hidden16": torch.randn(16, 8, generator=generator(13)).half().to(device).requires_grad_(True),
        "weight16": torch.randn(V, 8, generator=generator(14)).half().to(device).requires_grad_(True),
    }


def _training_steps(x: dict[str, torch.Tensor]) -> None:
    """One forward and backward of each loss a training step uses."""
    causal_lm_loss(x["logits"], x["ids"], loss_mask=x["mask"]).backward()
    causal_lm_loss(x["logits"], x["ids"], loss_mask=x["int_mask"], num_items_in_batch=x["num_tokens"]).backward()
    token_nll(x["logits"], x["targets"]).sum().backward()
    label_smoothed_nll(x["logits"], x["targets"], 0.1, variant="fairseq").backward()
    kd_loss(x["logits"], x["teacher"], mask=x["mask"], reduction="sequence_mean").backward()
    for mode in ("grpo", "bnpo", "dr_grpo"):
        policy_loss_aggregate(x["losses"], x["mask"], mode=mode).backward()
    per_token = clipped_surrogate(x["log_probs"], x["old_log_probs"], x["advantages"], eps_high=0.28)
    per_token = per_token + 0.04 * kl_penalty(x["log_probs"], x["ref_log_probs"])
    policy_loss_aggregate(per_token, x["int_mask"], mode="dapo", num_items_in_batch=x["num_tokens"]).backward()
    dpo_loss(*x["pairs"], label_smoothing=0.1).backward()
    (2 * chunked_cross_entropy(x["hidden"], x["weight"], x["class_ids"], chunk_size=5)).backward()
    (1024 * chunked_cross_entropy(x["hidden16"], x["weight16"], x["class_ids"], chunk_size=5)).backward()
    chunked_cross_entropy(x["hidden16"], x["weight16"], x["class_ids"], chunk_size=5, reduction="none").sum().backward()


def test_the_training_path_never_synchronises_the_device():
    assert "COURSEKIT_CHECK_VALUES" not in os.environ, "value checks were asked for on every device"
    _training_steps(_training_inputs("cuda"))  # warm-up: PyTorch's own first-call initialisation may synchronise
    inputs = _training_inputs("cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _training_steps(inputs)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_ctc_gradient_on_cuda_is_the_same_on_every_run():
    log_probs = (torch.randn(9, 4, 6, generator=generator(8), dtype=torch.float64) * 2).cuda().requires_grad_(True)
    targets = torch.tensor([[1, 1, 2, 1], [3, 2, 0, 0], [1, 2, 3, 4], [5, 5, 5, 0]]).cuda()
    lengths = (torch.tensor([9, 7, 9, 8]).cuda(), torch.tensor([4, 2, 4, 3]).cuda())
    grads = [torch.autograd.grad(ctc_loss(log_probs.log_softmax(-1), targets, *lengths), log_probs)[0] for _ in range(5)]
    assert all(torch.equal(grads[0], g) for g in grads[1:])


def test_value_checks_run_on_cuda_when_asked_for(monkeypatch):
    monkeypatch.setenv("COURSEKIT_CHECK_VALUES", "1")
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 11\) or ignore_index=-100, got 11"):
        token_nll(LOGITS.detach().cuda(), torch.full((B, T), V).cuda())
    with pytest.raises(ValueError, match=r"mask must hold only 0 and 1, got 2"):
        batch_loss(LOSSES.detach().cuda(), (MASK.long() * 2).cuda())


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_f_cross_entropy_under_cuda_autocast_rounds_its_log_probabilities_to_the_half_dtype(half):
    # "Mixed precision" in coursekit.losses: on CUDA, F.cross_entropy's log_softmax keeps the half dtype and only
    # nll_loss runs in float32, so token_nll (float32 from the logits on) is the closer to float64.
    g = generator(25)
    logits = (torch.randn(64, 1000, generator=g, dtype=torch.float64) * 3).to(half).cuda()
    targets = torch.randint(0, 1000, (64,), generator=g).cuda()
    with torch.autocast("cuda", dtype=half):
        got = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
        ours = token_nll(logits, targets)
    in_half = torch.nn.functional.nll_loss(torch.log_softmax(logits, -1).float(), targets, reduction="none")
    exact = torch.nn.functional.cross_entropy(logits.double(), targets, reduction="none")
    assert got.dtype == ours.dtype == torch.float32
    torch.testing.assert_close(got, in_half)
    assert (ours.double() - exact).abs().max() < (got.double() - exact).abs().max()
