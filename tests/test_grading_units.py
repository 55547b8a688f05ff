"""Fast checks of the grader's pieces: the wire format, verdicts, notebook checks, the spec, the CLI."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coursekit.cli import build_parser
from coursekit.grading.graded_call import run_graded_call
from coursekit.grading.limits import Limits
from coursekit.grading.notebook import ExpectedCell, prepare
from coursekit.grading.protocol import CallEnd, CallStatus
from coursekit.grading.spec import (AssignmentSpec, BannedOp, Case, CheckedQuestion, FunctionQuestion, ValueQuestion,
                                    prepare_calls)
from coursekit.grading.verdicts import Mismatch, compare, failure_kind, score_question
from coursekit.grading.wire import WireError, decode_array, decode_value, encode_array, encode_value
from conftest import GRADING_SECRET

pytestmark = pytest.mark.grading

DTYPES = [np.float32, np.float64, np.int64, np.bool_]


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(0, 4), max_size=3),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_arrays_round_trip_exactly(shape: list[int], dtype: type, seed: int) -> None:
    array = np.asarray(np.random.default_rng(seed).standard_normal(shape) * 10).astype(dtype)
    back = decode_array(json.loads(json.dumps(encode_array(array))))
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array, equal_nan=array.dtype.kind == "f")


@pytest.mark.parametrize(
    "message",
    [
        {"t": "array", "dtype": "object", "shape": [1], "data": ""},
        {"t": "array", "dtype": "float64", "shape": [2], "data": base64.b64encode(b"\0" * 8).decode()},
        {"t": "array", "dtype": "float64", "shape": [-1], "data": ""},
        {"t": "array", "dtype": "float64", "shape": [1], "data": "!!!"},
        {"t": "array", "dtype": "float64", "shape": [0], "data": "", "extra": 1},
        {"t": "pickle", "v": "gASVAAAAAAAAAAA="},
        {"t": "float", "v": 1.0},
        {"t": "int", "v": True},
        "0.0",
    ],
)
def test_malformed_messages_are_rejected(message: object) -> None:
    with pytest.raises(WireError):
        decode_value(message)


def test_non_finite_floats_survive_the_wire() -> None:
    values = [float("nan"), float("inf"), -0.0]
    back = decode_value(json.loads(json.dumps(encode_value(values))))
    assert math.isnan(back[0]) and back[1] == math.inf and math.copysign(1, back[2]) == -1


def test_compare_is_strict_about_shape_and_kind() -> None:
    reference = np.array([1.0, np.nan])
    assert compare(np.array([1.0, np.nan]), reference, rtol=1e-6, atol=0) is None
    assert compare(np.array([1.0, 2.0]), reference, rtol=1e-6, atol=0) == Mismatch(
        "wrong values", "first at [1]: expected nan, got a finite number")
    assert compare(np.array([[1.0, np.nan]]), reference, rtol=1e-6, atol=0) == Mismatch(
        "wrong shape", "expected shape (2,), got 2 dimensions that the expected shape broadcasts to")
    assert compare("1.0", reference, rtol=1e-6, atol=0).reason.startswith("expected numbers")
    assert compare(np.array([True, False]), np.array([1, 0]), rtol=0, atol=0).reason.startswith("expected int64")


@pytest.mark.parametrize(("got", "want"), [(np.float32, np.float64), (np.float64, np.float32), (np.float16, np.float32)])
def test_compare_wants_the_reference_s_float_dtype(got: type, want: type) -> None:
    reference = np.array([1.0, 2.0], dtype=want)
    assert compare(reference.astype(got), reference, rtol=1e-3, atol=0) == Mismatch(
        f"expected {np.dtype(want)} values, got {np.dtype(got)}")
    assert compare(reference.copy(), reference, rtol=1e-3, atol=0) is None
    item = compare([reference.astype(got)], [reference], rtol=1e-3, atol=0)
    assert (item.reason, item.path) == (f"expected {np.dtype(want)} values, got {np.dtype(got)}", (0,))


def test_a_python_number_answers_a_float_reference_of_either_dtype() -> None:
    # It has no dtype of its own; a question that wants a tensor says so in its visible checks.
    for dtype in (np.float32, np.float64):
        assert compare(0.5, np.array(0.5, dtype=dtype), rtol=1e-6, atol=0) is None


def test_a_value_question_takes_a_number_in_any_float_dtype() -> None:
    calls = _calls(_spec(), "test_mc")
    question = _spec().questions[1]
    for dtype in (np.float16, np.float32, np.float64):
        ends = {calls[0].call["id"]: CallEnd(calls[0].call["id"], CallStatus.OK, {"t": "str", "v": "B"}),
                calls[1].call["id"]: CallEnd(calls[1].call["id"], CallStatus.OK, encode_value(np.array(0.5, dtype)))}
        assert score_question(question, calls, ends).score == 1.0, dtype


@pytest.mark.parametrize("answer", [2, 2.0, torch.tensor(2), torch.tensor([2], dtype=torch.int32),
                                    torch.tensor(2, dtype=torch.uint8), np.int64(2), torch.tensor(2.0, dtype=torch.float16)])
def test_a_value_question_takes_a_whole_number_by_its_value(answer: object) -> None:
    # Grader review r11, F9: a1's `halves_bits = 2` passed its visible check and lost the hidden one
    # ("expected floating-point values, got int64"); both graders read a variable through run_graded_call.
    question = ValueQuestion("test_number", 1, {"number": (2.0,)})
    calls = _calls(AssignmentSpec("demo", "demo", 5, (question,)), "test_number")
    report = run_graded_call({"number": answer}, calls[0].call)
    ends = {calls[0].call["id"]: CallEnd(report.call_id, report.status, report.value)}
    assert score_question(question, calls, ends).score == 1.0


@pytest.mark.parametrize("answer", [3, True, torch.tensor(True), "2"])
def test_a_value_question_refuses_another_number_and_a_bool(answer: object) -> None:
    question = ValueQuestion("test_number", 1, {"number": (1.0 if isinstance(answer, (bool, torch.Tensor)) else 2.0,)})
    calls = _calls(AssignmentSpec("demo", "demo", 5, (question,)), "test_number")
    report = run_graded_call({"number": answer}, calls[0].call)
    ends = {calls[0].call["id"]: CallEnd(report.call_id, report.status, report.value)}
    result = score_question(question, calls, ends)
    assert (result.score, result.messages) == (0.0, ["1 of 1 hidden checks of the answer: number: wrong answer"])


def test_a_function_question_still_refuses_integers_where_floats_are_expected() -> None:
    # The waiver is a value question's alone: a function whose reference returns floats must return floats.
    assert compare(np.array([2, 4]), np.array([2.0, 4.0]), rtol=1e-5, atol=0) == Mismatch(
        "expected floating-point values, got int64")
    assert compare(2, 2.0, rtol=1e-5, atol=0).reason == "expected floating-point values, got int64"
    assert compare(np.array([2, 4]), np.array([2.0, 4.0]), rtol=1e-5, atol=0, exact_dtype=False) is None
    calls = _calls(_spec(), "test_double")
    ends = _ends(calls, _right)
    ends[calls[0].call["id"]] = CallEnd(calls[0].call["id"], CallStatus.OK,
                                        encode_value(calls[0].expected.round().astype(np.int64)),
                                        [encode_value(g) for g in calls[0].expected_grads])
    result = score_question(_spec().questions[0], calls, ends)
    assert result.passed == 3 and failure_kind(result.messages[0]) == "expected floating-point values, got int64"


def _spec(reference=lambda x: x * 2) -> AssignmentSpec:
    return AssignmentSpec(
        "demo", "demo", 5,
        (
            FunctionQuestion("test_double", "double", 2, lambda rng: [Case((rng.standard_normal(3),)) for _ in range(4)],
                             reference, grad_wrt=(0,)),
            ValueQuestion("test_mc", 1, {"mc": ("B",), "number": (0.5,)}),
        ),
    )


def _calls(spec: AssignmentSpec, grade_id: str, student: str = "ada") -> list:
    return prepare_calls(spec, course="seqloss", student=student, secret=GRADING_SECRET)[grade_id]


def test_prepared_calls_depend_on_the_seed_the_course_and_the_student() -> None:
    first, again = _calls(_spec(), "test_double"), _calls(_spec(), "test_double")
    assert [c.call for c in first] == [c.call for c in again]
    other_student = _calls(_spec(), "test_double", student="bob")
    other_course = prepare_calls(_spec(), course="other", student="ada", secret=GRADING_SECRET)["test_double"]
    for other in (other_student, other_course):
        assert all(a.call["args"] != b.call["args"] for a, b in zip(first, other))
    expected = [decode_value(c.call["args"][0]) * 2 for c in first]
    for call, value in zip(first, expected):
        np.testing.assert_allclose(call.expected, value)
        np.testing.assert_allclose(call.expected_grads[0], 2 * decode_value(call.call["cotangent"]))


def _ends(calls, answer) -> dict[str, CallEnd]:
    return {c.call["id"]: answer(c) for c in calls}


def _right(call) -> CallEnd:
    return CallEnd(call.call["id"], CallStatus.OK, encode_value(call.expected),
                   [encode_value(g) for g in call.expected_grads])


def test_score_gives_partial_credit() -> None:
    calls = _calls(_spec(), "test_double")
    question = _spec().questions[0]
    ends = _ends(calls, _right)
    assert score_question(question, calls, ends).score == 2.0
    ends[calls[1].call["id"]] = CallEnd(calls[1].call["id"], CallStatus.OK, encode_value(np.zeros(3)))
    del ends[calls[2].call["id"]]
    result = score_question(question, calls, ends)
    assert (result.passed, result.total, result.score) == (2, 4, 1.0)
    assert [failure_kind(m) for m in sorted(result.messages)] == [
        "no result (the process stopped before this call)", "wrong values"]
    wrong = next(m for m in result.messages if "wrong values" in m)
    expected = decode_value(calls[1].call["args"][0])[0] * 2
    assert wrong == ("1 of 4 hidden checks of the function: wrong values; e.g. double(x float64 (3,)): "
                     f"first at [0]: expected {expected:.4g}, got a {'smaller' if expected > 0 else 'larger'} value")


def test_value_questions_split_points_between_variables() -> None:
    calls = _calls(_spec(), "test_mc")
    question = _spec().questions[1]
    ends = {calls[0].call["id"]: CallEnd(calls[0].call["id"], CallStatus.OK, {"t": "str", "v": " b"}),
            calls[1].call["id"]: CallEnd(calls[1].call["id"], CallStatus.OK, encode_value(np.array([0.7])))}
    assert score_question(question, calls, ends).score == 0.5


def test_a_banned_operator_forfeits_the_question() -> None:
    spec = _spec()
    question = FunctionQuestion("test_double", "double", 2, spec.questions[0].cases, spec.questions[0].reference,
                                banned=(BannedOp("_log_softmax", "F.log_softmax"),))
    calls = _calls(spec, "test_double")
    ends = _ends(calls, _right)
    ends[calls[0].call["id"]] = CallEnd(calls[0].call["id"], CallStatus.BANNED, hits=["_log_softmax"])
    result = score_question(question, calls, ends)
    assert (result.score, result.messages, result.uses_reference) == (0.0, ["double must not use F.log_softmax"], False)


def test_reaching_a_withheld_reference_forfeits_the_question() -> None:
    calls = _calls(_spec(), "test_double")
    ends = _ends(calls, _right)
    ends[calls[3].call["id"]] = CallEnd(calls[3].call["id"], CallStatus.WITHHELD, hits=["coursekit.losses.nll.x"])
    result = score_question(_spec().questions[0], calls, ends, tripwires={"coursekit.losses.nll.x"})
    assert result.score == 0.0 and result.uses_reference
    assert result.messages == ["double reaches the reference (coursekit.losses.nll.x), which earns nothing"]


#: what a graded function can write into its report's hits: its hidden inputs (review round 1, finding 2).
FORGED = "LEAK:[[-0.9655, 0.1234, 2.5]]"


def test_withheld_names_the_grader_does_not_know_are_never_quoted() -> None:
    calls = _calls(_spec(), "test_double")
    ends = {c.call["id"]: CallEnd(c.call["id"], CallStatus.WITHHELD, hits=[FORGED]) for c in calls}
    result = score_question(_spec().questions[0], calls, ends, tripwires={"coursekit.losses.nll.x"})
    assert (result.score, result.uses_reference) == (0.0, False)
    assert result.messages == ["4 of 4 hidden checks of the function: malformed result; e.g. double(x float64 (3,))"]
    mixed = {**ends, calls[0].call["id"]: CallEnd(calls[0].call["id"], CallStatus.WITHHELD,
                                                  hits=[FORGED, "coursekit.losses.nll.x"])}
    result = score_question(_spec().questions[0], calls, mixed, tripwires={"coursekit.losses.nll.x"})
    assert result.messages == ["double reaches the reference (coursekit.losses.nll.x), which earns nothing"]


#: forged values whose decoding fails: each carries FORGED where an error message could quote it.
FORGED_VALUES = [
    {"t": FORGED},
    {"t": FORGED, "v": 1},
    {"t": "float", "v": FORGED},
    {"t": "array", "dtype": FORGED, "shape": [1], "data": ""},
    {"t": "array", "dtype": "float64", "shape": [FORGED], "data": ""},
    {"t": "array", "dtype": "float64", "shape": [9655, 1234, 25], "data": ""},
    {"t": "array", "dtype": "float64", "shape": [1], "data": FORGED},
]


@pytest.mark.parametrize("value", FORGED_VALUES)
def test_wire_errors_never_quote_what_they_were_sent(value: dict) -> None:
    with pytest.raises(WireError) as caught:
        decode_value(value)
    assert "LEAK" not in str(caught.value) and "9655" not in str(caught.value)


@pytest.mark.parametrize("value", FORGED_VALUES)
def test_a_malformed_result_is_reported_in_fixed_words(value: dict) -> None:
    calls = _calls(_spec(), "test_double")
    ends = {c.call["id"]: CallEnd(c.call["id"], CallStatus.OK, value=value) for c in calls}
    result = score_question(_spec().questions[0], calls, ends)
    assert result.messages == ["4 of 4 hidden checks of the function: malformed result; e.g. double(x float64 (3,))"]


def test_a_wrong_shape_quotes_at_most_a_few_of_the_student_s_dimensions() -> None:
    # A zero-size array can carry any dimensions: a long shape would be a channel out of the sandbox.
    mismatch = compare(np.zeros([0, 3, 14159, 26535, 8979, 323]), np.zeros(4), rtol=0, atol=0)
    assert mismatch == Mismatch("wrong shape", "expected shape (4,), got 6 dimensions")


def test_banned_names_are_quoted_only_as_the_spec_shows_them() -> None:
    spec = _spec()
    question = FunctionQuestion("test_double", "double", 2, spec.questions[0].cases, spec.questions[0].reference,
                                banned=(BannedOp("_log_softmax", "F.log_softmax"),))
    calls = _calls(spec, "test_double")
    ends = _ends(calls, _right)
    ends[calls[0].call["id"]] = CallEnd(calls[0].call["id"], CallStatus.BANNED, hits=[FORGED, "_log_softmax"])
    assert score_question(question, calls, ends).messages == ["double must not use F.log_softmax"]
    ends[calls[0].call["id"]] = CallEnd(calls[0].call["id"], CallStatus.BANNED, hits=[FORGED])
    result = score_question(question, calls, ends)
    assert (result.score, result.messages) == (
        1.5, ["1 of 4 hidden checks of the function: malformed result; e.g. double(x float64 (3,))"])


def test_the_runner_relays_only_hits_it_knows() -> None:
    from coursekit.grading.protocol import CallReport
    from coursekit.grading.runner import StepResult, call_end

    def relayed(status: CallStatus, hits: list[str]) -> CallEnd:
        return call_end("q#0", StepResult(report=CallReport("q#0", status, hits=hits)), Limits().for_runner(),
                        banned=frozenset({"_log_softmax"}), tripwires=frozenset({"coursekit.losses.nll.token_nll"}))

    assert relayed(CallStatus.WITHHELD, [FORGED, "coursekit.losses.nll.token_nll"]).hits == [
        "coursekit.losses.nll.token_nll"]
    assert relayed(CallStatus.BANNED, ["_log_softmax", FORGED]).hits == ["_log_softmax"]
    assert relayed(CallStatus.WITHHELD, [FORGED]).status is CallStatus.MALFORMED
    assert relayed(CallStatus.BANNED, ["coursekit.losses.nll.token_nll"]).status is CallStatus.MALFORMED
    assert relayed(CallStatus.RAISED, [FORGED]).hits == []


def _at_least(threshold: float):
    def check(value, case: Case, check_seed: int):
        if float(np.sum(value)) < threshold * case.args[0]:
            return "not enough"
        return None
    return check


def test_checked_questions_judge_what_came_back_with_the_case() -> None:
    def cases(rng):
        return [Case((1,)), Case((2,)), Case((3,))]

    question = CheckedQuestion("test_train", "train", 3, cases, _at_least(10.0))
    spec = AssignmentSpec("a", "a", 5, (question,))
    calls = _calls(spec, "test_train")
    assert [c.call["args"] for c in calls] == [[encode_value(k)] for k in (1, 2, 3)]
    assert [c.expected.case.args for c in calls] == [(1,), (2,), (3,)]

    def answer(value):
        return lambda c: CallEnd(c.call["id"], CallStatus.OK, encode_value(value))

    # 25 is enough for the first two cases (10, 20) and not for the third (30).
    result = score_question(question, calls, _ends(calls, answer(np.array([20.0, 5.0]))))
    assert (result.passed, result.total, result.score) == (2, 3, 2.0)
    assert result.messages == ["1 of 3 hidden checks of the function: not enough"]
    # A value the check cannot handle fails the case; it does not stop the grader.
    odd = score_question(question, calls, _ends(calls, answer("twenty")))
    assert odd.score == 0 and "could not be checked (TypeError)" in odd.messages[0]


def test_out_of_memory_calls_say_so() -> None:
    calls = _calls(_spec(), "test_double")
    ends = _ends(calls, lambda c: CallEnd(c.call["id"], CallStatus.OUT_OF_MEMORY, ename="RuntimeError"))
    result = score_question(_spec().questions[0], calls, ends)
    assert result.score == 0 and result.messages == [
        "4 of 4 hidden checks of the function: ran out of memory; e.g. double(x float64 (3,))"]


@pytest.mark.parametrize("budget", [0, 63, 100.0, True, "512"])
def test_memory_budget_is_validated(budget: object) -> None:
    with pytest.raises(ValueError, match="memory_budget_mb must be None or an int >= 64, got"):
        AssignmentSpec("a", "a", 0, (), memory_budget_mb=budget)  # type: ignore[arg-type]


EXPECTED = [
    ExpectedCell("given", "code", "import torch", True, False, False, False, None),
    ExpectedCell("answer_double", "code", "def double(x):\n    raise NotImplementedError", False, False, True, False, None),
    ExpectedCell("test_double", "code", "assert double(1) == 2", True, True, False, False, 2.0),
]


def _notebook(*cells: tuple[str | None, str]) -> bytes:
    out = []
    for index, (name, source) in enumerate(cells):
        meta = {}
        if name:
            cell = next(c for c in EXPECTED if c.name == name)
            meta = {"nbgrader": cell.metadata()}
        out.append({"cell_type": "code", "id": f"c{index}", "metadata": meta, "source": source, "outputs": [],
                    "execution_count": None})
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": out}).encode()


def test_untouched_notebook_runs_its_code_cells_in_order_up_to_the_last_test_cell() -> None:
    raw = _notebook(("given", "import torch"), (None, "x = 1"), ("answer_double", "def double(x):\n    return 2 * x"),
                    ("test_double", "assert double(1) == 2"), (None, "print(1)"), (None, "print(2)"))
    prepared = prepare(raw, EXPECTED, max_bytes=10**6)
    assert prepared.outcome is None and not prepared.tampered and not prepared.missing
    assert [c["index"] for c in prepared.run_cells] == [0, 1, 2, 3]
    assert prepared.run_cells[3]["source"] == "assert double(1) == 2"
    assert prepared.test_cells == {"test_double": 3}
    assert prepared.after_last_graded == [4, 5]


def test_a_code_cell_graded_by_hand_below_the_last_test_cell_runs_with_every_cell_above_it() -> None:
    """Its output is what the instructor grades; the cells below it still do not run."""
    by_hand = ExpectedCell("plot", "code", "# plot the loss", False, True, True, False, 2.0)
    raw = json.loads(_notebook(("given", "import torch"), ("answer_double", "def double(x):\n    return 2 * x"),
                               ("test_double", "assert double(1) == 2"), (None, "y = double(3)"),
                               (None, "print(y)"), (None, "print('after')")))
    raw["cells"][4]["metadata"] = {"nbgrader": by_hand.metadata()}
    prepared = prepare(json.dumps(raw).encode(), [*EXPECTED, by_hand], max_bytes=10**6)
    assert [c["index"] for c in prepared.run_cells] == [0, 1, 2, 3, 4]
    assert prepared.after_last_graded == [5]


def test_edited_read_only_cells_are_restored_before_running() -> None:
    raw = _notebook(("given", "import os; os.system('rm -rf /')"), ("answer_double", "def double(x):\n    return 2 * x"),
                    ("test_double", "pass"))
    prepared = prepare(raw, EXPECTED, max_bytes=10**6)
    assert prepared.run_cells[0]["source"] == "import torch"
    assert prepared.notebook["cells"][2]["source"] == "assert double(1) == 2"
    assert len(prepared.tampered) == 2


def test_a_byte_order_mark_is_accepted() -> None:
    plain = prepare(_notebook(("given", "import torch"), ("answer_double", "def double(x):\n    return 2 * x"),
                              ("test_double", "assert double(1) == 2")), EXPECTED, max_bytes=10**6)
    marked = prepare(b"\xef\xbb\xbf" + _notebook(("given", "import torch"),
                                                  ("answer_double", "def double(x):\n    return 2 * x"),
                                                  ("test_double", "assert double(1) == 2")), EXPECTED, max_bytes=10**6)
    assert plain.outcome is None and marked.outcome is None
    assert marked.run_cells == plain.run_cells


def test_missing_cells_are_appended_and_only_a_test_cells_visible_checks_run() -> None:
    prepared = prepare(_notebook(("answer_double", "def double(x):\n    return 2 * x")), EXPECTED, max_bytes=10**6)
    assert prepared.missing == ["given", "test_double"]
    assert [c["index"] for c in prepared.run_cells] == [0, 2]
    assert len(prepared.notebook["cells"]) == 3


@pytest.mark.parametrize("raw", [b"", b"[]", b"{}", b'{"nbformat": 4, "cells": [{"cell_type": "evil"}]}', b"\xff\xfe"])
def test_unusable_files_are_invalid_notebooks(raw: bytes) -> None:
    prepared = prepare(raw, EXPECTED, max_bytes=10**6)
    assert prepared.outcome == "invalid_notebook"
    assert len(prepared.notebook["cells"]) == 3


@pytest.mark.parametrize("depth", [700, 100_000])
def test_a_notebook_nested_deeper_than_the_limit_is_invalid_never_a_crash(depth: int) -> None:
    """Grader review r3, finding 2: 700 levels in the metadata made the copy of the notebook raise RecursionError."""
    notebook = json.loads(_notebook(("given", "import torch")))
    raw = json.dumps(notebook).encode()[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
    prepared = prepare(raw, EXPECTED, max_bytes=10**7)
    assert prepared.outcome == "invalid_notebook"
    from coursekit.grading.notebook import MAX_NOTEBOOK_DEPTH

    assert prepared.detail == f"the notebook nests arrays and objects {depth + 1} deep, more than {MAX_NOTEBOOK_DEPTH}"


TRUNCATED_UPLOAD_CHECK = """
import json, sys, time
from coursekit.grading.notebook import prepare
head = json.dumps({"nbformat": 4, "cells": [{"cell_type": "code", "source": "", "outputs": [
    {"output_type": "display_data", "data": {"text/html": ""}}]}]}).split('"text/html": "')[0]
