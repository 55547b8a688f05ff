"""The sandbox's copy of coursekit: what each assignment's notebook needs, never the answer key."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from adversarial.course import REPO
from coursekit.grading.package_view import materialise, notebook_imports, plan_view
from coursekit.grading.spec import (AssignmentSpec, FunctionQuestion, adapters, graded_names, load_spec,
                                    withheld_functions, withheld_name)

pytestmark = pytest.mark.grading

SPECS = sorted(p.stem for p in (REPO / "assignments" / "autograde").glob("*.py"))


def _released_sources(assignment: str) -> list[str]:
    """The code cells the sandbox may run that are not tests (the released notebook's given and answer cells)."""
    notebook = json.loads((REPO / "assignments" / "source" / assignment / f"{assignment}.ipynb").read_text())
    return ["".join(cell["source"]) for cell in notebook["cells"]
            if cell["cell_type"] == "code" and not cell["metadata"].get("nbgrader", {}).get("grade")]


def _view(assignment: str) -> tuple[object, Path]:
    spec = load_spec(REPO / "assignments" / "autograde" / f"{assignment}.py")
    plan = plan_view(graded_names(spec), notebook_imports(_released_sources(assignment) + adapters(spec)))
    return spec, plan, materialise(plan)


def _defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


@pytest.mark.parametrize("assignment", SPECS)
def test_no_file_of_the_view_defines_a_graded_function(assignment: str) -> None:
    spec, plan, view = _view(assignment)
    graded = graded_names(spec)
    for path in view.rglob("*.py"):
        assert not _defined(path) & graded, (path, _defined(path) & graded)
    for question in spec.questions:
        reference = getattr(question, "reference", None)
        if isinstance(question, FunctionQuestion) and reference.__module__.startswith("coursekit."):
            assert reference.__module__ in plan.withheld, (question.grade_id, reference.__module__)


def _coursekit_functions_named_by(reference: object) -> list[object]:
    """The ``coursekit`` functions a spec-file reference calls by name (its own code, one level deep)."""
    names = getattr(getattr(reference, "__code__", None), "co_names", ())
    found = [reference.__globals__.get(name) for name in names]
    return [f for f in found if inspect.isfunction(f) and f.__module__.startswith("coursekit.")]


@pytest.mark.parametrize("assignment", SPECS)
def test_every_function_a_question_withholds_is_a_tripwire_in_the_view(assignment: str) -> None:
    """Grader review r1, finding 11: what is withheld is named, not inferred from the student function's name."""
    spec, plan, view = _view(assignment)
    for question in spec.questions:
        withheld = withheld_functions(question)
        reference = getattr(question, "reference", None)
        if reference is not None and not reference.__module__.startswith("coursekit."):
            # A reference written in the spec file must name every coursekit function it calls.
            assert set(map(id, _coursekit_functions_named_by(reference))) <= set(map(id, withheld)), question.grade_id
        for function in withheld:
            name = withheld_name(function)
            assert name in plan.tripwires, (question.grade_id, name)
            stub = view.joinpath(*function.__module__.split(".")[1:]).with_suffix(".py").read_text()
            assert f"_tripwire({name!r})" in stub, (question.grade_id, name)


def test_a_spec_file_reference_withholds_what_it_names_whatever_the_students_function_is_called() -> None:
    from coursekit.losses import ctc_loss

    def wrapper(*args: object) -> object:
        return ctc_loss(*args)

    def spec(**withholds: object) -> AssignmentSpec:
        return AssignmentSpec("a", "a", 0, (FunctionQuestion("test_ctc", "alignment_loss", 1, list, wrapper,
                                                            **withholds),))

    assert "coursekit.losses.ctc.ctc_loss" not in plan_view(graded_names(spec()), []).tripwires
    assert "coursekit.losses.ctc.ctc_loss" in plan_view(graded_names(spec(withholds=(ctc_loss,))), []).tripwires
    with pytest.raises(ValueError, match="withholds must be a tuple of coursekit functions"):
        spec(withholds=(len,))


def test_a1_sees_no_loss_implementation_at_all() -> None:
    _spec, plan, view = _view("a1_sequence_loss")
    assert sorted(p.name for p in (view / "losses").glob("*.py")) == ["__init__.py", "nll.py"]
    assert plan.withheld == ("coursekit.losses.nll",)
    assert not (view / "data").exists() and not (view / "models").exists() and not (view / "course").exists()
    text = (view / "losses" / "nll.py").read_text()
    assert "logsumexp" not in text and "_tripwire('coursekit.losses.nll.token_nll')" in text


def test_a4_keeps_what_seq2seq_needs_and_withholds_its_own_answers() -> None:
    _spec, plan, view = _view("a4_distillation")
    assert {"coursekit.losses.distillation", "coursekit.losses.smoothing", "coursekit.models.distillation"} <= set(
        plan.withheld)
    assert "coursekit.losses.nll" in plan.kept and "coursekit.models.seq2seq" in plan.kept
    assert (view / "models" / "checkpoints" / "translator_teacher.pt").is_file()
    init = (view / "models" / "__init__.py").read_text()
    assert "from coursekit.models.ngram import" not in init and "'NGramLM'" not in init


def test_the_view_imports_and_its_stand_ins_raise() -> None:
    _spec, _plan, view = _view("a4_distillation")
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(view.parent)!r})\n"
        "from coursekit.models import Seq2Seq\n"
        "from coursekit.models.checkpoints import load_checkpoint, shipped_checkpoint\n"
        "load_checkpoint(shipped_checkpoint('translator_teacher'))\n"
        "from coursekit.losses import kd_loss, token_nll\n"
        "from coursekit.grading.withheld import ReferenceWithheld, reached\n"
        "try:\n"
        "    kd_loss(1, 2)\n"
        "except ReferenceWithheld:\n"
        "    print('withheld', reached(), token_nll.__module__)\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == "withheld ['coursekit.losses.distillation.kd_loss'] coursekit.losses.nll"


def test_a_kept_module_that_needs_a_withheld_one_is_refused(tmp_path: Path) -> None:
    package = tmp_path / "coursekit"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "answers.py").write_text("def token_nll(x):\n    return x\n")
    (package / "helpers.py").write_text("from coursekit.answers import token_nll\n")
    with pytest.raises(ValueError, match="coursekit.helpers imports coursekit.answers"):
        plan_view({"token_nll"}, [("coursekit.helpers", None)], root=package)
    plan = plan_view({"token_nll"}, [], root=package)
    assert plan.withheld == ("coursekit.answers",) and "coursekit.helpers" not in plan.kept
