"""A throwaway copy of the nbgrader course with assignment 1 generated, and submission helpers."""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from coursekit.course.config import course_id

REPO = Path(__file__).resolve().parents[2]
ASSIGNMENT = "a1_sequence_loss"
VENV_BIN = Path(sys.executable).parent
#: How the tests run ``nbgrader ARGS``: what the ``nbgrader`` script runs (``nbgrader.apps.nbgraderapp.main``,
#: in this Python, with the script's ``sys.argv[0]`` and no working directory on ``sys.path``), less jsonschema's
#: IRI grammars, which no nbgrader command validates and which cost about 2 s of each command's start (see
#: :func:`coursekit.cli.without_iri_grammars`). The benchmark and the instructors' page run the script itself.
NBGRADER = [sys.executable, "-c", "\n".join([
    "import sys",
    "del sys.path[0]",
    "from coursekit.cli import without_iri_grammars",
    "with without_iri_grammars():",
    "    from nbgrader.apps.nbgraderapp import main",
    "    sys.argv[0] = 'nbgrader'",
    "    status = main()",
    "sys.exit(status)",
])]


def tool_env(db_url: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("COURSEKIT_DB_URL", None)
    if db_url:
        env["COURSEKIT_DB_URL"] = db_url
    return env


def make_course(target: Path, db_url: str | None = None, assignment: str = ASSIGNMENT) -> Path:
    """Copy the course (config, the assignment's source, its grading spec) to ``target``, with the assignment generated.

    ``nbgrader generate_assignment`` (about 7 CPU-s) runs once per process for each assignment and
    course id, in a template that later calls copy; with ``db_url`` (a PostgreSQL gradebook, which a
    copy cannot duplicate) it runs in ``target`` itself. ``target`` keeps its own mode.
    """
    target.mkdir(parents=True, exist_ok=True)
    if db_url is not None:
        _generate(target, assignment, db_url)
        return target
    key = (assignment, course_id())
    if key not in _GENERATED:
        # A folder made by mkdir inside the 0700 mkdtemp one: what is copied out of it has the usual modes.
        template = Path(tempfile.mkdtemp(prefix="coursekit-course-template-")) / "course"
        atexit.register(shutil.rmtree, template.parent, True)
        template.mkdir()
        _generate(template, assignment, None)
        _GENERATED[key] = template
    for entry in _GENERATED[key].iterdir():
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name, symlinks=True)
        else:
            shutil.copy2(entry, target / entry.name)
    return target


#: generated courses by (assignment, course id), for :func:`make_course` to copy.
_GENERATED: dict[tuple[str, str], Path] = {}


def _generate(target: Path, assignment: str, db_url: str | None) -> None:
    """Copy the config, the assignment's source and its spec to ``target`` and run generate_assignment there."""
    source = REPO / "assignments"
    shutil.copy(source / "nbgrader_config.py", target / "nbgrader_config.py")
    shutil.copytree(source / "source" / assignment, target / "source" / assignment)
    (target / "autograde").mkdir()
    shutil.copy(source / "autograde" / f"{assignment}.py", target / "autograde" / f"{assignment}.py")
    subprocess.run(
        [*NBGRADER, "generate_assignment", assignment, "--force"],
        cwd=target, env=tool_env(db_url), check=True, capture_output=True, timeout=300,
    )


def release_notebook(course: Path, assignment: str = ASSIGNMENT) -> dict[str, Any]:
    return json.loads((course / "release" / assignment / f"{assignment}.ipynb").read_text())


def solutions(course: Path, assignment: str = ASSIGNMENT) -> dict[str, str]:
    """The source notebook's answers (solution markers removed), keyed by grade_id."""
    notebook = json.loads((course / "source" / assignment / f"{assignment}.ipynb").read_text())
    answers = {}
    for cell in notebook["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code":
            text = "".join(cell["source"])
            answers[meta["grade_id"]] = re.sub(r"[ \t]*### (BEGIN|END) SOLUTION\n?", "", text)
    return answers


def solved_notebook(course: Path, assignment: str = ASSIGNMENT) -> dict[str, Any]:
    """The released notebook with every code answer filled in from the source's solution."""
    notebook = release_notebook(course, assignment)
    answers = solutions(course, assignment)
    for cell in notebook["cells"]:
        name = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if name in answers:
            cell["source"] = answers[name]
    return notebook


def cell_index(notebook: dict[str, Any], grade_id: str) -> int:
    for index, cell in enumerate(notebook["cells"]):
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == grade_id:
            return index
    raise KeyError(grade_id)


def set_answer(notebook: dict[str, Any], grade_id: str, source: str) -> dict[str, Any]:
    notebook["cells"][cell_index(notebook, grade_id)]["source"] = source
    return notebook


def add_cell(notebook: dict[str, Any], source: str, after: str | None = None) -> dict[str, Any]:
    cell = {"cell_type": "code", "id": f"extra-{len(notebook['cells'])}", "metadata": {}, "outputs": [],
            "execution_count": None, "source": source}
    position = cell_index(notebook, after) + 1 if after else 3
    notebook["cells"].insert(position, cell)
    return notebook


def submit(course: Path, student: str, notebook: dict[str, Any] | bytes,
           timestamp: str = "2026-11-20 10:00:00.000000 UTC", assignment: str = ASSIGNMENT) -> Path:
    directory = course / "submitted" / student / assignment
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{assignment}.ipynb"
    path.write_bytes(notebook if isinstance(notebook, bytes) else json.dumps(notebook, indent=1).encode())
    (directory / "timestamp.txt").write_text(timestamp)
    return path