for size in (16 * 1024, 1024 * 1024):
    tail = '<td class=\\\\"x\\\\">1</td>' * (size // 20)
    raw = (head + '"text/html": "' + tail).encode()
    started = time.process_time()
    prepared = prepare(raw, [], max_bytes=10**8)
    print(len(raw), prepared.outcome, time.process_time() - started)
"""


def test_a_truncated_upload_full_of_escaped_quotes_is_refused_in_linear_time() -> None:
    """Grader review r4, finding 3: the bracket count retried an unterminated string at every ``\\"``, so a
    491 KB truncated upload took minutes of the grader's own CPU. Linear, 1 MiB takes milliseconds; the
    quadratic count took about an hour on it, so the child's time limit, not a flaky bound, fails it."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", TRUNCATED_UPLOAD_CHECK], capture_output=True, text=True,
                          timeout=120, check=True)
    lines = [line.split() for line in done.stdout.splitlines()]
    assert [int(size) > limit for (size, _, _), limit in zip(lines, (16 * 1024, 1024 * 1024))] == [True, True]
    assert [outcome for _, outcome, _ in lines] == ["invalid_notebook", "invalid_notebook"]
    assert float(lines[1][2]) < 5.0, f"1 MiB of truncated HTML took {lines[1][2]} s of CPU to refuse"


