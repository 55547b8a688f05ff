"""Attacks on a3 to a6: trained models, a memory budget, banned built-ins and the reference key.

Each submission is the correct solution with one answer replaced (and, for one
attack, a file handed in beside the notebook); the exact score, outcome and
failing question follow from which answer it touches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from adversarial.course import make_course, set_answer, solutions, solved_notebook, submit
from coursekit.grading.driver import GradeOptions, grade_assignment
from coursekit.grading.limits import Limits
from conftest import require_sandbox

pytestmark = [pytest.mark.slow, pytest.mark.grading]

PLAIN_CHUNKED = '''import torch.nn.functional as F
def chunked_cross_entropy(hidden, weight, targets, *, bias=None, chunk_size=1024, ignore_index=-100, reduction="mean"):
    logits = hidden @ weight.T
    if bias is not None:
        logits = logits + bias
    return F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction=reduction)
'''

# Chunked forward, but autograd keeps every chunk's log-softmax for the backward: N x V in all.
CHUNKS_KEPT = '''import torch
def chunked_cross_entropy(hidden, weight, targets, *, bias=None, chunk_size=1024, ignore_index=-100, reduction="mean"):
    parts = []
    for start in range(0, hidden.shape[0], chunk_size):
        logits = hidden[start:start + chunk_size] @ weight.T
        if bias is not None:
            logits = logits + bias
        rows = targets[start:start + chunk_size]
        log_p = logits.log_softmax(-1).gather(1, rows.clamp(min=0)[:, None])[:, 0]
        parts.append(torch.where(rows != ignore_index, -log_p, torch.zeros((), dtype=log_p.dtype)))
    losses = torch.cat(parts)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / (targets != ignore_index).sum()
'''

# Reserve address space while the notebook runs, hand it back inside the graded call.
RESERVE_THEN_FREE = PLAIN_CHUNKED.replace("def chunked_cross_entropy", "def _plain") + '''
import torch
_reserve = torch.ones(300 * 2**18)          # 300 MiB, released just before the big computation


def chunked_cross_entropy(*args, **kwargs):
    global _reserve
    _reserve = None
    return _plain(*args, **kwargs)
'''

LIFT_THE_LIMIT = '''import resource
for _kind in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
    try:
        resource.setrlimit(_kind, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError) as error:
        print("could not lift the limit:", error)
resource.setrlimit = lambda *args: None
largest_tensor_of = lambda *args, **kwargs: 1   # fools the visible test, not the grader
'''

NO_TRAINING = '''def train_tbptt(model, stream, *, chunk_len=20, steps=150, lr=0.01):
    return [2.0] * steps
'''

# Trains a model of its own and leaves the one it was given untouched.
OWN_MODEL = '''def train_tbptt(model, stream, *, chunk_len=20, steps=150, lr=0.01):
    mine = RNNLM(V, embed_dim=16, hidden_size=48, cell="gru")
    optimizer = torch.optim.Adam(mine.parameters(), lr=lr)
    history, chunks = [], tbptt_chunks(stream, chunk_len)
    for step in range(steps):
        inputs, targets = chunks[step % len(chunks)]
        logits, _ = mine(inputs)
        loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    return history
'''

# Trains for a few steps only and pads the history to the length asked for.
SHORT_TRAINING = '''def train_tbptt(model, stream, *, chunk_len=20, steps=150, lr=0.01):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for inputs, targets in tbptt_chunks(stream, chunk_len)[:3]:
        logits, _ = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    return history + [history[-1]] * (steps - len(history))
'''

UNSEEDED_UNTRAINED = '''def train_student(pairs, *, steps=150, batch_size=32, lr=0.02, seed=0):
    return Seq2Seq(len(src_vocab), len(tgt_vocab), embed_dim=16, hidden_size=32).eval()
'''

TEACHER_AS_STUDENT = '''def train_student(pairs, *, steps=150, batch_size=32, lr=0.02, seed=0):
    return teacher
'''


# Grader review r1, finding 7: a4's notebook says "you may not call F.cross_entropy" in label_smoothed_nll, and the
# spec bans the operator F.cross_entropy runs. Both variants are exact through it (fairseq's is a combination of
# two smoothings), so without the ban this answer earns the question's 3 points.
LABEL_SMOOTHING_BY_CROSS_ENTROPY = '''def label_smoothed_nll(logits, targets, epsilon, *, ignore_index=-100, reduction="mean", variant="pytorch"):
    classes = logits.shape[-1]

    def entropy(smoothing):
        return F.cross_entropy(logits.reshape(-1, classes), targets.reshape(-1), ignore_index=ignore_index,
                               label_smoothing=smoothing, reduction="none").reshape(targets.shape)

    if variant == "pytorch":
        losses = entropy(epsilon)
    else:
        share = epsilon / (classes - 1)
        losses = (1 - epsilon - share) * entropy(0.0) + share * classes * entropy(1.0)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / (targets != ignore_index).sum()
'''


def _kd_loss_from_reference(solution: str) -> str:
    """Issue 15, finding 1: a4's sandbox needs coursekit.losses (Seq2Seq uses token_nll), but not kd_loss.

    The cell keeps its helper (kd_cross_entropy uses it) and takes kd_loss from the reference.
    """
    return solution.split("def kd_loss")[0] + "from coursekit.losses import kd_loss\n"

# Issue 15, finding 6: a numpy.py handed in with the notebook lifts the memory budget, then loads NumPy.
NUMPY_SHADOW = '''"""Not NumPy: runs first if the working directory comes first on sys.path."""
import os, resource, sys
resource.setrlimit = lambda *args, **kwargs: None
_here = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _here]
del sys.modules["numpy"]
import numpy as _real
sys.modules["numpy"] = _real
'''

# Issue 15, finding 7: the ban is on running F.ctc_loss, whatever the cell's text says.
CTC_BUILTIN_ALIAS = '''from torch.nn.functional import ctc_loss as _builtin


def ctc_loss(log_probs, targets, input_lengths, target_lengths, *, blank=0, reduction="mean", zero_infinity=False):
    return _builtin(log_probs, targets, input_lengths, target_lengths, blank=blank, reduction=reduction,
                    zero_infinity=zero_infinity)
'''


def _with_comment_naming_the_builtin(source: str) -> str:
    """The source's own hand-written ctc_loss, with a comment that mentions F.ctc_loss."""
    commented = source.replace("    neg_inf = ", "    # concatenated targets, as F.ctc_loss also accepts, are not "
                                                 "supported here\n    neg_inf = ", 1)
    assert commented != source, "the comment was not inserted"
    return commented


