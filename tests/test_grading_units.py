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
from coursekit.grading.notebook import ExpectedCell, prepare, strip_hidden_tests
from coursekit.grading.sandbox import Limits
from coursekit.grading.spec import AssignmentSpec, Case, CheckedQuestion, FunctionQuestion, ValueQuestion, prepare_calls
from coursekit.grading.verdicts import compare, score_question
from coursekit.grading.wire import WireError, decode_array, decode_value, encode_array, encode_value

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
    assert compare(np.array([1.0, 2.0]), reference, rtol=1e-6, atol=0) == "wrong values"
    assert compare(np.array([[1.0, np.nan]]), reference, rtol=1e-6, atol=0).startswith("wrong shape")
    assert compare("1.0", reference, rtol=1e-6, atol=0).startswith("expected numbers")
    assert compare(np.array([True, False]), np.array([1, 0]), rtol=0, atol=0).startswith("expected int64")


def _spec(reference=lambda x: x * 2) -> AssignmentSpec:
    return AssignmentSpec(
        "demo", "demo", 5,
        (
            FunctionQuestion("test_double", "double", 2, lambda rng: [Case((rng.standard_normal(3),)) for _ in range(4)],
                             reference, grad_wrt=(0,)),
            ValueQuestion("test_mc", 1, {"mc": ("B",), "number": (0.5,)}),
        ),
    )


def test_prepared_calls_depend_only_on_the_seed() -> None:
    first, second = prepare_calls(_spec()), prepare_calls(_spec())
    assert [c.call for c in first["test_double"]] == [c.call for c in second["test_double"]]
    expected = [decode_value(c.call["args"][0]) * 2 for c in first["test_double"]]
    for call, value in zip(first["test_double"], expected):
        np.testing.assert_allclose(call.expected, value)
        np.testing.assert_allclose(call.expected_grads[0], 2 * decode_value(call.call["cotangent"]))


def _events(calls, answer):
    return {c.call["id"]: [answer(c)] for c in calls}


def test_score_gives_partial_credit_and_distrusts_duplicates() -> None:
    calls = prepare_calls(_spec())["test_double"]
    question = _spec().questions[0]

    def right(call):
        return {"ev": "call", "id": call.call["id"], "ok": True, "value": encode_value(call.expected),
                "grads": [encode_value(g) for g in call.expected_grads]}

    events = _events(calls, right)
    assert score_question(question, calls, events).score == 2.0
    events[calls[0].call["id"]].append(right(calls[0]))
    wrong = {"ev": "call", "id": calls[1].call["id"], "ok": True, "value": encode_value(np.zeros(3)), "grads": []}
    events[calls[1].call["id"]] = [wrong]
    result = score_question(question, calls, events)
    assert (result.passed, result.total, result.score) == (2, 4, 1.0)


def test_value_questions_split_points_between_variables() -> None:
    calls = prepare_calls(_spec())["test_mc"]
    question = _spec().questions[1]
    events = {calls[0].call["id"]: [{"ev": "call", "id": calls[0].call["id"], "ok": True, "value": {"t": "str", "v": " b"}, "grads": []}],
              calls[1].call["id"]: [{"ev": "call", "id": calls[1].call["id"], "ok": True, "value": encode_value(np.array([0.7])), "grads": []}]}
    assert score_question(question, calls, events).score == 0.5


def test_banned_function_names_zero_the_question() -> None:
    spec = _spec()
    question = FunctionQuestion("test_double", "double", 2, spec.questions[0].cases, spec.questions[0].reference,
                                banned=("cross_entropy",))
    calls = prepare_calls(spec)["test_double"]
    result = score_question(question, calls, {}, ["def double(x):\n    return F.cross_entropy(x)"])
    assert result.score == 0 and "cross_entropy" in result.messages[0]


def _at_least(threshold: float):
    def check(value, case: Case):
        if float(np.sum(value)) < threshold * case.args[0]:
            return "not enough"
        return None
    return check