def test_the_preparation_time_guard_interrupts_a_stalled_step() -> None:
    from coursekit.grading.time_guard import PreparationTimeout, time_guard

    with pytest.raises(PreparationTimeout, match="spinning took longer than 0.2 s"):
        with time_guard(0.2, "spinning"):
            while True:
                pass
    with time_guard(5.0, "nothing"):
        pass


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    source = "x = '" + "[" * 5_000 + "\\\"" + "{" * 5_000 + "'"
    prepared = prepare(_notebook(("given", "import torch"), (None, source)), EXPECTED, max_bytes=10**6)
    assert prepared.outcome is None
    assert prepared.run_cells[1]["source"] == source


def test_a_pasted_copy_of_an_answer_cell_runs_as_a_plain_cell_with_a_note() -> None:
    """Grader review r3, finding 5: Jupyter's copy keeps the nbgrader metadata; that is not tampering."""
    raw = _notebook(("given", "import torch"), ("answer_double", "def double(x):\n    return 2 * x"),
                    ("answer_double", "# trying another way\ndef double(x):\n    return x + x"),
                    ("test_double", "assert double(1) == 2"))
    prepared = prepare(raw, EXPECTED, max_bytes=10**6)
    assert prepared.tampered == []
    assert prepared.notes == ["cell 2 is a copy of answer cell 'answer_double' (pasted in Jupyter?); "
                              "it ran as a plain cell"]
    assert "nbgrader" not in prepared.notebook["cells"][2]["metadata"]
    assert prepared.notebook["cells"][1]["metadata"]["nbgrader"]["grade_id"] == "answer_double"
    assert [c["index"] for c in prepared.run_cells] == [0, 1, 2, 3]