#: a6 runs with a large address-space limit, so that the assignment's own memory budget is what binds.
LIMITS = {"a6_large_vocab": Limits(timeout_s=30, memory_mb=4096)}


@dataclass(frozen=True)
class Submission:
    student: str
    answer: str                   # grade_id of the replaced answer cell
    source: str | Callable[[str], str]   # its new source, or a function of the solution's source
    score: float
    outcome: str
    failing: dict[str, str]       # grade_id -> text expected in its message
    files: dict[str, str] = field(default_factory=dict)   # handed in beside the notebook
    notes: tuple[str, ...] = ()   # text expected among the report's notes


CASES: dict[str, list[Submission]] = {
    "a6_large_vocab": [
        # The test cell's visible check (no logits-sized tensor) fails first, as under stock nbgrader.
        Submission("plain", "answer_chunked_cross_entropy", PLAIN_CHUNKED, 6.0, "memory_limit",
                   {"test_chunked_memory": "a visible check failed: AssertionError: a tensor of 131072 elements was created: the logits are not chunked"}),
        Submission("chunks_kept", "answer_chunked_cross_entropy", CHUNKS_KEPT, 6.0, "memory_limit",
                   {"test_chunked_memory": "ran out of memory"}),
        Submission("reserve_then_free", "answer_chunked_cross_entropy", RESERVE_THEN_FREE, 6.0, "memory_limit",
                   {"test_chunked_memory": "a visible check failed: AssertionError: a tensor of 131072 elements was created: the logits are not chunked"}),
        Submission("lift_the_limit", "answer_chunked_cross_entropy", LIFT_THE_LIMIT + PLAIN_CHUNKED, 6.0,
                   "memory_limit", {"test_chunked_memory": "a visible check failed: AssertionError: a tensor of 131072 elements was created: the logits are not chunked"}),
        Submission("numpy_shadow", "answer_chunked_cross_entropy", PLAIN_CHUNKED, 6.0, "memory_limit",
                   {"test_chunked_memory": "a visible check failed: AssertionError: a tensor of 131072 elements was created: the logits are not chunked"}, files={"numpy.py": NUMPY_SHADOW},
                   notes=("numpy.py was not copied",)),
    ],
    "a3_rnn_loss": [
        Submission("no_training", "answer_train_tbptt", NO_TRAINING, 8.0, "graded",
                   {"test_train_tbptt": "is not below 2.0"}),
        Submission("own_model", "answer_train_tbptt", OWN_MODEL, 8.0, "graded",
                   {"test_train_tbptt": "is not below 2.0"}),
        Submission("short_training", "answer_train_tbptt", SHORT_TRAINING, 8.0, "graded",
                   {"test_train_tbptt": "is not below 2.0"}),
    ],
    "a4_distillation": [
        Submission("unseeded_untrained", "answer_train_student", UNSEEDED_UNTRAINED, 10.0, "graded",
                   {"test_train_student": "is below 70 %"}),
        Submission("teacher_as_student", "answer_train_student", TEACHER_AS_STUDENT, 10.0, "graded",
                   {"test_train_student": "must return a Seq2Seq(embed_dim=16, hidden_size=32)"}),
        # kd_cross_entropy's visible check calls the student's kd_loss, which reaches the withheld stand-in.
        Submission("kd_loss_from_reference", "answer_kd_loss", _kd_loss_from_reference, 6.0, "uses_reference",
                   {"test_kd_loss": "reaches the reference",
                    "test_kd_cross_entropy": "a visible check failed: coursekit.losses.distillation.kd_loss is withheld"}),
        Submission("label_smoothing_by_cross_entropy", "answer_label_smoothed_nll", LABEL_SMOOTHING_BY_CROSS_ENTROPY,
                   9.0, "graded", {"test_label_smoothed_nll": "label_smoothed_nll must not use F.cross_entropy"}),
    ],
    "a5_sequence_objectives": [
        Submission("ctc_builtin_alias", "answer_ctc_loss", CTC_BUILTIN_ALIAS, 9.0, "graded",
                   {"test_ctc_loss": "ctc_loss must not use F.ctc_loss"}),
        Submission("ctc_comment_names_builtin", "answer_ctc_loss", _with_comment_naming_the_builtin, 14.0, "graded",
                   {}),
    ],
}


