"""Out-of-process grading spec of a5_sequence_objectives (read by `coursekit grade`; never released).

Mirrors the notebook's hidden tests with inputs drawn, for each student, from
a seed derived from SEED (which exists only in this file), the course and the
student. CTC gradients are compared with respect to logits through
``log_softmax`` (as the notebook's hidden test does), so an adapter applies the
``log_softmax`` in the sandbox and the reference applies it here. The student's
``ctc_loss`` must run the forward algorithm itself: the operator behind
F.ctc_loss raises during its graded calls (it may still be used elsewhere in
the notebook, to check an answer against it).
"""

from __future__ import annotations

import numpy as np

from coursekit.grading.spec import AssignmentSpec, BannedOp, Case, FunctionQuestion
from coursekit.losses import ctc_loss, dpo_loss, mrt_risk, policy_loss_aggregate, reinforce_loss

SEED = 902_115_337

CTC_ADAPTER = '''
def _coursekit_ctc(scores, targets, input_lengths, target_lengths, *, through_softmax, **options):
    if through_softmax:
        scores = scores.log_softmax(-1)
    return ctc_loss(scores, targets, input_lengths, target_lengths, **options)
'''


def _reference_ctc(scores, targets, input_lengths, target_lengths, *, through_softmax, **options):
    if through_softmax:
        scores = scores.log_softmax(-1)
    return ctc_loss(scores, targets, input_lengths, target_lengths, **options)


def _log_softmax(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    scores = rng.standard_normal(shape)
    scores = scores - scores.max(-1, keepdims=True)
    return scores - np.log(np.exp(scores).sum(-1, keepdims=True))


def ctc_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for steps, rows, classes, label_len in [(1, 1, 2, 1), (5, 3, 2, 2), (8, 4, 5, 3), (6, 2, 3, 4)]:
        for dtype in (np.float32, np.float64):
            log_probs = _log_softmax(rng, (steps, rows, classes)).astype(dtype)
            targets = rng.integers(1, classes, size=(rows, label_len)).astype(np.int64)
            input_lengths = rng.integers(max(1, steps - 2), steps + 1, size=rows).astype(np.int64)
            input_lengths[0] = steps
            target_lengths = rng.integers(0, label_len + 1, size=rows).astype(np.int64)
            for reduction in ("none", "sum", "mean"):
                for zero in (False, True):
                    cases.append(Case((log_probs, targets, input_lengths, target_lengths),
                                      {"through_softmax": True, "reduction": reduction, "zero_infinity": zero}))
            cases.append(Case((log_probs, targets - 1, input_lengths, target_lengths),
                              {"through_softmax": False, "blank": classes - 1, "reduction": "none"}, grad_wrt=()))
    return cases


def mrt_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for shape in [(1, 1), (1, 2), (4, 5), (2, 3, 6)]:
        for dtype in (np.float32, np.float64):
            log_probs = (-rng.random(shape) * 20).astype(dtype)
            costs = rng.random(shape).astype(dtype)
            for alpha in (1.0, 0.005, 3.0):
                cases.append(Case((log_probs, costs), {"alpha": alpha}))
            mask = rng.random(shape) < 0.6
            mask[..., 0] = True
            cases.append(Case((log_probs, costs), {"mask": mask}))
    return cases


def reinforce_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for shape in [(1,), (6,), (3, 4)]:
        for dtype in (np.float32, np.float64):
            log_probs = (-rng.random(shape) * 10).astype(dtype)
            rewards = rng.standard_normal(shape).astype(dtype)
            for baseline in (None, 0.3, "mean", rng.standard_normal(shape).astype(dtype)):
                cases.append(Case((log_probs, rewards), {"baseline": baseline}))
    return cases


def dpo_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for pairs in (1, 2, 8):
        for dtype in (np.float32, np.float64):
            args = tuple((-rng.random(pairs) * 30).astype(dtype) for _ in range(4))
            for beta in (0.1, 1.0, 5.0):
                for reduction in ("mean", "sum", "none"):
                    cases.append(Case(args, {"beta": beta, "reduction": reduction}))
    return cases


def policy_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for shape in [(1, 1), (4, 1), (6, 9), (2, 3, 5)]:
        for dtype in (np.float32, np.float64):
            losses = rng.standard_normal(shape).astype(dtype)
            mask = rng.random(shape) < 0.7
            mask.reshape(-1)[0] = True
            if shape[0] > 1:
                mask[-1] = False
            for mode in ("grpo", "dapo", "dr_grpo"):
                cases.append(Case((losses, mask), {"mode": mode}))
            cases.append(Case((losses, mask), {"mode": "dr_grpo", "max_len": shape[-1] + 3}))
            cases.append(Case((losses, None), {"mode": "grpo"}))
    return cases


SPEC = AssignmentSpec(
    assignment="a5_sequence_objectives",
    notebook="a5_sequence_objectives",
    seed=SEED,
    questions=(
        FunctionQuestion("test_ctc_loss", "_coursekit_ctc", 5, ctc_cases, _reference_ctc, rtol=1e-4, atol=1e-4,
                         grad_wrt=(0,), adapter=CTC_ADAPTER, student_function="ctc_loss",
                         banned=(BannedOp("_ctc_loss", "F.ctc_loss"),), withholds=(ctc_loss,)),
        FunctionQuestion("test_mrt_risk", "mrt_risk", 2, mrt_cases, mrt_risk, rtol=1e-4, atol=1e-5, grad_wrt=(0,)),
        FunctionQuestion("test_reinforce_loss", "reinforce_loss", 2, reinforce_cases, reinforce_loss,
                         rtol=1e-4, atol=1e-5, grad_wrt=(0, 1)),
        FunctionQuestion("test_dpo_loss", "dpo_loss", 2, dpo_cases, dpo_loss, rtol=1e-4, atol=1e-5,
                         grad_wrt=(0, 1, 2, 3)),
        FunctionQuestion("test_policy_loss_aggregate", "policy_loss_aggregate", 3, policy_cases, policy_loss_aggregate,
                         rtol=1e-4, atol=1e-5, grad_wrt=(0,)),
    ),
)