@pytest.mark.parametrize("copied", ["given", "test_double"])
def test_a_copy_of_a_read_only_or_test_cell_is_tampering(copied: str) -> None:
    source = {"given": "import torch", "test_double": "assert double(1) == 2"}[copied]
    raw = _notebook(("given", "import torch"), ("answer_double", "def double(x):\n    return 2 * x"),
                    ("test_double", "assert double(1) == 2"), (copied, source))
    prepared = prepare(raw, EXPECTED, max_bytes=10**6)
    assert prepared.tampered == [f"duplicate nbgrader cell {copied!r}"]
    assert prepared.notes == []


def test_limits_and_cli_validate_their_arguments() -> None:
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=100)
    with pytest.raises(ValueError, match="timeout_s"):
        Limits(timeout_s=0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["grade", "a1", "--jobs", "0"])
    args = build_parser().parse_args(["grade", "a1", "--student", "x", "--student", "y", "--executor", "dask://h:1",
                                      "--timeout", "5", "--memory", "1024", "--force", "--require-sandbox"])
    assert (args.students, args.executor, args.timeout, args.memory, args.force, args.require_sandbox) == (
        ["x", "y"], "dask://h:1", 5.0, 1024, True, True)


def test_a_student_s_exception_message_reaches_only_the_instructor_short_and_without_its_digits() -> None:
    """Grader review r4, finding 1: a message may spell hidden inputs in letters; the feedback names the type only."""
    calls = _calls(_spec(), "test_double")
    message = "x must be finite, got " + "[-0.9655, 0.1234, 2.5] " * 20
    ends = _ends(calls, lambda c: CallEnd(c.call["id"], CallStatus.RAISED, ename="ValueError", evalue=message))
    result = score_question(_spec().questions[0], calls, ends)
    assert result.score == 0
    assert result.messages == ["4 of 4 hidden checks of the function: raised ValueError; e.g. double(x float64 (3,))"]
    [said] = result.raised
    assert said.startswith("double(x float64 (3,)): ValueError: x must be finite, got [-#.#, #.#, #.#]")
    assert not any(ch.isdigit() for ch in said.split("double(x float64 (3,))")[1])
    assert said.endswith("...") and len(said.split(": ValueError: ")[1]) == 160


