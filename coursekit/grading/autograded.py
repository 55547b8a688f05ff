"""The autograded notebook: the restored submission with its outputs, its verdicts and no live HTML.

It is what formgrader shows the instructor and what ``nbgrader
generate_feedback`` turns into the student's feedback page, so nothing the
student wrote may run there: the HTML in every markdown and raw cell is
cleaned with nbconvert's own sanitiser (``<script>``, tags with event handlers
such as ``onerror``, and unknown tags are escaped into text, which shows what
was written); a markdown cell with a link of a scheme that runs code
(``[x](javascript:...)``, which the sanitiser does not see) is shown as text
(:mod:`coursekit.grading.markdown_links`); and the outputs come from the
runner's capped events only (stream and error outputs, never HTML).
"""

from __future__ import annotations

from typing import Any

from coursekit.grading.markdown_links import neutralise_notebook
from coursekit.grading.notebook import PreparedNotebook
from coursekit.grading.protocol import CellStatus
from coursekit.grading.sandbox import RawRun
from coursekit.grading.verdicts import QuestionResult

SKIPPED_CELL = ("This cell crashed the process, exhausted its memory or would not stop at its time limit; "
                "it was skipped on a rerun.\n")
NOT_RUN_CELL = ("Not run by the grader: this cell comes after the last graded cell, so it cannot change a score "
                "(run it in Jupyter to see its output).\n")


def _stream(name: str, text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": name, "text": text}


def _cell_outputs(run: RawRun, cells: list[dict[str, Any]]) -> None:
    count = 0
    for event in run.cells:
        if not 0 <= event.index < len(cells) or cells[event.index]["cell_type"] != "code":
            continue
        count += 1
        outputs = [_stream(name, text) for name, text in (("stdout", event.stdout), ("stderr", event.stderr)) if text]
        if event.status is CellStatus.ERROR:
            outputs.append({"output_type": "error", "ename": event.ename, "evalue": event.evalue,
                            "traceback": [event.traceback]})
        elif event.status is not CellStatus.OK:
            outputs.append(_stream("stderr", SKIPPED_CELL))
        cells[event.index]["outputs"] = outputs
        cells[event.index]["execution_count"] = count
    for index, _why in run.skipped_cells:
        if 0 <= index < len(cells):
            cells[index]["outputs"] = [_stream("stderr", SKIPPED_CELL)]


def sanitise_html(notebook: dict[str, Any]) -> dict[str, Any]:
    """Clean the HTML of every markdown and raw cell, in place, with nbconvert's ``SanitizeHTML``.

    Then every markdown cell with a harmful link is shown as text, and every
    raw cell with one is removed (see
    :func:`~coursekit.grading.markdown_links.neutralise_notebook`).

    Example:
        >>> cell = {"cell_type": "markdown", "metadata": {}, "source": "**mine** <script>alert(1)</script>"}
        >>> sanitise_html({"cells": [cell]})["cells"][0]["source"]
        '**mine** &lt;script&gt;alert(1)&lt;/script&gt;'
    """
    from nbconvert.preprocessors.sanitize import SanitizeHTML

    cleaner = SanitizeHTML()
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") in ("markdown", "raw"):
            source = cell.get("source", "")
            cell["source"] = cleaner.sanitize_html_tags("".join(source) if isinstance(source, list) else source)
    return neutralise_notebook(notebook)


def render(prepared: PreparedNotebook, run: RawRun | None, results: dict[str, QuestionResult],
           outcome: str) -> dict[str, Any]:
    """The autograded notebook: outputs of the cells that ran, a verdict in each test cell, clean HTML.

    A cell after the last graded cell, which the grader does not run, says so.

    Args:
        prepared: the checked and restored submission.
        run: what the sandbox reported (``None`` when the notebook could not be run).
        results: the verdicts, by grade_id.
        outcome: the submission's outcome.

    Returns:
        The notebook (``prepared.notebook``, changed in place).
    """
    notebook = prepared.notebook
    cells = notebook["cells"]
    if run is not None:
        _cell_outputs(run, cells)
        for index in prepared.after_last_graded:
            cells[index]["outputs"] = [_stream("stdout", NOT_RUN_CELL)]
    for name, index in prepared.test_cells.items():
        result = results.get(name)
        if result is None:
            continue
        lines = [f"coursekit grade: {result.score:g} / {result.max_score:g} points "
                 f"({result.counted()}; outcome: {outcome})"]
        lines += result.messages
        # After what the visible checks printed (or raised), as in stock nbgrader's feedback.
        cells[index]["outputs"] = [*cells[index].get("outputs", []), _stream("stdout", "\n".join(lines) + "\n")]
    return sanitise_html(notebook)
