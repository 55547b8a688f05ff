"""Feedback a student can act on: cases described, failures grouped by kind, the report grouping alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coursekit.course.hidden_score import call_ends
from coursekit.grading.describe import describe_case
from coursekit.grading.limits import Limits
from coursekit.grading.driver import SubmissionReport
from coursekit.grading.protocol import CallEnd, CallStatus
from coursekit.grading.report.summary import common_failures
from coursekit.grading.spec import AssignmentSpec, Case, ExpectedRaise, FunctionQuestion, prepare_calls
from coursekit.grading.verdicts import NOT_RUN_AFTER_TIMEOUT, failure_kind, score_question
from coursekit.grading.wire import decode_value, encode_value
from conftest import GRADING_SECRET

pytestmark = pytest.mark.grading


def test_arrays_are_described_by_dtype_and_shape_never_by_value() -> None:
    logits = np.full((2, 3, 5), 0.123456, dtype=np.float32)
    described = describe_case("token_nll", ["logits", "targets"], [logits, np.ones((2, 3), np.int64)], {})
    assert described.call == "token_nll(logits float32 (2, 3, 5), targets int64 (2, 3))"
    assert "0.12" not in repr(described)


def test_what_the_grader_reads_off_an_array_becomes_a_factor() -> None:
    losses = np.array([[1.0, np.nan], [np.inf, 2.0]])
    mask = np.array([[True, False], [False, False]])
    targets = np.array([[1, -100], [-1, 0]])
    large = np.array([1500.0, -3.0])
    factors = describe_case("f", ["losses", "mask", "targets", "large"], [losses, mask, targets, large], {}).factors
    assert factors == ("float64 inputs", "nan in losses", "inf in losses", "a row of mask with no True",
                       "targets holding -100 and other negative values", "large with values of magnitude 100 or more")
    assert "mask all False" in describe_case("f", ["mask"], [np.zeros((2, 2), bool)], {}).factors


def test_a_negative_id_is_shown_only_when_public_never_when_it_may_be_drawn() -> None:
    """Instructors' review s42 r5, F5: A2's negative lengths are drawn per student, and the factor quoted them
    ("lengths holding -6, -3"), so the feedback showed hidden inputs and split the class report's groups."""
    targets = np.array([[1, -100], [-1, 0]])
    assert "targets holding -100, -1" in describe_case("f", ["targets"], [targets], {"ignore_index": -1}).factors
    drawn = describe_case("sequence_mask", ["lengths"], [np.array([-6, -3, 2])], {"max_len": 5})
    assert "negative values in lengths" in drawn.factors and "-6" not in repr(drawn) and "-3" not in repr(drawn)
    other = describe_case("sequence_mask", ["lengths"], [np.array([-6, -2, 2])], {"max_len": 5})
    assert other.factors == drawn.factors


def test_options_and_the_label_are_factors_and_adapter_options_are_left_out() -> None:
    described = describe_case("ctc_loss", ["log_probs"], [np.zeros((3, 1, 2))],
                              {"reduction": "mean", "blank": 1, "alpha": 0.0051234, "through_softmax": True},
                              label="a label no alignment fits", hidden_options=("through_softmax",))
    assert described.factors[:4] == ("a label no alignment fits", "reduction='mean'", "blank=1", "alpha=0.005123")
    assert "through_softmax" not in repr(described)
    assert described.label == "a label no alignment fits"


def _masked_mean(losses: torch.Tensor, mask: torch.Tensor, *, reduction: str = "sum") -> torch.Tensor:
    kept = torch.where(mask, losses, torch.zeros_like(losses))
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    return kept.sum(-1) if reduction == "sum" else kept.sum(-1) / mask.sum(-1)