def test_an_exception_class_of_the_student_s_making_is_never_named() -> None:
    calls = _calls(_spec(), "test_double")
    ends = _ends(calls, lambda c: CallEnd(c.call["id"], CallStatus.RAISED, ename="Leak_0_123456789", evalue="no"))
    result = score_question(_spec().questions[0], calls, ends)
    assert result.messages == [
        "4 of 4 hidden checks of the function: raised an exception of its own class; e.g. double(x float64 (3,))"]
    assert result.raised == ["double(x float64 (3,)): no"]


def test_a_returned_value_is_shown_by_its_class_only() -> None:
    """Grader review r4, finding 1: the returned number is the student's to choose (any hidden value, say)."""
    calls = _calls(_spec(), "test_double")
    expected = decode_value(calls[0].call["args"][0]) * 2

    def shown(first: float) -> str:
        answer = expected.copy()
        answer[0] = first
        ends = _ends(calls, _right)
        ends[calls[0].call["id"]] = CallEnd(calls[0].call["id"], CallStatus.OK, encode_value(answer))
        [line] = score_question(_spec().questions[0], calls, ends).messages
        return line.split(f"expected {expected[0]:.4g}, got ")[1]

    assert [shown(v) for v in (expected[0] + 1001.5, expected[0] - 7, np.nan, np.inf, -np.inf)] == [
        "a larger value", "a smaller value", "nan", "inf", "-inf"]


