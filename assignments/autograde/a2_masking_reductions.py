"""Out-of-process grading spec of a2_masking_reductions (read by `coursekit grade` and by the notebook's hidden blocks).

Not copied into the release (it lies outside ``source/``), but public in this repository,
like the source notebooks' solutions.

The one definition of each question (the notebook's hidden blocks evaluate it;
see ``coursekit.course.hidden_score``): the edge cases (T = 0 and T = 1,
all-padding rows, NaN under the mask, float32 and float64, a micro-batch with
no unmasked token) and every visible check (bool masks, the ValueErrors that
name their argument, an input left unmodified, the RuntimeWarning of an empty
batch, a Python float returned), with inputs drawn, for each student, from a
seed derived from SEED, the course and the student, keyed by the course's
grading secret (SEED is public, like this file; the secret is not: see
coursekit.grading.secret). The gradient accumulation question needs a model and
a list of micro-batches, so an adapter builds them in the sandbox from plain
arrays; its outputs (the returned loss and the accumulated gradients) are
compared with the full batch's token mean computed here.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from coursekit.grading.spec import AssignmentSpec, Case, FunctionQuestion
from coursekit.losses import batch_loss, causal_lm_loss, chunked_cross_entropy, response_mask, sequence_mask

SEED = 418_907_263


def sequence_mask_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for rows, steps in [(1, 1), (1, 5), (4, 1), (6, 9), (3, 0), (2, 4)]:
        lengths = rng.integers(0, steps + 1, size=rows).astype(np.int64)
        cases.append(Case((lengths, steps)))
        if rows and steps:
            cases.append(Case((lengths,)))
    too_long = rng.integers(0, 5, size=3).astype(np.int64)
    too_long[1] = 6
    cases.append(Case((too_long, 5), raises="ValueError", naming="lengths", label="a length above max_len"))
    cases.append(Case((-too_long, 5), raises="ValueError", naming="lengths", label="a negative length"))
    return cases


def response_mask_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for rows, steps in [(1, 1), (2, 6), (5, 9), (3, 4)]:
        lengths = rng.integers(0, steps + 1, size=rows).astype(np.int64)
        prompts = np.minimum((rng.random(rows) * (lengths + 1)).astype(np.int64), lengths)
        cases.append(Case((prompts, lengths, steps)))
        cases.append(Case((prompts, lengths)))
    lengths = rng.integers(1, 4, size=3).astype(np.int64)
    cases.append(Case((lengths + 1, lengths, 4), raises="ValueError", naming="prompt_lengths",
                      label="a prompt longer than its row"))
    return cases


LABELS_ADAPTER = '''
def _coursekit_labels_from_mask(input_ids, loss_mask, **options):
    _labels = labels_from_mask(input_ids, loss_mask, **options)
    return [_labels, input_ids, loss_mask]
'''


def _labels_from_mask(input_ids: torch.Tensor, loss_mask: torch.Tensor, *, ignore_index: int = -100) -> list:
    """The labels, and the inputs as they must be after the call: unmodified."""
    return [torch.where(loss_mask, input_ids, torch.full_like(input_ids, ignore_index)), input_ids, loss_mask]


def labels_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for shape in [(1, 1), (3, 7), (2, 2, 5)]:
        ids = rng.integers(0, 50, size=shape).astype(np.int64)
        mask = rng.random(shape) < 0.5
        cases.append(Case((ids, mask)))
        cases.append(Case((ids, mask), {"ignore_index": 3}))
    return cases


def batch_loss_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for shape in [(1, 1), (3, 1), (4, 7), (2, 3, 5), (9,)]:
        for dtype in (np.float32, np.float64):
            losses = (rng.random(shape) * 4).astype(dtype)
            mask = rng.random(shape) < 0.6
            mask.reshape(-1)[0] = True
            if len(shape) >= 2:
                mask[..., -1, :] = False
            with_nan = np.where(mask, losses, np.nan).astype(dtype)
            for reduction in ("sum", "token_mean", "sequence_mean"):
                cases.append(Case((with_nan, mask), {"reduction": reduction}))
                cases.append(Case((losses, mask), {"reduction": reduction}))
            cases.append(Case((losses, np.zeros(shape, dtype=bool)), {"reduction": "sequence_mean"}))
    losses = rng.random((2, 4)).astype(np.float32)
    for reduction in ("token_mean", "sequence_mean"):
        cases.append(Case((losses, np.zeros((2, 4), dtype=bool)), {"reduction": reduction, "warned": True},
                          grad_wrt=(), label="the RuntimeWarning when no token is unmasked"))
    cases.append(Case((losses, None), {"reduction": "mean"}, raises="ValueError", naming="reduction",
                      label="an unknown reduction"))
    return cases


BATCH_LOSS_ADAPTER = '''
def _coursekit_batch_loss(token_losses, mask=None, *, warned=False, **options):
    import torch as _torch
    import warnings as _warnings
    with _warnings.catch_warnings(record=True) as _caught:
        _warnings.simplefilter("always")
        _loss = batch_loss(token_losses, mask, **options)
    if not warned:
        return _loss
    return [_loss, _torch.tensor(any(issubclass(_w.category, RuntimeWarning) for _w in _caught))]
'''


def _batch_loss(token_losses: torch.Tensor, mask: torch.Tensor | None = None, *, warned: bool = False,
                **options: str) -> torch.Tensor | list:
    """``batch_loss``; with ``warned``, also whether it warned (every case that asks has no unmasked token)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = batch_loss(token_losses, mask, **options)
    return [loss, torch.tensor(True)] if warned else loss