def _cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for shape in [(2, 3), (4, 5), (3,)]:
        for dtype in (np.float32, np.float64):
            losses = rng.random(shape).astype(dtype)
            mask = rng.random(shape) < 0.7
            mask[..., 0] = True
            mask[..., -1] = False   # every row has padding
            for reduction in ("sum", "mean"):
                cases.append(Case((losses, mask), {"reduction": reduction}))
    cases.append(Case((np.ones((1, 2)), np.array([[True, False]])), {"reduction": "sum"}, label="a single row"))
    cases.append(Case((np.ones((2, 2)), np.ones((2, 2), bool)), {"reduction": "max"}, raises="ValueError",
                      naming="reduction", label="an unknown reduction"))
    return cases


QUESTION = FunctionQuestion("test_masked", "masked", 3, _cases, _masked_mean, rtol=1e-5, atol=1e-6)
SPEC = AssignmentSpec("demo", "demo", 3, (QUESTION,))


def _run(student, name: str = "ada") -> list[str]:
    """Call ``student`` as the kernel would on every prepared call and return the feedback."""
    calls = prepare_calls(SPEC, course="seqloss", student=name, secret=GRADING_SECRET)["test_masked"]
    ends = {}
    for prepared in calls:
        args = [torch.from_numpy(decode_value(a)) for a in prepared.call["args"]]
        kwargs = {k: decode_value(v) for k, v in prepared.call["kwargs"].items()}
        try:
            value = student(*args, **kwargs)
            ends[prepared.call["id"]] = CallEnd(prepared.call["id"], CallStatus.OK, encode_value(value.numpy()))
        except Exception as error:  # noqa: BLE001 - as the kernel reports it
            ends[prepared.call["id"]] = CallEnd(prepared.call["id"], CallStatus.RAISED, ename=type(error).__name__,
                                                evalue=str(error))
    return score_question(QUESTION, calls, ends).messages


def test_a_raise_the_question_asks_for_is_a_case_of_its_own() -> None:
    calls = prepare_calls(SPEC, course="seqloss", student="ada", secret=GRADING_SECRET)["test_masked"]
    assert calls[-1].expected == ExpectedRaise("ValueError", "reduction") and calls[-1].expected_grads == []
    assert _run(_masked_mean) == []

    def never_raises(losses, mask, *, reduction="sum"):
        return _masked_mean(losses, mask, reduction="sum" if reduction == "max" else reduction)

    def wrong_words(losses, mask, *, reduction="sum"):
        if reduction == "max":
            raise ValueError("unknown option 3")
        return _masked_mean(losses, mask, reduction=reduction)

    assert _run(never_raises) == ["1 of 14 hidden checks of the function: returned a value instead of raising "
                                  "ValueError when an unknown reduction, reduction='max'; e.g. masked(losses float64 "
                                  "(2, 2), mask bool (2, 2), reduction='max')"]
    assert _run(wrong_words) == ["1 of 14 hidden checks of the function: raised ValueError whose message does not "
                                 "name 'reduction' when an unknown reduction, reduction='max'; e.g. masked(losses "
                                 "float64 (2, 2), mask bool (2, 2), reduction='max')"]


def test_one_bug_is_one_line_naming_what_its_failures_share() -> None:
    def mean_over_every_token(losses, mask, *, reduction="sum"):
        if reduction == "mean":
            return torch.where(mask, losses, torch.zeros_like(losses)).mean(-1)
        return _masked_mean(losses, mask, reduction=reduction)

    [line] = _run(mean_over_every_token)
    assert line.startswith("6 of 14 hidden checks of the function: wrong values when reduction='mean'; e.g. masked(")
    assert "first at [" in line and ", got " in line


def test_two_symptoms_are_two_lines_and_one_symptom_names_the_labelled_cases_it_includes() -> None:
    def two_bugs(losses, mask, *, reduction="sum"):
        if reduction == "max":
            raise ValueError("bad option")
        if losses.dtype == torch.float32 and reduction == "sum":
            return losses.sum(-1)
        return _masked_mean(losses, mask, reduction=reduction)

    lines = _run(two_bugs)
    assert [failure_kind(line) for line in lines] == [
        "wrong values when reduction='sum', float32 inputs",
        "raised ValueError whose message does not name 'reduction' when an unknown reduction, reduction='max'"]

    def raises_on_two_kinds_of_input(losses, mask, *, reduction="sum"):
        if reduction == "mean" or losses.shape[0] == 1:
            raise TypeError("no")
        return _masked_mean(losses, mask, reduction=reduction)

    [line] = _run(raises_on_two_kinds_of_input)
    assert failure_kind(line) == "raised TypeError, including a single row"
    assert line.endswith("e.g. masked(losses float64 (1, 2), mask bool (1, 2), reduction='sum')")


