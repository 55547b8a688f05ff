"""The sandbox's copy of coursekit: what each assignment's notebook needs, never the answer key."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Iterable

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


@pytest.mark.slow
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


def test_a1_withholds_nll_and_every_module_that_needs_it() -> None:
    _spec, plan, view = _view("a1_sequence_loss")
    # chunked: withheld by the spec, since an identity weight makes it a token NLL the ban does not see.
    assert plan.withheld == ("coursekit.losses.chunked", "coursekit.losses.nll")
    text = (view / "losses" / "nll.py").read_text()
    assert "logsumexp" not in text and "_tripwire('coursekit.losses.nll.token_nll')" in text
    unavailable = dict(plan.unavailable)
    assert unavailable["coursekit.losses.smoothing"] == ("coursekit.losses.smoothing", "coursekit.losses.nll")
    assert {"coursekit.train", "coursekit.models.seq2seq"} <= set(unavailable)
    smoothing = (view / "losses" / "smoothing.py").read_text()
    assert "def " not in smoothing and "_unavailable('coursekit.losses.smoothing', 'coursekit.losses.nll')" in smoothing
    init = (view / "losses" / "__init__.py").read_text()
    assert "from coursekit.losses.smoothing import" not in init and "'label_smoothed_nll'" not in init.split("_UNAV")[0]
    assert "coursekit.losses.masking" in plan.kept and "coursekit.data.batching" in plan.kept


def test_a4_keeps_what_does_not_need_its_answers_and_withholds_them() -> None:
    _spec, plan, view = _view("a4_distillation")
    assert {"coursekit.losses.distillation", "coursekit.losses.smoothing", "coursekit.models.distillation"} <= set(
        plan.withheld)
    assert {"coursekit.losses.nll", "coursekit.models.seq2seq", "coursekit.models.ngram"} <= set(plan.kept)
    assert {"coursekit.train", "coursekit.losses.jsd"} <= set(dict(plan.unavailable))
    assert (view / "models" / "checkpoints" / "translator_teacher.pt").is_file()
    init = (view / "models" / "__init__.py").read_text()
    assert "from coursekit.models.ngram import NGramLM" in init and "from coursekit.models.distillation import" in init


def _run_in_view(view: Path, code: str) -> str:
    """Run ``code`` in a fresh interpreter that imports ``coursekit`` from ``view``; its stdout."""
    code = f"import sys\nsys.path.insert(0, {str(view.parent)!r})\n" + code
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_an_a3_answer_can_train_through_coursekit_train_as_chapter_4_does() -> None:
    """Grader review r11, F2: the view held only what the released cells import, so this import failed."""
    _spec, plan, view = _view("a3_rnn_loss")
    assert "coursekit.train" in plan.kept and plan.unavailable == ()
    out = _run_in_view(view, "from coursekit.train import TBPTTObjective, train\nprint(TBPTTObjective.__module__)\n")
    assert out.split() == ["coursekit.train"]


@pytest.mark.slow
def test_a_module_that_needs_a_withheld_one_says_so_and_is_no_use_of_the_reference() -> None:
    _spec, plan, view = _view("a4_distillation")
    out = _run_in_view(view, (
        "from coursekit.grading.withheld import NotAvailable, ReferenceWithheld, reached\n"
        "for statement in ('import coursekit.train', 'from coursekit.train import train',\n"
        "                  'from coursekit.losses import generalized_jsd'):\n"
        "    try:\n"
        "        exec(statement)\n"
        "    except ImportError as error:\n"
        "        print(type(error).__name__, '|', error)\n"
        "import coursekit.losses\n"
        "print(hasattr(coursekit.losses, 'no_such_name'), 'generalized_jsd' in coursekit.losses.__all__, reached())\n"
        "from coursekit.models import sequence_kd_pairs\n"
        "try:\n"
        "    sequence_kd_pairs()\n"
        "except ReferenceWithheld:\n"
        "    print(reached())\n"
    ))
    lines = out.splitlines()
    needs = "is not available while this assignment is graded: it needs coursekit.losses.distillation"
    assert lines[0].startswith(f"NotAvailable | coursekit.train {needs}"), lines
    assert lines[1].startswith(f"NotAvailable | coursekit.train {needs}"), lines
    assert lines[2].startswith(f"NotAvailable | coursekit.losses.generalized_jsd {needs}"), lines
    assert lines[3:] == ["False False []", "['coursekit.models.distillation.sequence_kd_pairs']"]


def test_a_module_that_reaches_a_withheld_one_through_a_package_or_another_module_is_unavailable(
        tmp_path: Path) -> None:
    package = tmp_path / "coursekit"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text(
        "from coursekit.sub.answers import token_nll\nfrom coursekit.sub.helpers import helper\n"
        "from coursekit.sub.free import free\n__all__ = ['token_nll', 'helper', 'free']\n"
        "def __getattr__(name):\n    return 'own ' + name\n")
    (package / "sub" / "answers.py").write_text("def token_nll(x):\n    return x\n")
    (package / "sub" / "helpers.py").write_text("from coursekit.sub import token_nll\ndef helper():\n    pass\n")
    (package / "sub" / "free.py").write_text("def free():\n    return 1\n")
    (package / "later.py").write_text("def later():\n    from coursekit.sub.helpers import helper\n")
    plan = plan_view({"token_nll"}, [("coursekit.sub", ("free",))], root=package)
    assert plan.withheld == ("coursekit.sub.answers",)
    assert dict(plan.unavailable) == {"coursekit.sub.helpers": ("coursekit.sub.helpers", "coursekit.sub.answers"),
                                      "coursekit.later": ("coursekit.later", "coursekit.sub.helpers",
                                                          "coursekit.sub.answers")}
    assert set(plan.kept) == {"coursekit", "coursekit.sub", "coursekit.sub.free"}
    init = dict(plan.files)["sub/__init__.py"]
    namespace: dict[str, object] = {"__name__": "coursekit.sub"}
    exec(init.replace("from coursekit.sub.answers import token_nll\n", "").replace(
        "from coursekit.sub.free import free\n", ""), namespace)
    assert namespace["__all__"] == ["token_nll", "free"] and namespace["__getattr__"]("other") == "own other"
    with pytest.raises(ImportError, match="coursekit.sub.helper is not available .* coursekit.sub.answers"):
        namespace["__getattr__"]("helper")
    with pytest.raises(ValueError, match="coursekit.sub.helpers imports coursekit.sub.answers"):
        plan_view({"token_nll"}, [("coursekit.sub", ("helper",))], root=package)


def _modules_text(names: Iterable[str]) -> str:
    """``coursekit.train``, ``coursekit.losses.{causal, jsd}``: one entry per parent, in the page's words."""
    by_parent: dict[str, list[str]] = {}
    for name in names:
        parent, _, last = name.rpartition(".")
        by_parent.setdefault(parent, []).append(last)
    parts = []
    for parent, lasts in sorted(by_parent.items(), key=lambda item: (item[0].count("."), item[0])):
        inner = lasts[0] if len(lasts) == 1 else "{" + ", ".join(sorted(lasts)) + "}"
        parts.append(f"`{parent}.{inner}`")
    return ", ".join(parts) or "none"


def _students_table() -> str:
    """The students' page's table of what each assignment's grading withholds, from :func:`plan_view`."""
    rows = ["| Assignment | Withheld: a call stops with an error | Not available: importing one stops with an error |",
            "| --- | --- | --- |"]
    for assignment in SPECS:
        plan = plan_view(graded_names(load_spec(REPO / "assignments" / "autograde" / f"{assignment}.py")), [])
        rows.append(f"| {assignment.split('_')[0].upper()} | {_modules_text(plan.withheld)} | "
                    f"{_modules_text(name for name, _chain in plan.unavailable)} |")
    return "\n".join(rows) + "\n"


def test_the_students_page_lists_what_each_assignment_withholds() -> None:
    """The page's table is this test's rendering of every spec's plan: regenerate it with ``_students_table()``."""
    page = (REPO / "book" / "for_students.md").read_text()
    assert _students_table() in page, _students_table()


@pytest.mark.slow
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
    assert plan.unavailable == (("coursekit.helpers", ("coursekit.helpers", "coursekit.answers")),)
