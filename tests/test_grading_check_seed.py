"""The data a3's and a4's trained models are judged on is keyed by the grading secret (coursekit.grading.spec.check_seed).

Grader review r5, finding 7: the check data was drawn from the public ``SEED``
alone, so any student could rebuild it with the public library and spec.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from coursekit.grading.spec import CheckedCase, CheckedQuestion, check_seed, load_spec, prepare_calls
from conftest import GRADING_SECRET, REPO_ROOT

OTHER_SECRET = bytes(range(200, 232))
A3 = REPO_ROOT / "assignments" / "autograde" / "a3_rnn_loss.py"
A4 = REPO_ROOT / "assignments" / "autograde" / "a4_distillation.py"


def _checked(path: Path) -> CheckedQuestion:
    return next(q for q in load_spec(path).questions if isinstance(q, CheckedQuestion))


def _spec_function(path: Path, name: str) -> Callable[..., Any]:
    """A function of the spec's module, reached through its check's globals (load_spec returns SPEC alone)."""
    return _checked(path).check.__globals__[name]


def _same(first: Any, second: Any) -> bool:
    if isinstance(first, torch.Tensor):
        return isinstance(second, torch.Tensor) and first.shape == second.shape and bool(torch.equal(first, second))
    if isinstance(first, (tuple, list)):
        return len(first) == len(second) and all(_same(a, b) for a, b in zip(first, second))
    return first == second


def test_a3s_validation_stream_depends_on_the_secret_and_not_on_the_public_seed_alone() -> None:
    spec = load_spec(A3)
    stream = _spec_function(A3, "hidden_valid_stream")
    graded = stream(check_seed(spec, GRADING_SECRET))
    assert graded.shape[0] == 4 and graded.shape[1] > 100, graded.shape
    assert not _same(graded, stream(check_seed(spec, OTHER_SECRET)))
    # The review's f7_public_check_data.py: what a student could draw with the public SEED alone.
    assert not _same(graded, stream(spec.seed))


@pytest.mark.slow
def test_a4s_validation_sources_depend_on_the_secret_and_not_on_the_public_seed_alone() -> None:
    spec = load_spec(A4)
    validation = _spec_function(A4, "_hidden_validation")
    graded = validation(check_seed(spec, GRADING_SECRET))
    assert len(graded[2]) == 200
    assert not _same(graded, validation(check_seed(spec, OTHER_SECRET)))
    assert not _same(graded, validation(spec.seed))


@pytest.mark.slow
@pytest.mark.parametrize("path", [A3, A4], ids=["a3", "a4"])
def test_every_student_is_judged_on_the_same_data_whose_seed_never_reaches_the_sandbox(path: Path) -> None:
    spec = load_spec(path)
    question = _checked(path)
    seed = check_seed(spec, GRADING_SECRET)
    for course, student in (("seqloss", "ada"), ("seqloss", "bob"), ("other", "ada")):
        calls = prepare_calls(spec, course=course, student=student, secret=GRADING_SECRET)[question.grade_id]
        assert calls and all(isinstance(c.expected, CheckedCase) and c.expected.check_seed == seed for c in calls)
        # What the sandbox receives is the call alone: no seed of the check's data, in any spelling.
        sent = json.dumps([c.call for c in calls])
        for spelling in (str(seed), str(seed % 100_003), str(seed % 100_019), hex(seed)[2:]):
            assert spelling not in sent, spelling


def test_the_check_seed_is_keyed_by_the_secret_and_differs_between_assignments() -> None:
    a3, a4 = load_spec(A3), load_spec(A4)
    assert check_seed(a3, GRADING_SECRET) != check_seed(a3, OTHER_SECRET)
    assert check_seed(a3, GRADING_SECRET) != check_seed(a4, GRADING_SECRET)
    with pytest.raises(TypeError, match="secret must be non-empty bytes"):
        check_seed(a3, b"")