def test_the_report_groups_students_by_the_kind_their_feedback_shows() -> None:
    def mean_over_every_token(losses, mask, *, reduction="sum"):
        if reduction == "mean":
            return torch.where(mask, losses, torch.zeros_like(losses)).mean(-1)
        return _masked_mean(losses, mask, reduction=reduction)

    feedback = {name: _run(mean_over_every_token, name) for name in ("ada", "bob", "cy")}
    assert len({line for lines in feedback.values() for line in lines}) == 3   # each student's own example
    reports = [SubmissionReport(name, "demo", 2.0, 3.0, "graded",
                                questions=[{"grade_id": "test_masked", "messages": lines}])
               for name, lines in feedback.items()]
    [failure] = common_failures(reports)
    assert failure.message == "wrong values when reduction='mean'"
    assert failure.students == ("ada", "bob", "cy")


def test_a_hidden_scalar_input_is_shown_by_its_type_and_is_never_a_factor() -> None:
    """Grader review r4, finding 4: a1's perplexity draws one Python number per student, an input, not an option."""
    import math
    from pathlib import Path

    from coursekit.grading.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "assignments" / "autograde" / "a1_sequence_loss.py")
    question = next(q for q in spec.questions if q.grade_id == "test_perplexity")
    kinds = []
    for student in ("ada", "bob"):
        calls = prepare_calls(spec, course="seqloss", student=student, secret=GRADING_SECRET)["test_perplexity"]
        drawn = decode_value(calls[-1].call["args"][0])
        assert isinstance(drawn, float) and drawn not in (0.0, 1.386294, 2.302585)
        ends = {}
        for prepared in calls:
            [value] = [decode_value(a) for a in prepared.call["args"]]
            # The reviewer's ppl_wrong2: right except for Python numbers other than the three given ones.
            wrong = isinstance(value, float) and value not in (0.0, 1.386294, 2.302585)
            answer = value if wrong else prepared.expected   # the reference's own answer, where it is right
            grads = [encode_value(g) for g in prepared.expected_grads]
            ends[prepared.call["id"]] = CallEnd(prepared.call["id"], CallStatus.OK, encode_value(answer), grads=grads)
        [line] = score_question(question, calls, ends).messages
        assert line == ("1 of 12 hidden checks of the function: wrong values; e.g. perplexity(mean_nll float): "
                        f"expected {math.exp(drawn):.4g}, got a smaller value")
        assert f"{drawn:.4g}" not in line and calls[-1].description.factors == ()
        kinds.append(failure_kind(line))
    assert kinds == ["wrong values", "wrong values"], "one group in the class report, not one per student"


def test_a_positional_scalar_the_question_calls_an_option_is_shown_and_grouped_by() -> None:
    described = describe_case("sequence_mask", ["lengths", "max_len"], [np.array([1, 2]), 5], {}, options=("max_len",))
    assert described.call == "sequence_mask(lengths int64 (2,), max_len=5)" and "max_len=5" in described.factors
    hidden = describe_case("sequence_mask", ["lengths", "max_len"], [np.array([1, 2]), 5], {})
    assert hidden.call == "sequence_mask(lengths int64 (2,), max_len int)" and hidden.factors == ()


def test_a_question_s_options_must_name_its_reference_s_positional_parameters() -> None:
    with pytest.raises(ValueError, match=r"options must name positional parameters of the reference \['x'\], "
                                         r"got \['max_len'\]"):
        FunctionQuestion("test_f", "f", 1, list, lambda x: x, options=("max_len",))


