"""Check a submitted notebook against the assignment's cells, restore what was tampered with.

The expected cells come from the nbgrader gradebook (what ``generate_assignment``
recorded), with hidden tests removed, so the restored and autograded notebook
shows students exactly the tests they were given and never the hidden ones.
Everything here works on the notebook's JSON as plain data: a submission is
never trusted to be a valid notebook.

These cases are decided here on purpose:

* **An nbgrader cell whose type was changed** (an answer cell turned into
  markdown, say) gets its released type back and the submission the outcome
  ``tampered_cells``, as nbgrader's own ``OverwriteCells`` does; the student's
  text stays and runs as code.
* **An answer moved below its test cell** earns nothing for that question:
  the test cell's visible checks run where the cell stands, as under stock
  nbgrader, find no function and fail, and a question whose visible checks
  fail scores 0 under both graders. (The hidden calls themselves are made
  once every cell up to the last graded one has run.)
* **Cells below the last graded cell** are not run (see
  :func:`last_graded_cell`): they cannot change a score, and the autograded
  notebook says so in them.
* **A cell id repeated** (an editor pasted a cell with its id, as VS Code
  did) is given a fresh id, with a note, as nbformat repairs it: an id stands
  in for nothing; only what can stand in for a protected cell (its grade_id,
  its source, its type) is ``tampered_cells``.
* **A second cell with an answer cell's grade_id** (Jupyter's copy and paste
  keeps the metadata) runs as a plain cell, with a note; the first one is the
  answer. A second copy of a read-only or test cell is ``tampered_cells``.
  (Stock nbgrader's ``DeduplicateIds`` keeps the *last* copy of any nbgrader
  cell and turns the others into plain cells, with a warning in its log.)
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from coursekit.grading.files import SKIP_DIRS
from coursekit.grading.hidden_tests import is_autograder_test
#: JSON strings (whose brackets are text) and every other character that is not a bracket. A string left
#: open at the end of the text (a truncated upload) runs to the end: were it to fail to match instead, the
#: search would start again at every later quote, and each ``\\"`` of the tail would cost a scan to the end.
_STRINGS_AND_VALUES = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)|[^\[\]{}"]+', re.DOTALL)
#: the deepest nesting of JSON arrays and objects a submitted notebook may hold; nbformat needs 6 (an
#: output's data inside its cell inside the notebook), and Python's stack ends near 500 levels.
MAX_NOTEBOOK_DEPTH = 64


@dataclass(frozen=True)
class ExpectedCell:
    """One nbgrader-tracked cell of the released notebook.

    Attributes:
        name: its grade_id.
        cell_type: ``"code"`` or ``"markdown"``.
        source: the released source (hidden tests removed).
        locked: read-only for students (tests and read-only cells).
        grade: has points; solution: holds the student's answer; task: a task cell.
        points: max points when graded.
    """

    name: str
    cell_type: str
    source: str
    locked: bool
    grade: bool
    solution: bool
    task: bool
    points: float | None

    @property
    def autograder_test(self) -> bool:
        """True for a code cell with points and no student answer: scored by the grader (nbgrader's rule)."""
        return is_autograder_test({"cell_type": self.cell_type, "metadata": {"nbgrader": self.metadata()}})

    def metadata(self) -> dict[str, Any]:
        """The nbgrader cell metadata the released notebook carries."""
        data: dict[str, Any] = {
            "grade": self.grade,
            "grade_id": self.name,
            "locked": self.locked,
            "schema_version": 3,
            "solution": self.solution,
            "task": self.task,
        }
        if self.grade or self.task:
            data["points"] = self.points
        return data


def _normalise(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().split("\n"))


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


@dataclass
class PreparedNotebook:
    """A submission checked against the expected cells.

    Attributes:
        outcome: ``None`` when the notebook could be used, else ``"invalid_notebook"``
            or ``"too_large"``.
        missing: grade_ids of expected cells that were not found (restored at the end).
        tampered: descriptions of tampering that was undone.
        notes: what the grader changed that is not tampering (a pasted copy of an answer cell).
        notebook: the restored notebook (JSON dict), ready to receive outputs.
        run_cells: ``[{"index", "source"}]`` of the code cells the sandbox executes, in notebook order (a
            test cell with its released, visible checks only; a restored cell only if it is a test cell),
            up to the last graded cell (see :func:`last_graded_cell`).
        after_last_graded: indices of the code cells after the last graded cell, which are not run.
        test_cells: grade_id -> index of each autograder test cell in ``notebook``.
        detail: why the notebook cannot be run, when it cannot.
        refused_files: files handed in with the notebook that were not copied into the sandbox.
    """

    outcome: str | None
    missing: list[str] = field(default_factory=list)
    tampered: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    notebook: dict[str, Any] = field(default_factory=dict)
    run_cells: list[dict[str, Any]] = field(default_factory=list)
    after_last_graded: list[int] = field(default_factory=list)
    test_cells: dict[str, int] = field(default_factory=dict)
    detail: str = ""
    refused_files: list[str] = field(default_factory=list)


def last_graded_cell(found: dict[str, int], by_name: dict[str, ExpectedCell], size: int) -> int:
    """The index of the last cell that is graded: an autograder test cell, or a code cell graded by hand.

    The cells after it are not run. None of them can change a score: each
    question is scored by its test cell's visible checks and by hidden calls
    made, right after the last cell that runs, in the names as they stood at
    its test cell; under stock nbgrader the hidden tests run in the test
    cells themselves, before those cells. Not running them keeps a student's
    experiments below the last question from taking the grader's time, and
    from changing, through an object they share, what a graded function
    does in its hidden calls. A code cell graded by hand keeps its place
    (and every cell above it) because the instructor reads its output.
    A notebook with no graded cell at all runs to its end (``size - 1``).

    Args:
        found: grade_id -> index of each expected cell in the notebook.
        by_name: grade_id -> the expected cell.
        size: the number of cells in the notebook.

    Returns:
        The index of the last graded cell.

    Example:
        >>> test = ExpectedCell("t", "code", "assert f(1) == 2", True, True, False, False, 1.0)
        >>> answer = ExpectedCell("a", "code", "def f(x): ...", False, False, True, False, None)
        >>> last_graded_cell({"a": 1, "t": 2}, {"a": answer, "t": test}, size=5)
        2
    """
    graded = [index for name, index in found.items()
              if by_name[name].autograder_test or (by_name[name].grade and by_name[name].cell_type == "code")]
    return max(graded, default=size - 1)


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in the JSON ``text``, brackets inside strings not counted.

    Counted without parsing (iteratively, in linear time), so that a notebook nested deeper than any
    parser or copy can recurse is refused before anything recurses into it. A string left open at the
    end (a truncated upload) counts as text up to the end, so no later bracket counts.

    Example:
        >>> nesting_depth('{"a": [[1], "]]]"], "b": {}}')
        3
        >>> nesting_depth('{"cells": [{"source": "<table class=\\\\"x\\\\">[[[')
        3
    """
    structure = _STRINGS_AND_VALUES.sub("", text)
    return max(itertools.accumulate(1 if char in "[{" else -1 for char in structure), default=0)


def _fresh_ids(cells: list[dict[str, Any]]) -> list[str]:
    """Give a fresh id to every cell whose id repeats an earlier one or is not text; say which, in notes.

    An id names nothing the grader trusts (cells are matched by their nbgrader
    grade_id and source), and editors have pasted cells with the original's id
    (VS Code, microsoft/vscode#143396). nbformat repairs such ids with a
    warning; so does the grader, with a note, never ``tampered_cells``.

    Example:
        >>> cells = [{"id": "a"}, {"id": "a"}, {"id": "fresh-1"}, {}]
        >>> _fresh_ids(cells), [cell.get("id") for cell in cells]
        (["cell 1 repeated the id 'a' of an earlier cell (pasted in an editor?); it was given a fresh id"], \
['a', 'fresh-2', 'fresh-1', None])
    """
    taken = {cell["id"] for cell in cells if isinstance(cell.get("id"), str)}
    fresh = (f"fresh-{n}" for n in itertools.count(1) if f"fresh-{n}" not in taken)
    seen: set[str] = set()
    notes = []
    for index, cell in enumerate(cells):
        cell_id = cell.get("id")
        if cell_id is None:
            continue
        if isinstance(cell_id, str) and cell_id not in seen:
            seen.add(cell_id)
            continue
        problem = (f"repeated the id {cell_id[:40]!r} of an earlier cell (pasted in an editor?)"
                   if isinstance(cell_id, str) else "had an id that is not text")
        notes.append(f"cell {index} {problem}; it was given a fresh id")
        cell["id"] = next(fresh)
        seen.add(cell["id"])
    return notes


def _valid_structure(data: object) -> str:
    if not isinstance(data, dict):
        return "the file is not a JSON object"
    if data.get("nbformat") != 4:
        return f"nbformat must be 4, got {data.get('nbformat')!r}"
    cells = data.get("cells")
    if not isinstance(cells, list):
        return "the notebook has no list of cells"
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            return f"cell {index} is not a code, markdown or raw cell"
        source = cell.get("source", "")
        if not (isinstance(source, str) or isinstance(source, list) and all(isinstance(s, str) for s in source)):
            return f"cell {index} has a source that is not text"
        if not isinstance(cell.get("metadata", {}), dict):
            return f"cell {index} has metadata that is not an object"
    return ""


def blank_notebook(expected: list[ExpectedCell]) -> dict[str, Any]:
    """The released notebook rebuilt from the expected cells (used when a submission is unusable).

    Args:
        expected: the notebook's expected cells.

    Returns:
        A notebook dict with those cells, no outputs.
    """
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [_restored_cell(cell, index) for index, cell in enumerate(expected)],
    }


def unusable(outcome: str, expected: list[ExpectedCell], detail: str) -> PreparedNotebook:
    """A submission that cannot be run: the released notebook stands in for it.

    Args:
        outcome: ``"invalid_notebook"``, ``"missing_notebook"`` or ``"too_large"``.
        expected: the notebook's expected cells.
        detail: why.

    Returns:
        A prepared notebook with that outcome, whose test cells will receive the verdicts.
    """
    notebook = blank_notebook(expected)
    tests = {cell.name: index for index, cell in enumerate(expected) if cell.autograder_test}
    return PreparedNotebook(outcome, notebook=notebook, test_cells=tests, detail=detail)


#: the most notebooks a ``missing_notebook`` note names (it says how many more there are), and the longest name shown.
NOTEBOOKS_NAMED = 5
NAME_SHOWN_CHARS = 80


def _shown(name: str) -> str:
    """``name`` cut to :data:`NAME_SHOWN_CHARS` characters (a student chooses it, and may make it 4 kB long)."""
    return name if len(name) <= NAME_SHOWN_CHARS else name[: NAME_SHOWN_CHARS - 1] + "\u2026"


def _notebooks_under(directory: Path) -> Iterator[str]:
    """The relative paths of the notebooks anywhere under ``directory`` (no caches, no linked folders)."""
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        base = Path(root).relative_to(directory)
        yield from ((base / name).as_posix() for name in names if name.endswith(".ipynb"))


def missing_notebook_note(directory: Path, expected_name: str) -> str:
    """Why a submission has no notebook of the expected name, naming the notebooks that are there instead.

    Notebooks are looked for in every folder of the submission (a folder
    handed in unzipped puts the notebook one level down); at most
    :data:`NOTEBOOKS_NAMED` are named, the first in sorted order, each cut to
    :data:`NAME_SHOWN_CHARS` characters, and the note says how many more
    there are, so its length does not grow with the submission.

    Args:
        directory: the submission's folder (``submitted/<student>/<assignment>``).
        expected_name: the notebook's file name, e.g. ``a1_sequence_loss.ipynb``.

    Returns:
        The note for the instructor: the expected name, the notebooks found
        (e.g. Jupyter's ``...-Copy1.ipynb``) and what to do.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "a1-Copy1.ipynb").write_text("{}")
        >>> print(missing_notebook_note(folder, "a1.ipynb"))  # doctest: +NORMALIZE_WHITESPACE
        no a1.ipynb in the submission; found a1-Copy1.ipynb: rename it to a1.ipynb and regrade with --force
        (stock nbgrader autograde does not grade it either: it skips a notebook its gradebook does not know)
        >>> (folder / "a1-Copy1.ipynb").unlink()
        >>> (folder / "a1").mkdir()
        >>> _ = (folder / "a1" / "a1.ipynb").write_text("{}")
        >>> print(missing_notebook_note(folder, "a1.ipynb"))  # doctest: +NORMALIZE_WHITESPACE
        no a1.ipynb in the submission; found a1/a1.ipynb: move it to the submission's own folder as a1.ipynb and
        regrade with --force (stock nbgrader autograde does not grade it either: it skips a notebook its gradebook
        does not know)
    """
    total = 0

    def counted() -> Iterator[str]:
        nonlocal total
        for name in _notebooks_under(directory) if directory.is_dir() else ():
            total += 1
            yield name

    # Only the few names shown are kept, whatever the number of notebooks.
    named = heapq.nsmallest(NOTEBOOKS_NAMED, counted())
    if not named:
        return f"no {expected_name} in the submission, and no other notebook"
    more = total - len(named)
    listed = ", ".join(_shown(name) for name in named) + (f" and {more:,} more" if more else "")
    nested = any("/" in name for name in named)
    if total == 1 and nested:
        action = f"move it to the submission's own folder as {expected_name}"
    elif total == 1:
        action = f"rename it to {expected_name}"
    else:
        action = f"rename the one to grade to {expected_name}" + (" in the submission's own folder" if nested else "")
    return (f"no {expected_name} in the submission; found {listed}: {action} and regrade with --force (stock nbgrader "
            "autograde does not grade it either: it skips a notebook its gradebook does not know)")


def _restored_cell(cell: ExpectedCell, index: int) -> dict[str, Any]:
    restored: dict[str, Any] = {
        "cell_type": cell.cell_type,
        "id": f"restored-{index}-{cell.name}"[:64],
        "metadata": {"nbgrader": cell.metadata()},
        "source": cell.source,
    }
    if cell.cell_type == "code":
        restored.update(outputs=[], execution_count=None)
    return restored


def prepare(raw: bytes, expected: list[ExpectedCell], *, max_bytes: int) -> PreparedNotebook:
    """Parse, check and restore a submitted notebook.

    Args:
        raw: the notebook file's bytes.
        expected: the expected cells of this notebook.
        max_bytes: larger notebooks are rejected as ``too_large``.

    Returns:
        The prepared notebook; ``outcome`` says whether it can be run.

    Example:
        >>> prepare(b"", [], max_bytes=100).outcome
        'invalid_notebook'
    """
    if len(raw) > max_bytes:
        return unusable("too_large", expected, f"{len(raw)} bytes, limit {max_bytes}")
    try:
        # utf-8-sig: a byte-order mark left by some Windows editors is not the student's fault.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return unusable("invalid_notebook", expected, f"not valid JSON: {str(error)[:200]}")
    depth = nesting_depth(text)
    if depth > MAX_NOTEBOOK_DEPTH:
        return unusable("invalid_notebook", expected,
                        f"the notebook nests arrays and objects {depth} deep, more than {MAX_NOTEBOOK_DEPTH}")
    try:
        notebook = json.loads(text)
    except (ValueError, RecursionError) as error:
        return unusable("invalid_notebook", expected, f"not valid JSON: {str(error)[:200]}")
    problem = _valid_structure(notebook)
    if problem:
        return unusable("invalid_notebook", expected, problem)

    result = PreparedNotebook(None)
    cells: list[dict[str, Any]] = notebook["cells"]
    by_name = {cell.name: cell for cell in expected}

    for index, cell in enumerate(cells):
        cell["source"] = _source(cell)
        cell.setdefault("metadata", {})
    result.notes += _fresh_ids(cells)

    found: dict[str, int] = {}
    for index, cell in enumerate(cells):
        meta = cell["metadata"].get("nbgrader")
        name = meta.get("grade_id") if isinstance(meta, dict) else None
        if meta is not None and (not isinstance(name, str) or name not in by_name):
            cell["metadata"].pop("nbgrader", None)
            continue
        if name is None:
            continue
        if name in found:
            # Jupyter's copy and paste keeps a cell's metadata: a copy of an answer cell is an honest
            # student's scratch work and runs as a plain cell. Only a copy of a read-only or test cell
            # can stand in for the released one, so only that is tampering.
            if by_name[name].locked:
                result.tampered.append(f"duplicate nbgrader cell {name!r}")
            else:
                result.notes.append(f"cell {index} is a copy of answer cell {name!r} (pasted in Jupyter?); "
                                    "it ran as a plain cell")
            cell["metadata"].pop("nbgrader", None)
            continue
        found[name] = index

    # Cells whose nbgrader metadata was stripped are recognised by their released source.
    for cell_spec in expected:
        if cell_spec.name in found or not cell_spec.locked:
            continue
        for index, cell in enumerate(cells):
            if "nbgrader" not in cell["metadata"] and _normalise(cell["source"]) == _normalise(cell_spec.source):
                found[cell_spec.name] = index
                result.tampered.append(f"nbgrader metadata of {cell_spec.name!r} restored")
                break

    for cell_spec in expected:
        if cell_spec.name not in found:
            result.missing.append(cell_spec.name)
            continue
        cell = cells[found[cell_spec.name]]
        if cell_spec.locked and (
            cell["cell_type"] != cell_spec.cell_type or _normalise(cell["source"]) != _normalise(cell_spec.source)
        ):
            result.tampered.append(f"read-only cell {cell_spec.name!r} restored")
            cell["source"] = cell_spec.source
        elif cell["cell_type"] != cell_spec.cell_type:
            result.tampered.append(f"cell {cell_spec.name!r} was {cell['cell_type']}; restored as {cell_spec.cell_type}")
        if cell["cell_type"] != cell_spec.cell_type:
            cell["cell_type"] = cell_spec.cell_type
            if cell_spec.cell_type != "code":
                cell.pop("outputs", None)
                cell.pop("execution_count", None)
        cell["metadata"]["nbgrader"] = cell_spec.metadata()

    for name in result.missing:
        cells.append(_restored_cell(by_name[name], len(cells)))
        found[name] = len(cells) - 1

    missing = set(result.missing)
    for cell in cells:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    for name, index in found.items():
        if by_name[name].autograder_test:
            result.test_cells[name] = index
    # A test cell runs where it stands, with its released (visible) checks only: a check that fails scores its
    # question 0, as under stock nbgrader (see verdicts.visible_check_failure). A restored test cell runs too.
    skip = {index for name, index in found.items() if name in missing and not by_name[name].autograder_test}
    last = last_graded_cell(found, by_name, len(cells))
    code = [index for index, cell in enumerate(cells) if cell["cell_type"] == "code" and index not in skip]
    result.run_cells = [{"index": index, "source": cells[index]["source"]} for index in code if index <= last]
    result.after_last_graded = [index for index in code if index > last]
    result.notebook = notebook
    return result
