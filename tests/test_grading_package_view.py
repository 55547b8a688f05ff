"""The sandbox's copy of coursekit: what each assignment's notebook needs, never the answer key."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from adversarial.course import REPO
from coursekit.grading.package_view import materialise, notebook_imports, plan_view
from coursekit.grading.spec import FunctionQuestion, adapters, graded_names, load_spec

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