def causal_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for rows, steps, vocab in [(1, 2, 2), (3, 6, 2), (4, 8, 7), (2, 5, 13)]:
        for dtype in (np.float32, np.float64):
            logits = (rng.standard_normal((rows, steps, vocab)) * 2).astype(dtype)
            ids = rng.integers(0, vocab, size=(rows, steps)).astype(np.int64)
            lengths = rng.integers(1, steps + 1, size=rows)
            prompts = (rng.random(rows) * lengths).astype(np.int64)
            positions = np.arange(steps)[None, :]
            mask = (positions >= prompts[:, None]) & (positions < lengths[:, None])
            mask[0] = False
            ignored = ids.copy()
            ignored[:, -1] = -100
            # nan in the logits that predict nothing scored: the last position's and the unscored tokens'.
            unscored = logits.copy()
            unscored[:, -1] = np.nan
            unscored[:, :-1][~mask[:, 1:]] = np.nan
            for reduction in ("token_mean", "sequence_mean", "sum", "none"):
                cases.append(Case((logits, ids), {"loss_mask": mask, "reduction": reduction}))
                cases.append(Case((logits, ignored), {"reduction": reduction}))
                cases.append(Case((unscored, ids), {"loss_mask": mask, "reduction": reduction},
                                  label="nan in the logits of unscored positions"))
            cases.append(Case((logits, ids), {"loss_mask": mask}, label="the default reduction"))
            out_of_range = ids.copy()
            out_of_range[-1, -1] = vocab
            cases.append(Case((logits, out_of_range), raises="ValueError", label="a token id equal to V"))
            negative = ids.copy()
            negative[-1, -1] = -1
            cases.append(Case((logits, negative), raises="ValueError",
                              label="a negative token id other than ignore_index"))
    return cases


ACCUMULATE_ADAPTER = '''
def _coursekit_accumulate(weight, bias, features, targets, masks, sizes):
    import torch as _torch
    _model = _torch.nn.Linear(weight.shape[1], weight.shape[0])
    with _torch.no_grad():
        _model.weight.copy_(weight)
        _model.bias.copy_(bias)
    _model.zero_grad()
    _batches, _start = [], 0
    for _rows in sizes.tolist():
        _batches.append((features[_start:_start + _rows], targets[_start:_start + _rows], masks[_start:_start + _rows]))
        _start += _rows
    _loss = accumulate_gradients(_model, _batches)
    return [_torch.tensor(float(_loss), dtype=_torch.float64), _model.weight.grad, _model.bias.grad,
            _torch.tensor(isinstance(_loss, float))]
'''


def _full_batch(weight, bias, features, targets, masks, sizes):
    model = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        model.weight.copy_(weight)
        model.bias.copy_(bias)
    model.zero_grad()
    logits = model(features)
    losses = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction="none").view(targets.shape)
    mean = losses[masks].mean()
    mean.backward()
    return [torch.tensor(float(mean.detach()), dtype=torch.float64), model.weight.grad.clone(), model.bias.grad.clone(),
            torch.tensor(True)]


def accumulate_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for sizes in ([1], [2, 5, 1], [4, 4, 4, 1], [1, 7]):
        rows, steps, width, vocab = sum(sizes), 6, 4, 5
        features = rng.standard_normal((rows, steps, width)).astype(np.float32)
        targets = rng.integers(0, vocab, size=(rows, steps)).astype(np.int64)
        lengths = rng.integers(1, steps + 1, size=rows)
        masks = np.arange(steps)[None, :] < lengths[:, None]
        if len(sizes) > 2:
            masks[sizes[0]:sizes[0] + sizes[1]] = False
        weight = (rng.standard_normal((vocab, width)) * 0.5).astype(np.float32)
        bias = (rng.standard_normal(vocab) * 0.5).astype(np.float32)
        cases.append(Case((weight, bias, features, targets, masks, np.asarray(sizes, dtype=np.int64))))
    return cases


SPEC = AssignmentSpec(
    assignment="a2_masking_reductions",
    notebook="a2_masking_reductions",
    seed=SEED,
    questions=(
        FunctionQuestion("test_sequence_mask", "sequence_mask", 2, sequence_mask_cases, sequence_mask,
                         options=("max_len",)),
        FunctionQuestion("test_response_mask", "response_mask", 2, response_mask_cases, response_mask,
                         options=("max_len",)),
        FunctionQuestion("test_labels_from_mask", "_coursekit_labels_from_mask", 1, labels_cases, _labels_from_mask,
                         adapter=LABELS_ADAPTER, student_function="labels_from_mask",
                         outputs=("the labels", "input_ids after the call", "loss_mask after the call")),
        FunctionQuestion("test_batch_loss", "_coursekit_batch_loss", 3, batch_loss_cases, _batch_loss,
                         rtol=1e-4, atol=1e-5, grad_wrt=(0,), adapter=BATCH_LOSS_ADAPTER, student_function="batch_loss",
                         outputs=("the loss", "whether a RuntimeWarning was issued"), adapter_options=("warned",),
                         withholds=(batch_loss,)),
        # The course's chunked cross-entropy (identity weight, ignore_index) computes the shifted loss itself.
        FunctionQuestion("test_causal_lm_loss", "causal_lm_loss", 4, causal_cases, causal_lm_loss,
                         rtol=1e-4, atol=1e-5, grad_wrt=(0,), withholds=(chunked_cross_entropy,)),
        FunctionQuestion("test_accumulate_gradients", "_coursekit_accumulate", 3, accumulate_cases, _full_batch,
                         rtol=1e-4, atol=1e-5, adapter=ACCUMULATE_ADAPTER,
                         student_function="accumulate_gradients",
                         outputs=("the returned loss", "the weight's gradient", "the bias's gradient",
                                  "whether the loss is returned as a Python float")),
    ),
)
