"""Planted bugs: the feedback of each graded function names the case its typical bug fails on.

For each assignment, the source notebook's code cells (solutions included) run
in a kernel in this process, then one cell replaces every graded function by a
version with one typical bug; the spec's adapters and hidden calls run as the
grader runs them (``coursekit.grading.kernel``, the operator bans included) and
the verdicts score them. Each question's feedback must hold a line that names
the failing case: the options, the edge case, the failed requirement. The
sandboxed end-to-end path (``coursekit grade`` and ``nbgrader autograde`` on the
solution and the untouched notebook) is covered by test_grading_specs.py and the
adversarial corpus.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coursekit.grading.kernel import Kernel, run_step
from coursekit.grading.limits import Limits
from coursekit.grading.protocol import CallEnd, RunAdapter, RunCall, RunCell
from coursekit.grading.spec import ValueQuestion, adapters, load_spec, prepare_calls
from coursekit.grading.verdicts import QuestionResult, score_question
from conftest import GRADING_SECRET

pytestmark = [pytest.mark.slow, pytest.mark.grading]

REPO = Path(__file__).resolve().parents[1]

A1_BUGS = '''
def token_nll(logits, targets, *, ignore_index=-100):
    # Bug: no shift by the largest logit, so exp overflows.
    ignored = targets == ignore_index
    safe = torch.where(ignored, torch.zeros_like(targets), targets)
    normaliser = logits.exp().sum(dim=-1).log()
    picked = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return torch.where(ignored, torch.zeros_like(picked), normaliser - picked)


def sequence_loss(token_losses, mask=None, *, reduction="sum"):
    # Bug: the mask multiplies, so nan under the mask leaks (0 * nan = nan).
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    if mask is None:
        mask = torch.ones_like(token_losses, dtype=torch.bool)
    total = (token_losses * mask).sum(dim=-1)
    return total if reduction == "sum" else total / mask.sum(dim=-1)


def perplexity(mean_nll):
    # Bug: a Python number is not turned into a tensor.
    return torch.exp(mean_nll)
'''

A2_BUGS = '''
def sequence_mask(lengths, max_len=None):
    # Bug: 0/1 integers instead of booleans.
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    if bool((lengths < 0).any()) or bool((lengths > max_len).any()):
        raise ValueError(f"lengths must lie in [0, {max_len}]")
    return (torch.arange(max_len)[None, :] < lengths[:, None]).long()


def response_mask(prompt_lengths, lengths, max_len=None):
    # Bug: no check that a prompt fits in its row.
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    positions = torch.arange(max_len)[None, :]
    return (positions >= prompt_lengths[:, None]) & (positions < lengths[:, None])


def labels_from_mask(input_ids, loss_mask, *, ignore_index=-100):
    # Bug: writes into input_ids.
    input_ids[~loss_mask] = ignore_index
    return input_ids


def batch_loss(token_losses, mask=None, *, reduction="token_mean"):
    # Bug: "sequence_mean" averages over every row, empty ones included.
    if reduction not in ("sum", "token_mean", "sequence_mean"):
        raise ValueError(f"reduction must be 'sum', 'token_mean' or 'sequence_mean', got {reduction!r}")
    if mask is None:
        mask = torch.ones_like(token_losses, dtype=torch.bool)
    kept = torch.where(mask, token_losses, torch.zeros_like(token_losses))
    if reduction == "sum":
        return kept.sum()
    if not bool(mask.any()):
        warnings.warn("every token is masked", RuntimeWarning)
        return kept.sum() * 0.0
    if reduction == "token_mean":
        return kept.sum() / mask.sum()
    return (kept.sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)).mean()


def causal_lm_loss(logits, input_ids, *, loss_mask=None, ignore_index=-100, reduction="token_mean"):
    # Bug: the logits of unscored positions reach F.cross_entropy (nan gradients), and ids are not checked.
    targets = input_ids[..., 1:]
    scored = targets != ignore_index
    if loss_mask is not None:
        scored = scored & loss_mask[..., 1:]
    safe = torch.where(scored, targets, torch.zeros_like(targets))
    shifted = logits[..., :-1, :]
    losses = F.cross_entropy(shifted.reshape(-1, shifted.shape[-1]), safe.reshape(-1), reduction="none")
    losses = torch.where(scored, losses.reshape(targets.shape), torch.zeros_like(targets, dtype=logits.dtype))
    if reduction == "none":
        return losses.sum(dim=-1)
    if reduction == "sum":
        return losses.sum()
    if not bool(scored.any()):
        return losses.sum() * 0.0
    if reduction == "token_mean":
        return losses.sum() / scored.sum()
    counts = scored.sum(dim=-1)
    return (losses.sum(dim=-1)[counts > 0] / counts[counts > 0]).mean()


def accumulate_gradients(model, micro_batches):
    # Bug: the mean of the micro-batches' token means (the notebook's buggy loop).
    total = 0.0
    for features, targets, mask in micro_batches:
        losses = token_losses_of(model, features, targets)
        loss = torch.where(mask, losses, torch.zeros_like(losses)).sum() / mask.sum().clamp(min=1) / len(micro_batches)
        loss.backward()
        total += loss.item()
    return total
'''

A3_BUGS = '''
def stream_nll(model, stream, hidden=None):
    # Bug: the token mean, not the sum.
    logits, hidden = model(stream[:, :-1], hidden)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), stream[:, 1:].reshape(-1)), hidden


def chunked_stream_nll(model, stream, chunk_len, *, detach=True):
    # Bug: the hidden state is never detached.
    losses, hidden = [], None
    for inputs, targets in tbptt_chunks(stream, chunk_len):
        logits, hidden = model(inputs, hidden)
        losses.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"))
    return losses


def train_tbptt(model, stream, *, chunk_len=20, steps=150, lr=0.01):
    # Bug: the optimiser never steps.
    history = []
    for _ in range(steps):
        history.append(0.0)
    return history
'''

A4_BUGS = '''
import coursekit.losses as _reference
from coursekit.models.distillation import sequence_kd_targets as _reference_targets


def label_smoothed_nll(logits, targets, epsilon, *, variant="pytorch", ignore_index=-100, reduction="mean"):
    # Bug: "none" returns the per-token losses summed over each row.
    losses = _reference.label_smoothed_nll(logits, targets, epsilon, variant=variant, ignore_index=ignore_index,
                                           reduction=reduction)
    return losses.sum(dim=-1) if reduction == "none" else losses


def kd_loss(student_logits, teacher_logits, *, temperature=1.0, mask=None, reduction="token_mean"):
    # Bug: "sequence_mean" averages over every row, empty ones included.
    if reduction != "sequence_mean" or mask is None:
        return _reference.kd_loss(student_logits, teacher_logits, temperature=temperature, mask=mask,
                                  reduction=reduction)
    per_token = _reference.kd_loss(student_logits, teacher_logits, temperature=temperature, mask=mask,
                                   reduction="none")
    return (per_token.sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)).mean()


def kd_cross_entropy(student_logits, teacher_logits, *, temperature=1.0, mask=None, reduction="token_mean"):
    # Bug: "sum" forgets the mask.
    return _reference.kd_cross_entropy(student_logits, teacher_logits, temperature=temperature,
                                       mask=None if reduction == "sum" else mask, reduction=reduction)


def sequence_kd_targets(teacher, sources, *, beam_size=4, max_len=8, batch_size=256):
    # Bug: the end-of-sequence token is kept.
    targets = _reference_targets(teacher, sources, beam_size=beam_size, max_len=max_len, batch_size=batch_size)
    return [target + [EOS_ID] for target in targets]


def train_student(pairs, *, steps=150, batch_size=32, lr=0.02, seed=0):
    # Bug: no seed, no training.
    return Seq2Seq(len(src_vocab), len(tgt_vocab), embed_dim=16, hidden_size=32)
'''

A5_BUGS = '''
import coursekit.losses as _reference


def ctc_loss(log_probs, targets, input_lengths, target_lengths, *, blank=0, reduction="mean", zero_infinity=False):
    # Bug: "mean" does not divide by the target lengths.
    losses = _reference.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=blank, reduction="none",
                                 zero_infinity=zero_infinity)
    return {"none": losses, "sum": losses.sum(), "mean": losses.mean()}[reduction]


def mrt_risk(sequence_log_probs, costs, *, alpha=1.0, mask=None):
    # Bug: a row with no candidate is not refused.
    scores = alpha * sequence_log_probs
    costs = costs.detach().to(scores.dtype)
    if mask is not None:
        scores = torch.where(mask, scores, torch.full_like(scores, float("-inf")))
        costs = torch.where(mask, costs, torch.zeros_like(costs))
    return (scores.softmax(dim=-1) * costs).sum(dim=-1).mean()


def reinforce_loss(sequence_log_probs, rewards, *, baseline=None):
    # Bug: "mean" is taken per row.
    if isinstance(baseline, str):
        baseline = rewards.mean(dim=-1, keepdim=True)
    advantage = rewards if baseline is None else rewards - baseline
    return -(advantage.detach() * sequence_log_probs).mean()


def dpo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, *,
             beta=0.1, reduction="mean"):
    # Bug: log(sigmoid(x)) underflows to -inf.
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    losses = -torch.log(torch.sigmoid(beta * margin))
    return {"none": losses, "sum": losses.sum(), "mean": losses.mean()}[reduction]


def policy_loss_aggregate(token_losses, mask, *, mode="grpo", max_len=None):
    # Bug: "dapo" divides by every position, padding included.
    if mode == "dapo":
        kept = token_losses if mask is None else torch.where(mask, token_losses, torch.zeros_like(token_losses))
        return kept.sum() / token_losses.numel()
    return _reference.policy_loss_aggregate(token_losses, mask, mode=mode, max_len=max_len)
'''

A6_BUGS = '''
import coursekit.losses as _reference


def logits_memory_bytes(num_tokens, vocab_size, dtype=torch.float32):
    # Bug: a float, not an int.
    return num_tokens * vocab_size * torch.finfo(dtype).bits / 8


def chunked_cross_entropy(hidden, weight, targets, *, bias=None, chunk_size=1024, ignore_index=-100,
                          reduction="mean"):
    # Bug: "mean" divides by every token, ignored ones included.
    if reduction != "mean":
        return _reference.chunked_cross_entropy(hidden, weight, targets, bias=bias, chunk_size=chunk_size,
                                                ignore_index=ignore_index, reduction=reduction)
    total = _reference.chunked_cross_entropy(hidden, weight, targets, bias=bias, chunk_size=chunk_size,
                                             ignore_index=ignore_index, reduction="sum")
    return total / targets.numel()
'''

#: per assignment: the planted bugs, and per question the phrases one line of its feedback must hold.
PLANTED = {
    "a1_sequence_loss": (A1_BUGS, {
        "test_token_nll": ["wrong values when logits of size 1000"],
        "test_sequence_loss": ["wrong values when", "nan in token_losses", "e.g. sequence_loss(token_losses float"],
        "test_perplexity": ["raised TypeError", "e.g. perplexity(mean_nll "],
    }),
    "a2_masking_reductions": (A2_BUGS, {
        "test_sequence_mask": ["expected bool values, got int64", "e.g. sequence_mask(lengths int64"],
        "test_response_mask": ["returned a value instead of raising ValueError when a prompt longer than its row"],
        "test_labels_from_mask": ["input_ids after the call: wrong values", "first at ["],
        "test_batch_loss": ["wrong values when", "reduction='sequence_mean'", "a row of mask with no True"],
        "test_causal_lm_loss": ["gradient of logits: wrong values when nan in the logits of unscored positions"],
        "test_accumulate_gradients": ["the returned loss: wrong values", "expected"],
    }),
    "a3_rnn_loss": (A3_BUGS, {
        "test_stream_nll": ["the loss: wrong values", "e.g. stream_nll("],
        "test_chunked_stream_nll": ["the gradients of the model's parameters: wrong values when", "detach=True"],
        "test_train_tbptt": ["does not reach a validation NLL below"],
    }),
    "a4_distillation": (A4_BUGS, {
        "test_label_smoothed_nll": ["wrong shape when reduction='none'", "expected shape (", "got 0 dimensions"],
        "test_kd_loss": ["wrong values when", "reduction='sequence_mean'", "a row of mask with no True"],
        "test_kd_cross_entropy": ["wrong values when reduction='sum'"],
        "test_sequence_kd_targets": ["the targets, padded: wrong shape"],
        "test_train_student": ["torch.manual_seed(seed)"],
    }),
    "a5_sequence_objectives": (A5_BUGS, {
        "test_ctc_loss": ["wrong values when", "reduction='mean'"],
        "test_mrt_risk": ["returned a value instead of raising ValueError when a row with no candidate"],
        "test_reinforce_loss": ["wrong values when", "2-D rewards with the batch mean"],
        "test_dpo_loss": ["wrong values", "a log-probability of -1000"],
        "test_policy_loss_aggregate": ["wrong values when mode='dapo'"],
    }),
    "a6_large_vocab": (A6_BUGS, {
        "test_logits_memory_bytes": ["expected int64 values, got float64"],
        "test_chunked_cross_entropy": ["wrong values", "bias=None", "ignore_index=1): expected"],
        "test_chunked_memory": ["wrong values when", "reduction='mean'"],
    }),
}


#: per question: what the instructor's report (never the feedback) quotes of the planted bug's exception.
INSTRUCTOR_ONLY = {"test_perplexity": "TypeError: exp()"}


def _notebook_code(assignment: str) -> list[str]:
    """The source notebook's code cells that a submission runs: every one but the autograder tests."""
    path = REPO / "assignments" / "source" / assignment / f"{assignment}.ipynb"
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells
            if c["cell_type"] == "code" and not c["metadata"].get("nbgrader", {}).get("grade")]