def _build(course: Path, assignment: str, submission: Submission) -> dict[str, Any]:
    notebook = solved_notebook(course, assignment)
    source = submission.source
    if callable(source):
        source = source(solutions(course, assignment)[submission.answer])
    return set_answer(notebook, submission.answer, source)


@pytest.fixture(scope="module", params=sorted(CASES))
def graded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    require_sandbox()
    assignment = request.param
    course = make_course(tmp_path_factory.mktemp(assignment), assignment=assignment)
    submit(course, "solution", solved_notebook(course, assignment), assignment=assignment)
    for submission in CASES[assignment]:
        path = submit(course, submission.student, _build(course, assignment, submission), assignment=assignment)
        for name, text in submission.files.items():
            (path.parent / name).write_text(text)
    options = GradeOptions(jobs=2, limits=LIMITS.get(assignment, Limits(timeout_s=30)), progress=False)
    return assignment, {r.student: r for r in grade_assignment(course, assignment, options)}


def test_the_solution_gets_full_marks(graded: tuple[str, dict]) -> None:
    _assignment, reports = graded
    solution = reports["solution"]
    assert (solution.score, solution.outcome) == (solution.max_score, "graded"), solution


def test_each_submission_gets_its_exact_score_outcome_and_reason(graded: tuple[str, dict]) -> None:
    assignment, reports = graded
    for submission in CASES[assignment]:
        report = reports[submission.student]
        assert (report.score, report.outcome) == (submission.score, submission.outcome), report
        by_id = {q["grade_id"]: q for q in report.questions}
        for grade_id, text in submission.failing.items():
            assert by_id[grade_id]["score"] == 0.0, report
            assert any(text in message for message in by_id[grade_id]["messages"]), by_id[grade_id]
        others = [q for q in report.questions if q["grade_id"] not in submission.failing]
        assert all(q["outcome"] == "passed" for q in others), report
        for text in submission.notes:
            assert any(text in note for note in report.notes), report.notes