def test_a_returned_shape_is_shown_by_its_number_of_dimensions_only() -> None:
    """Grader review r4, finding 1: a zero-size result may carry any dimensions (three hidden numbers, say)."""
    reference = np.zeros((2, 3))
    assert compare(np.zeros((51303, 26609, 44812, 0)), reference, rtol=0, atol=0).detail == (
        "expected shape (2, 3), got 4 dimensions")
    assert compare(np.zeros(6), reference, rtol=0, atol=0).detail == "expected shape (2, 3), got 1 dimension"
    assert compare(np.zeros((3, 2)), reference, rtol=0, atol=0).detail == (
        "expected shape (2, 3), got the same dimensions in another order (a transpose?)")


def test_an_answer_cell_turned_into_markdown_is_restored_as_code_and_reported() -> None:
    raw = json.loads(_notebook(("given", "import torch"), ("answer_double", "def double(x):\n    return 2 * x"),
                               ("test_double", "assert double(1) == 2")))
    raw["cells"][1]["cell_type"] = "markdown"
    del raw["cells"][1]["outputs"], raw["cells"][1]["execution_count"]
    prepared = prepare(json.dumps(raw).encode(), EXPECTED, max_bytes=10**6)
    assert prepared.tampered == ["cell 'answer_double' was markdown; restored as code"]
    assert prepared.notebook["cells"][1]["cell_type"] == "code"
    assert [c["index"] for c in prepared.run_cells] == [0, 1, 2]