def test_a_label_that_names_an_option_is_not_followed_by_the_option() -> None:
    """Grader review r9, finding 3: "when an ignore_index of -1, ignore_index=-1"."""
    described = describe_case("token_nll", ["logits"], [np.zeros((2, 3))], {"ignore_index": -1, "reduction": "sum"},
                              label="an ignore_index of -1")
    assert described.restated == ("ignore_index=-1",) and "ignore_index=-1" in described.factors
    assert described.dtype == "float64 inputs"
    assert describe_case("f", ["x"], [np.zeros(2)], {"bias": None}, label="bias=None").restated == ("bias=None",)
    # A label that names the option but not its value leaves the option to say it.
    assert describe_case("f", ["x"], [np.zeros(2)], {"blank": 1}, label="a blank id of 10").restated == ()


def _shifted(x: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
    return x + offset


def _shift_cases(rng: np.random.Generator) -> list[Case]:
    cases = [Case((rng.random(shape).astype(dtype),), {"offset": offset})
             for shape in [(2, 3), (4,)] for dtype in (np.float32, np.float64) for offset in (0, 1)]
    cases.append(Case((rng.standard_normal((3,)),), {"offset": -1}, label="an offset of -1"))
    return cases


SHIFT = FunctionQuestion("test_shifted", "shifted", 3, _shift_cases, _shifted, rtol=1e-5, atol=1e-6)


def test_a_single_labelled_failure_is_named_once_and_without_the_dtype_it_happens_to_have() -> None:
    """Grader review r9, finding 3: a dtype factor drawn from one float64 case pointed at a dtype problem."""
    spec = AssignmentSpec("demo", "demo", 3, (SHIFT,))
    calls = prepare_calls(spec, course="seqloss", student="ada", secret=GRADING_SECRET)["test_shifted"]

    def ignores_negative_offsets(x, *, offset=0):
        return x + max(offset, 0)

    ends = call_ends(calls, {"shifted": ignores_negative_offsets})
    [line] = score_question(SHIFT, calls, ends).messages
    assert failure_kind(line) == "wrong values when an offset of -1"
    assert line.startswith("1 of 9 hidden checks of the function: ")

    def wrong_in_float64_with_an_offset(x, *, offset=0):
        return x + offset * (2 if x.dtype == torch.float64 else 1)

    [line] = score_question(SHIFT, calls, call_ends(calls, {"shifted": wrong_in_float64_with_an_offset})).messages
    # A dtype that separates the failures from passing cases (float32 with the same offsets) is still named.
    assert failure_kind(line) == "wrong values when float64 inputs"


def test_cases_not_run_after_a_time_limit_have_their_own_line_without_factors() -> None:
    """Grader review r9, finding 4: the cases after a timed-out one were said to have reached the time limit."""
    calls = prepare_calls(SPEC, course="seqloss", student="ada", secret=GRADING_SECRET)["test_masked"]
    slow_shape = tuple(decode_value(calls[2].call["args"][0]).shape)

    def slow_on_one_shape(losses, mask, *, reduction="sum"):
        while tuple(losses.shape) == slow_shape:
            pass
        return _masked_mean(losses, mask, reduction=reduction)

    ends = call_ends(calls, {"masked": slow_on_one_shape}, limits=Limits(timeout_s=0.5))
    statuses = [ends[c.call["id"]].status for c in calls]
    first = statuses.index(CallStatus.TIMEOUT)
    assert statuses == [CallStatus.OK] * first + [CallStatus.TIMEOUT] + [CallStatus.NOT_RUN] * (13 - first)
    assert first == 0, "the spec's first case has the slow shape: every other case is not run"
    # Two lines: the cases not run have no factor and no example (which ones they are depends on the order).
    assert score_question(QUESTION, calls, ends).messages == [
        f"13 of 14 hidden checks of the function: {NOT_RUN_AFTER_TIMEOUT}",
        "1 of 14 hidden checks of the function: time limit reached when reduction='sum'; "
        "e.g. masked(losses float32 (2, 3), mask bool (2, 3), reduction='sum')"]
    assert NOT_RUN_AFTER_TIMEOUT == "not run, since an earlier case of this function reached the time limit"