def _feedback(assignment: str, bugs: str) -> dict[str, tuple[float, float, list[str], list[str]]]:
    """Score, points, feedback and the instructor's quoted exception messages of every graded function's question."""
    return {grade_id: (result.score, result.max_score, result.messages, result.raised)
            for grade_id, result in _results(assignment, bugs).items()}


def _results(assignment: str, bugs: str, only: frozenset[str] | None = None) -> dict[str, QuestionResult]:
    """The verdict of every graded function's question (of those in ``only``, when given) after ``bugs`` ran."""
    spec = load_spec(REPO / "assignments" / "autograde" / f"{assignment}.py")
    kernel = Kernel(Limits(timeout_s=120).for_runner(), dedicated_uid=False)
    for index, source in enumerate([*_notebook_code(assignment), bugs]):
        report = run_step(kernel, RunCell(index, source))
        assert not report.failed, (index, report.ename, report.evalue)
    for index, source in enumerate(adapters(spec)):
        run_step(kernel, RunAdapter(index, source))
    results = {}
    for question in spec.questions:
        if isinstance(question, ValueQuestion) or only is not None and question.grade_id not in only:
            continue
        calls = prepare_calls(spec, course="seqloss", student="ada", secret=GRADING_SECRET)[question.grade_id]
        ends = {}
        for prepared in calls:
            report = run_step(kernel, RunCall(prepared.call))
            ends[report.call_id] = CallEnd(report.call_id, report.status, report.value, report.grads, report.ename,
                                           report.hits, report.evalue)
        results[question.grade_id] = score_question(question, calls, ends)
    return results