def test_checked_questions_judge_what_came_back_with_the_case() -> None:
    def cases(rng):
        return [Case((1,)), Case((2,)), Case((3,))]

    question = CheckedQuestion("test_train", "train", 3, cases, _at_least(10.0))
    spec = AssignmentSpec("a", "a", 5, (question,))
    calls = prepare_calls(spec)["test_train"]
    assert [c.call["args"] for c in calls] == [[encode_value(k)] for k in (1, 2, 3)]
    assert [c.expected.args for c in calls] == [(1,), (2,), (3,)]

    def answer(value):
        return lambda c: {"ev": "call", "id": c.call["id"], "ok": True, "value": encode_value(value), "grads": []}

    # 25 is enough for the first two cases (10, 20) and not for the third (30).
    result = score_question(question, calls, _events(calls, answer(np.array([20.0, 5.0]))))
    assert (result.passed, result.total, result.score) == (2, 3, 2.0)
    assert result.messages == ["1 of 3 hidden checks of the function: not enough"]
    # A value the check cannot handle fails the case; it does not stop the grader.
    odd = score_question(question, calls, _events(calls, answer("twenty")))
    assert odd.score == 0 and "could not be checked (TypeError)" in odd.messages[0]


def test_out_of_memory_calls_say_so() -> None:
    calls = prepare_calls(_spec())["test_double"]
    events = _events(calls, lambda c: {"ev": "call", "id": c.call["id"], "ok": False, "ename": "RuntimeError",
                                       "oom": True, "error": "x"})
    result = score_question(_spec().questions[0], calls, events)
    assert result.score == 0 and result.messages == ["4 of 4 hidden checks of the function: ran out of memory"]


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


def test_untouched_notebook_runs_everything_but_the_tests() -> None:
    raw = _notebook(("given", "import torch"), ("answer_double", "def double(x):\n    return 2 * x"),
                    ("test_double", "assert double(1) == 2"), (None, "print(1)"))
    prepared = prepare(raw, EXPECTED, max_bytes=10**6)
    assert prepared.outcome is None and not prepared.tampered and not prepared.missing
    assert [c["index"] for c in prepared.run_cells] == [0, 1, 3]
    assert prepared.test_cells == {"test_double": 2}


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


def test_missing_cells_are_appended_and_not_run() -> None:
    prepared = prepare(_notebook(("answer_double", "def double(x):\n    return 2 * x")), EXPECTED, max_bytes=10**6)
    assert prepared.missing == ["given", "test_double"]
    assert [c["index"] for c in prepared.run_cells] == [0]
    assert len(prepared.notebook["cells"]) == 3


@pytest.mark.parametrize("raw", [b"", b"[]", b"{}", b'{"nbformat": 4, "cells": [{"cell_type": "evil"}]}', b"\xff\xfe"])
def test_unusable_files_are_invalid_notebooks(raw: bytes) -> None:
    prepared = prepare(raw, EXPECTED, max_bytes=10**6)
    assert prepared.outcome == "invalid_notebook"
    assert len(prepared.notebook["cells"]) == 3


def test_hidden_tests_are_stripped() -> None:
    assert strip_hidden_tests("a\n### BEGIN HIDDEN TESTS\nb\n### END HIDDEN TESTS\nc") == "a\nc"


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


def test_student_error_messages_never_reach_the_feedback() -> None:
    calls = prepare_calls(_spec())["test_double"]
    secret = "hidden input 0.123456789"
    events = {c.call["id"]: [{"ev": "call", "id": c.call["id"], "ok": False, "ename": "ValueError",
                              "error": f"ValueError: {secret}"}] for c in calls}
    result = score_question(_spec().questions[0], calls, events)
    assert result.score == 0 and result.messages == ["4 of 4 hidden checks of the function: raised ValueError"]
    # An exception class named after the hidden input is not quoted either.
    for event in events.values():
        event[0]["ename"] = "Leak_0_123456789"
    result = score_question(_spec().questions[0], calls, events)
    assert result.messages == ["4 of 4 hidden checks of the function: raised an exception"]