def test_restored_missing_cells_get_consecutive_ids() -> None:
    prepared = prepare(_notebook(("answer_double", "def double(x):\n    return 2 * x")), EXPECTED, max_bytes=10**6)
    assert [c["id"] for c in prepared.notebook["cells"][1:]] == ["restored-1-given", "restored-2-test_double"]


def test_limits_name_the_time_policy() -> None:
    limits = Limits(timeout_s=10)
    assert (limits.wall_s, limits.step_wall_s, limits.grace_s) == (70.0, 30.0, 2.5)
    assert limits.sandbox_memory_mb == 2048 + 2 * 256 + 512
    assert (limits.calls_wall_s, limits.total_wall_s) == (70.0, 140.0)
    # The kernel's RLIMIT_CPU outlasts both budgets: the grader's clocks stop it first.
    assert limits.for_runner()["cpu_total_s"] == 145


@pytest.mark.parametrize(("path", "package", "refused"), [
    ("numpy.py", False, True), ("torch/__init__.py", True, True), ("json.py", False, True),
    ("IPython.so", False, True), ("data/numpy.py", False, False), ("helpers.py", False, False),
    ("numpy.txt", False, False), ("resource.cpython-311-x86_64-linux-gnu.so", False, True),
])
def test_submitted_files_that_shadow_a_module_are_refused(path: str, package: bool, refused: bool) -> None:
    from coursekit.grading.files import refuse_shadowing

    files = {path: b"x"}
    if package:
        files["torch/other.py"] = b"y"
    kept, names = refuse_shadowing(files)
    assert (path in names) == refused and (path in kept) != refused


