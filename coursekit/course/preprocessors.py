"""nbgrader preprocessors that fix two behaviours of stock nbgrader for this course.

* :class:`RedactHiddenTests` runs while feedback is generated. Autograding puts the
  instructor's full test cells (hidden tests included) back into every submission,
  and stock ``generate_feedback`` renders them as they are, so the hidden tests
  would reach the students. This preprocessor cuts every
  ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` region out of the cell
  sources and replaces tracebacks raised from such cells by their last line, which
  names the exception and its message but quotes no code.
* :class:`StderrIsNotFailure` runs while autograding, right after execution. Stock
  nbgrader gives zero points to a test cell that wrote anything to stderr, so a
  correct answer that emits a harmless ``warnings.warn`` would lose its points. A
  failing test raises, and an ``error`` output still gives zero; stderr text is
  kept, visible in the feedback, but relabelled as ordinary output.
* :class:`NeutraliseHarmfulLinks` runs after nbconvert's ``SanitizeHTML``, while
  autograding and while feedback is generated. The sanitiser cleans HTML tags
  only; a markdown link such as ``[x](javascript:...)`` passes it and becomes a
  live link in formgrader and in the feedback page. Markdown cells and markdown
  outputs holding such a link are shown as text
  (see :mod:`coursekit.grading.markdown_links`).
"""

from __future__ import annotations

from typing import Any

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"


def _nbgrader_meta(cell: NotebookNode) -> dict[str, Any]:
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def is_test_cell(cell: NotebookNode) -> bool:
    """True for an autograder test cell: a graded code cell that is not an answer.

    Args:
        cell: a notebook cell.

    Returns:
        Whether nbgrader grades ``cell`` by running it.

    Example:
        >>> from nbformat.v4 import new_code_cell
        >>> cell = new_code_cell("assert True")
        >>> cell.metadata["nbgrader"] = {"grade": True, "solution": False, "points": 1}
        >>> is_test_cell(cell), is_test_cell(new_code_cell("x = 1"))
        (True, False)
    """
    meta = _nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def strip_hidden_regions(source: str, begin: str = BEGIN_HIDDEN, end: str = END_HIDDEN) -> tuple[str, int]:
    """Remove every line from ``begin`` to ``end`` (both included) from ``source``.

    Args:
        source: a cell's source text.
        begin: the line marker that opens a hidden region.
        end: the line marker that closes it.

    Returns:
        The remaining text and the number of regions removed. An unterminated
        region hides everything after its ``begin`` line: leaking is worse than
        hiding too much.

    Raises:
        TypeError: ``source`` is not a string.

    Example:
        >>> text = "assert f(1) == 2\\n### BEGIN HIDDEN TESTS\\nassert f(3) == 9\\n### END HIDDEN TESTS"
        >>> strip_hidden_regions(text)
        ('assert f(1) == 2', 1)
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, got {type(source).__name__}")
    kept: list[str] = []
    inside = False
    regions = 0
    for line in source.split("\n"):
        if begin in line:
            inside = True
            regions += 1
        elif end in line and inside:
            inside = False
        elif not inside:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept), regions


class RedactHiddenTests(NbGraderPreprocessor):
    """Feedback preprocessor: no hidden test source reaches the student's feedback HTML.

    Add it to ``GenerateFeedback.preprocessors`` before the HTML is written (the
    course's ``nbgrader_config.py`` does this through :func:`coursekit.course.configure`).
    """

    begin_test_delimeter = Unicode(BEGIN_HIDDEN, help="Line marker opening a hidden test region").tag(config=True)
    end_test_delimeter = Unicode(END_HIDDEN, help="Line marker closing a hidden test region").tag(config=True)
    note = Unicode(
        "# (hidden tests of this cell are not shown)",
        help="Line put where hidden tests were removed",
    ).tag(config=True)

    def preprocess_cell(
        self, cell: NotebookNode, resources: ResourcesDict, cell_index: int
    ) -> tuple[NotebookNode, ResourcesDict]:
        if cell.get("cell_type") != "code":
            return cell, resources
        source, regions = strip_hidden_regions(cell.source, self.begin_test_delimeter, self.end_test_delimeter)
        if regions == 0:
            return cell, resources
        cell.source = (source + "\n" if source else "") + self.note
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                # A traceback quotes the failing line, which may be a hidden one.
                output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources


class StderrIsNotFailure(NbGraderPreprocessor):
    """Autograde preprocessor: text on stderr no longer costs a test cell its points.

    Put it right after ``Execute`` in ``Autograde.autograde_preprocessors``.
    """

    def preprocess_cell(
        self, cell: NotebookNode, resources: ResourcesDict, cell_index: int
    ) -> tuple[NotebookNode, ResourcesDict]:
        if is_test_cell(cell):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream" and output.get("name") == "stderr":
                    output["name"] = "stdout"
        return cell, resources


class NeutraliseHarmfulLinks(NbGraderPreprocessor):
    """Autograde and feedback preprocessor: no markdown link, image or ``\\href`` runs a script.

    Put it right after nbconvert's ``SanitizeHTML`` in ``Autograde.autograde_preprocessors``
    and ``GenerateFeedback.preprocessors``.
    """

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict) -> tuple[NotebookNode, ResourcesDict]:
        from coursekit.grading.markdown_links import neutralise_notebook

        neutralise_notebook(nb)
        return nb, resources
