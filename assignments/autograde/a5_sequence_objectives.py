"""Out-of-process grading spec of a5_sequence_objectives (read by `coursekit grade` and by the notebook's hidden blocks).

Not copied into the release (it lies outside ``source/``), but public in this repository,
like the source notebooks' solutions.

The one definition of each question (the notebook's hidden blocks evaluate it;
see ``coursekit.course.hidden_score``): its cases include the visible checks (a
label no alignment fits, a log-probability of -1000, the ValueErrors the
questions ask for) with inputs drawn, for each student, from a seed derived
from SEED, the course and the student, keyed by the course's grading secret
(SEED is public, like this file; the secret is not: see
coursekit.grading.secret). CTC gradients are compared with respect to logits
through ``log_softmax`` (F.ctc_loss's gradient with respect to log_probs
follows another convention), so an adapter applies the ``log_softmax`` in the
sandbox and the reference applies it here. The student's ``ctc_loss`` must run
the forward algorithm itself: the operator behind F.ctc_loss raises during its
graded calls (it may still be used elsewhere in the notebook, to check an
answer against it).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from coursekit.grading.spec import AssignmentSpec, BannedOp, Case, FunctionQuestion
from coursekit.losses import batch_loss, ctc_loss, dpo_loss, mrt_risk, policy_loss_aggregate, reinforce_loss

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
        # The visible check: a label that no alignment fits ("1 1" needs a blank between the copies).
        impossible = _log_softmax(rng, (2, 1, 2))
        for zero in (False, True):
            cases.append(Case((impossible, np.array([[1, 1]]), np.array([2]), np.array([2])),
                              {"through_softmax": False, "reduction": "none", "zero_infinity": zero}, grad_wrt=(),
                              label="a label no alignment fits"))
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
            if shape[-1] > 1:
                empty = mask.copy()
                empty.reshape(-1, shape[-1])[-1] = False
                cases.append(Case((log_probs, costs), {"mask": empty}, raises="ValueError",
                                  label="a row with no candidate"))
    return cases


def reinforce_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for shape in [(1,), (6,), (3, 4)]:
        for dtype in (np.float32, np.float64):
            log_probs = (-rng.random(shape) * 10).astype(dtype)
            rewards = rng.standard_normal(shape).astype(dtype)
            for baseline in (None, 0.3, "mean", rng.standard_normal(shape).astype(dtype)):
                label = "2-D rewards with the batch mean (the mean of every reward)" if (
                    len(shape) == 2 and isinstance(baseline, str)) else ""
                cases.append(Case((log_probs, rewards), {"baseline": baseline}, label=label))
    return cases


def dpo_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for pairs in (1, 2, 8):
        for dtype in (np.float32, np.float64):
            args = tuple((-rng.random(pairs) * 30).astype(dtype) for _ in range(4))
            for beta in (0.1, 1.0, 5.0):
                for reduction in ("mean", "sum", "none"):
                    cases.append(Case(args, {"beta": beta, "reduction": reduction}))
    for dtype in (np.float32, np.float64):
        far = np.array([-1000.0, -3.0], dtype=dtype), *(np.array([0.0, -2.0], dtype=dtype) for _ in range(3))
        cases.append(Case(far, {"beta": 1.0, "reduction": "none"}, label="a log-probability of -1000"))
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
    full = rng.standard_normal((2, 4))
    cases.append(Case((full, np.ones((2, 4), dtype=bool)), {"mode": "dr_grpo", "max_len": 2}, raises="ValueError",
                      naming="max_len", label="a response longer than max_len"))
    for mode in ("grpo", "dapo"):
        cases.append(Case((full, np.zeros((2, 4), dtype=bool)), {"mode": mode, "warned": True}, grad_wrt=(),
                          label="the RuntimeWarning when no token is unmasked"))
    return cases


POLICY_ADAPTER = '''
def _coursekit_policy(token_losses, mask, *, warned=False, **options):
    import torch as _torch
    import warnings as _warnings
    with _warnings.catch_warnings(record=True) as _caught:
        _warnings.simplefilter("always")
        _loss = policy_loss_aggregate(token_losses, mask, **options)
    if not warned:
        return _loss
    return [_loss, _torch.tensor(any(issubclass(_w.category, RuntimeWarning) for _w in _caught))]
'''


def _reference_policy(token_losses, mask, *, warned=False, **options):
    """``policy_loss_aggregate``; with ``warned``, also whether it warned (every case that asks has no token)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = policy_loss_aggregate(token_losses, mask, **options)
    return [loss, torch.tensor(True)] if warned else loss


SPEC = AssignmentSpec(
    assignment="a5_sequence_objectives",
    notebook="a5_sequence_objectives",
    seed=SEED,
    questions=(
        FunctionQuestion("test_ctc_loss", "_coursekit_ctc", 5, ctc_cases, _reference_ctc, rtol=1e-4, atol=1e-4,
                         grad_wrt=(0,), adapter=CTC_ADAPTER, student_function="ctc_loss",
                         banned=(BannedOp("_ctc_loss", "F.ctc_loss"),), withholds=(ctc_loss,),
                         adapter_options=("through_softmax",)),
        FunctionQuestion("test_mrt_risk", "mrt_risk", 2, mrt_cases, mrt_risk, rtol=1e-4, atol=1e-5, grad_wrt=(0,)),
        FunctionQuestion("test_reinforce_loss", "reinforce_loss", 2, reinforce_cases, reinforce_loss,
                         rtol=1e-4, atol=1e-5, grad_wrt=(0, 1)),
        FunctionQuestion("test_dpo_loss", "dpo_loss", 2, dpo_cases, dpo_loss, rtol=1e-4, atol=1e-5,
                         grad_wrt=(0, 1, 2, 3)),
        FunctionQuestion("test_policy_loss_aggregate", "_coursekit_policy", 3, policy_cases, _reference_policy,
                         rtol=1e-4, atol=1e-5, grad_wrt=(0,), adapter=POLICY_ADAPTER,
                         student_function="policy_loss_aggregate",
                         # batch_loss (a2's answer) computes the "grpo" and "dapo" modes, warning included.
                         withholds=(policy_loss_aggregate, batch_loss),
                         outputs=("the loss", "whether a RuntimeWarning was issued"), adapter_options=("warned",)),
    ),
)