@pytest.mark.parametrize("forged", [{"memory": True}, {"timed_out": True}, {"died": True}])
def test_a_finished_run_that_reports_a_limit_still_shows_its_tampered_or_missing_cells(forged: dict) -> None:
    import dataclasses

    from coursekit.grading.outcomes import Evidence, classify

    # ``raise MemoryError`` in a cell (or a class named CellTimeout) is the student's word (grader r2, finding 9).
    calm = Evidence(False, False, False, False, True, False, False, False, False, False)
    assert classify(dataclasses.replace(calm, tampered=True, **forged))[0] == "tampered_cells"
    assert classify(dataclasses.replace(calm, missing=True, **forged))[0] == "missing_cells"


def test_which_limit_a_run_met_is_read_from_the_runners_measurements_not_the_names_a_cell_raises() -> None:
    """Grader review r2, finding 9: a run that died after a cell raised ``MemoryError`` itself died; it did not
    run out of memory. The runner's measurement (``ended``) decides."""
    from coursekit.grading.notebook import PreparedNotebook
    from coursekit.grading.outcomes import Evidence, classify
    from coursekit.grading.protocol import CellEnd, CellStatus, Done, StepEnd
    from coursekit.grading.sandbox import RawRun

    def outcome(*cells: CellEnd) -> str:
        run = RawRun(cells=list(cells), ready=True, done=Done(stopped_cell=cells[-1].index))
        return classify(Evidence.of(run, PreparedNotebook(None, tampered=["a test cell"]), []))[0]

    died = CellEnd(2, CellStatus.DIED, ended=StepEnd.EXITED)
    forged = [CellEnd(0, CellStatus.ERROR, "MemoryError", ended=StepEnd.REPORTED),
              CellEnd(1, CellStatus.ERROR, "CellTimeout", ended=StepEnd.REPORTED)]
    assert outcome(*forged, died) == "kernel_died"
    assert outcome(CellEnd(0, CellStatus.ERROR, "MemoryError", ended=StepEnd.MEMORY_LIMIT), died) == "memory_limit"
    assert outcome(CellEnd(0, CellStatus.ERROR, "ValueError", ended=StepEnd.TIME_LIMIT), died) == "kernel_died"
    finished = RawRun(cells=forged, ready=True, done=Done())
    assert classify(Evidence.of(finished, PreparedNotebook(None), [])) == ("graded", "")
def test_a_result_of_the_wrong_shape_fails_on_its_shape_not_in_the_backward_pass() -> None:
    from coursekit.grading.kernel import Kernel, run_step
    from coursekit.grading.protocol import RunCall, RunCell

    kernel = Kernel(Limits(timeout_s=5).for_runner(), dedicated_uid=False)
    assert not run_step(kernel, RunCell(0, "def total(x):\n    return x.sum()\n")).failed
    call = {"id": "q#0", "kind": "function", "name": "total", "tensors": True, "args": [encode_value(np.ones(3))],
            "kwargs": {}, "banned": [], "grad_wrt": [0], "cotangent": encode_value(np.ones(3))}
    report = run_step(kernel, RunCall(call))
    assert (report.status, report.grads) == (CallStatus.OK, [])
    assert compare(decode_value(report.value), np.ones(3), rtol=0, atol=0).reason == "wrong shape"


def test_a_repeated_cell_id_is_given_a_fresh_one_with_a_note_not_tampering() -> None:
    """Grader review r4, finding 7: VS Code pasted cells with the original's id; nbformat repairs it, so do we."""
    notebook = json.loads(_notebook(("given", "import torch"), (None, "x = 1"), (None, "y = 2")))
    notebook["cells"][1]["id"] = notebook["cells"][2]["id"] = "same-id"
    prepared = prepare(json.dumps(notebook).encode(), EXPECTED, max_bytes=10**6)
    assert prepared.tampered == [] and prepared.outcome is None
    assert prepared.notes == ["cell 2 repeated the id 'same-id' of an earlier cell (pasted in an editor?); it was given "
                              "a fresh id"]
    ids = [cell["id"] for cell in prepared.notebook["cells"]]
    assert ids[1] == "same-id" and len(ids) == len(set(ids))


def test_a_value_question_refuses_an_accepted_answer_that_is_not_a_string_or_a_float() -> None:
    """Grader review r12, R5: an int accepted answer would be compared exactly and refuse a student's 2.0."""
    from coursekit.grading.spec import ValueQuestion

    with pytest.raises(ValueError, match=r"^test_x: answers\['halves'\]\[1\] must be a str or a float \(2\.0, not 2\), "
                                         r"got int 2$"):
        ValueQuestion("test_x", 1, {"halves": (2.0, 2)})
    assert ValueQuestion("test_x", 1, {"halves": (2.0, "two")}).answers == {"halves": (2.0, "two")}
