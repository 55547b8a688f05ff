"""Out-of-process grading spec of a1_sequence_loss (read by `coursekit grade` and by the notebook's hidden blocks).

Not copied into the release (it lies outside ``source/``), but public in this repository,
like the source notebooks' solutions.

Each question scores one autograder test cell of the notebook, and is its one
definition: the notebook's hidden blocks evaluate it (see
``coursekit.course.hidden_score``). The hidden inputs cover the edge cases
(shapes with T = 1, V = 2, ignored targets, all-padding rows, NaN under the
mask, float32 and float64) and the visible checks (the default reduction, an
unknown reduction's ValueError) but are drawn, for each student, from a seed
derived from SEED, the course and the student, keyed by the course's grading
secret (SEED is public, like this file; the secret is not: see
coursekit.grading.secret). ``token_nll`` must compute the log-normaliser
itself: the operators behind F.log_softmax, F.nll_loss and F.cross_entropy
raise during its graded calls.
"""

from __future__ import annotations

import math

import numpy as np

from coursekit.grading.spec import AssignmentSpec, BannedOp, Case, FunctionQuestion, ValueQuestion
from coursekit.losses import chunked_cross_entropy, perplexity, sequence_loss, token_nll

SEED = 730_214_557
#: what F.log_softmax and F.cross_entropy run (log_softmax), its sparse twin, and F.nll_loss (both layouts).
BANNED = (
    BannedOp("_log_softmax", "log_softmax (F.log_softmax, F.cross_entropy)"),
    BannedOp("_sparse_log_softmax", "log_softmax (torch.sparse.log_softmax)"),
    BannedOp("nll_loss_forward", "F.nll_loss"),
    BannedOp("nll_loss2d_forward", "F.nll_loss"),
)


def token_nll_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for shape, vocab in [((1, 1), 2), ((3, 5), 2), ((2, 7), 11), ((6,), 5), ((2, 3, 4), 3), ((4, 9), 50)]:
        for dtype in (np.float32, np.float64):
            logits = (rng.standard_normal(shape + (vocab,)) * 4).astype(dtype)
            targets = rng.integers(0, vocab, size=shape).astype(np.int64)
            targets[rng.random(shape) < 0.3] = -100
            cases.append(Case((logits, targets)))
    for dtype in (np.float32, np.float64):
        large = (rng.standard_normal((2, 3, 6)) * 1000).astype(dtype)
        # A stable answer adds the shift back (log-sum + max - picked); in float32 that rounds to a few units in
        # the last place of the logits' size (8 ulp of max|logits| covers it), which may exceed the default
        # atol where the loss itself is small.
        atol = 8 * float(np.finfo(dtype).eps) * float(np.abs(large).max()) if dtype == np.float32 else None
        cases.append(Case((large, rng.integers(0, 6, size=(2, 3)).astype(np.int64)), label="logits of size 1000",
                          atol=atol))
    custom = rng.integers(0, 4, size=(3, 4)).astype(np.int64)
    custom[0, 1] = -1
    cases.append(Case((rng.standard_normal((3, 4, 4)), custom), {"ignore_index": -1}, label="an ignore_index of -1"))
    return cases


def sequence_loss_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for shape in [(1, 1), (4, 1), (3, 6), (7,), (2, 3, 5)]:
        for dtype in (np.float32, np.float64):
            losses = (rng.random(shape) * 3).astype(dtype)
            mask = rng.random(shape) < 0.7
            if len(shape) >= 2:
                mask[0] = False
            losses = np.where(mask, losses, np.nan).astype(dtype)
            for reduction in ("sum", "mean"):
                cases.append(Case((losses, mask), {"reduction": reduction}))
    plain = rng.random((3, 4))
    cases.append(Case((plain,), {"reduction": "sum"}))
    cases.append(Case((plain,), {"reduction": "mean"}))
    # The visible checks: the default reduction is "sum"; an unknown one raises a ValueError naming it.
    cases.append(Case((plain, rng.random((3, 4)) < 0.7), label="the default reduction"))
    cases.append(Case((plain,), {"reduction": "average"}, raises="ValueError", naming="reduction",
                      label="an unknown reduction"))
    return cases


def perplexity_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for shape in [(), (1,), (5,), (2, 3)]:
        for dtype in (np.float32, np.float64):
            cases.append(Case((np.asarray(rng.random(shape) * 5, dtype=dtype),)))
    for number in (0.0, 1.386294, 2.302585, float(rng.random() * 4)):
        cases.append(Case((number,), grad_wrt=()))
    return cases


SPEC = AssignmentSpec(
    assignment="a1_sequence_loss",
    notebook="a1_sequence_loss",
    seed=SEED,
    questions=(
        FunctionQuestion(
            grade_id="test_token_nll",
            function="token_nll",
            points=3,
            cases=token_nll_cases,
            reference=token_nll,
            rtol=1e-4,
            atol=1e-5,
            grad_wrt=(0,),
            banned=BANNED,
            # The course's chunked cross-entropy, called with an identity weight, is a token NLL whose log-softmax
            # the ban does not see: it is withheld, as the reference is.
            withholds=(chunked_cross_entropy,),
        ),
        FunctionQuestion(
            grade_id="test_sequence_loss",
            function="sequence_loss",
            points=3,
            cases=sequence_loss_cases,
            reference=sequence_loss,
            rtol=1e-4,
            atol=1e-5,
            grad_wrt=(0,),
        ),
        FunctionQuestion(
            grade_id="test_perplexity",
            function="perplexity",
            points=1,
            cases=perplexity_cases,
            reference=perplexity,
            rtol=1e-4,
            atol=1e-5,
            grad_wrt=(0,),
        ),
        ValueQuestion(
            grade_id="test_fox",
            points=2,
            answers={
                "fox_total": (1.0,),
                "fox_mean": (0.25,),
                "fox_perplexity": (math.exp(0.25),),
                "halves_total": (6 * math.log(2),),
                "halves_bits": (2.0,),
                "halves_perplexity": (4.0,),
            },
            rtol=1e-4,
            atol=1e-4,
        ),
        ValueQuestion(grade_id="test_mc_classification", points=1, answers={"mc_classification": ("B",)}),
    ),
)
