"""A question's scope in the sandbox's kernel (coursekit.grading.snapshot): the names as its test cell left them."""

from __future__ import annotations

from typing import Any

from coursekit.grading.kernel import Kernel, run_step
from coursekit.grading.limits import Limits
from coursekit.grading.protocol import CallReport, CallStatus, RunAdapter, RunCall, RunCell
from coursekit.grading.snapshot import question_scope, snapshot
from coursekit.grading.wire import decode_value, encode_value


def _run(namespace: dict[str, Any], source: str) -> dict[str, Any]:
    exec(source, namespace)  # noqa: S102 - the test's own source
    return namespace


def test_a_function_rebound_to_its_snapshot_calls_the_helpers_bound_at_the_test_cell() -> None:
    namespace = _run({}, "def scale():\n    return 2\ndef answer(x):\n    return x * scale()\n")
    kept = snapshot(namespace)
    _run(namespace, "def scale():\n    return 3\ndef answer(x):\n    return -x\n")
    scope = question_scope(kept, namespace)
    assert (scope["answer"](5), namespace["answer"](5)) == (10, -5)


def test_a_rebound_function_keeps_its_defaults_closure_attributes_and_aliases() -> None:
    namespace = _run({}, "def make(k):\n    def inner(x, y=1, *, z=2):\n        'doc'\n        return x + y + z + k\n"
                         "    return inner\nanswer = make(10)\nanswer.note = 'kept'\nalias = answer\n")
    scope = question_scope(snapshot(namespace), namespace)
    copy = scope["answer"]
    assert copy is not namespace["answer"] and copy.__globals__ is scope
    assert copy(1) == 14 and copy(1, 2, z=3) == 16
    assert (copy.__doc__, copy.__qualname__, copy.note) == ("doc", "make.<locals>.inner", "kept")
    assert scope["alias"] is copy, "a function under two names is rebound once"
    copy.__kwdefaults__["z"] = 100
    assert namespace["answer"](1) == 14, "the copy's keyword defaults are its own"


def test_functions_from_outside_the_notebook_are_not_rebound() -> None:
    import math

    namespace = _run({"sqrt": math.sqrt}, "import os\n")
    scope = question_scope(snapshot(namespace), namespace)
    assert scope["sqrt"] is math.sqrt and scope["os"] is namespace["os"]


def test_code_reached_otherwise_than_through_globals_sees_the_names_at_the_end() -> None:
    """The documented limit: a method looks its helpers up in the notebook's namespace as it is at the end."""
    namespace = _run({}, "def scale():\n    return 2\nclass Model:\n    def forward(self, x):\n        return x * scale()\n"
                         "model = Model()\n")
    kept = snapshot(namespace)
    _run(namespace, "def scale():\n    return 3\n")
    assert question_scope(kept, namespace)["model"].forward(5) == 15


def test_running_code_in_a_scope_changes_neither_the_snapshot_nor_the_namespace() -> None:
    namespace = _run({}, "x = 1\n")
    kept = snapshot(namespace)
    scope = question_scope(kept, namespace)
    _run(scope, "x = 2\ndef extra():\n    return x\n")
    assert (kept["x"], namespace["x"], "extra" in kept, "extra" in namespace) == (1, 1, False, False)


def _call(number: int, name: str, args: list[Any]) -> RunCall:
    return RunCall({"id": f"q#{number}", "kind": "function", "name": name, "tensors": False,
                    "args": [encode_value(a) for a in args], "kwargs": {}, "banned": []})


def test_the_kernel_runs_each_call_and_adapter_in_the_names_its_test_cell_left() -> None:
    """Grader review r5, finding 3: a name rebound after the test cell changes nothing of that question's score."""
    kernel = Kernel(Limits(timeout_s=5).for_runner(), dedicated_uid=False)
    cells = ["def helper(x):\n    return x + 1\ndef answer(x):\n    return helper(x)\n",
             "pass  # the test cell",
             "# scratch space\ndef helper(x):\n    return x - 1\ndef answer(x):\n    return -x\n"]
    for index, source in enumerate(cells):
        assert not run_step(kernel, RunCell(index, source, snapshot=index == 1)).failed
    adapter = "def _adapted(x):\n    return 10 * answer(x)\n"
    run_step(kernel, RunAdapter(0, adapter, scope=1))
    assert decode_value(run_step(kernel, RunCall(_call(0, "answer", [1]).call, scope=1)).value) == 2
    assert decode_value(run_step(kernel, RunCall(_call(1, "_adapted", [1]).call, scope=1)).value) == 20
    assert decode_value(run_step(kernel, RunCall(_call(2, "answer", [1]).call)).value) == -1
    assert "_adapted" not in kernel.namespace, "the adapter ran in the scope, not in the notebook's names"


def test_a_call_whose_test_cell_never_ran_uses_the_names_as_they_are() -> None:
    kernel = Kernel(Limits(timeout_s=5).for_runner(), dedicated_uid=False)
    assert not run_step(kernel, RunCell(0, "def answer(x):\n    return 2 * x\n")).failed
    assert run_step(kernel, RunCall(_call(0, "answer", [3]).call, scope=7)) == CallReport("q#0", CallStatus.OK,
                                                                                          encode_value(6))
