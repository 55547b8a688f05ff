"""Every loss of coursekit.losses gives the same values and gradients on CUDA as on the CPU (to 1e-5).

Skipped where no CUDA device exists (CI has none); run on a GPU machine to check it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from coursekit.losses import (
    batch_loss,
    causal_lm_loss,
    dpo_loss,
    kd_cross_entropy,
    kd_loss,
    label_smoothed_nll,
    mrt_risk,
    policy_loss_aggregate,
    reinforce_loss,
    response_mask,
    sequence_loss,
    sequence_mask,
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