@pytest.mark.parametrize("assignment", sorted(PLANTED))
def test_each_planted_bug_is_named_by_its_feedback(assignment: str, request: pytest.FixtureRequest) -> None:
    request.applymarker(getattr(pytest.mark, assignment[:2]))
    bugs, expected = PLANTED[assignment]
    results = _feedback(assignment, bugs)
    assert set(results) == set(expected)
    for grade_id, phrases in expected.items():
        score, points, messages, raised = results[grade_id]
        assert score < points, (grade_id, messages)
        assert any(all(p in line for p in phrases) for line in messages), (grade_id, phrases, messages)
        if grade_id in INSTRUCTOR_ONLY:
            assert any(INSTRUCTOR_ONLY[grade_id] in said for said in raised), (grade_id, raised)
            assert not any(INSTRUCTOR_ONLY[grade_id] in line for line in messages), (grade_id, messages)
        # A student reads a few kinds of failure, never a line per case.
        assert 1 <= len(messages) <= 6, messages
    if assignment == "a2_masking_reductions":
        # The students' page quotes this run's batch_loss line (wrapped at spaces): it must stay what the grader says.
        page = (REPO / "book" / "for_students.md").read_text()
        quoted = page.split("```text\n", 1)[1].split("```", 1)[0]
        assert " ".join(part.strip() for part in quoted.splitlines()) in results["test_batch_loss"][2]


#: a right ctc_loss by the very operation a5 bans.
BANNED_CTC = '''
import torch.nn.functional as _F


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False):
    return _F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=blank, reduction=reduction,
                       zero_infinity=zero_infinity)
'''


def test_a_banned_operation_forfeits_and_says_the_hidden_checks_were_not_counted(
        request: pytest.FixtureRequest) -> None:
    # Not "0 of N hidden checks passed": the checks were not counted, whatever they would have given.
    request.applymarker(pytest.mark.a5)
    result = _results("a5_sequence_objectives", BANNED_CTC, only=frozenset({"test_ctc_loss"}))["test_ctc_loss"]
    assert (result.score, result.passed, result.uses_reference) == (0.0, None, False)
    assert result.messages == ["ctc_loss must not use F.ctc_loss"]
    assert result.counted() == "hidden checks not counted: the function used a banned operation"
