"""nbgrader preprocessors that fix behaviours of stock nbgrader for this course.

* :class:`SeededExecute` is nbgrader's ``Execute`` with one addition: the kernel
  of a student's notebook inherits that student's seed of hidden inputs
  (:mod:`coursekit.course.kernel_seed`), computed here, in the instructor's
  process, from the course's grading secret, which the kernel (where the
  student's code runs) never sees.

* :class:`RedactHiddenTests` runs while feedback is generated. Autograding puts the
  instructor's full test cells (hidden tests included) back into every submission,
  and stock ``generate_feedback`` renders them as they are, so the hidden tests
  would reach the students. This preprocessor cuts every
  ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` region out of the cell
  sources, as ``generate_assignment`` did when it released them (one stripper,
  :func:`coursekit.grading.hidden_tests.strip_hidden_tests`), and replaces
  tracebacks raised from such cells by their last line, which names the
  exception and its message but quotes no code.
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

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import ClearHiddenTests, Execute, NbGraderPreprocessor
from traitlets import Unicode

from coursekit.grading.hidden_tests import is_autograder_test, strip_hidden_tests


class RedactHiddenTests(ClearHiddenTests):
    """Feedback preprocessor: no hidden test source reaches the student's feedback HTML.

    Add it to ``GenerateFeedback.preprocessors`` before the HTML is written (the
    course's ``nbgrader_config.py`` does this through :func:`coursekit.course.configure`).
    Every cell, of any type, shows what ``generate_assignment`` released, followed by
    ``note`` where hidden regions were cut. A source that nbgrader would have
    refused (a region never closed, or opened inside another) is cut too, hiding at
    least what nbgrader's reading would hide, and the feedback goes on.
    """

    # A subclass of ClearHiddenTests so that the course's ``c.ClearHiddenTests`` markers
    # apply here as well: the feedback cuts exactly the regions the release cut.
    note = Unicode(
        "# (hidden tests of this cell are not shown)",
        help="Line put where hidden tests were removed",
    ).tag(config=True)

    def preprocess_cell(
        self, cell: NotebookNode, resources: ResourcesDict, cell_index: int
    ) -> tuple[NotebookNode, ResourcesDict]:
        released, regions = strip_hidden_tests(cell.source, self.begin_test_delimeter, self.end_test_delimeter)
        cell.source = released
        if regions == 0:
            return cell, resources
        cell.source += ("\n" if released and not released.endswith("\n") else "") + self.note
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                # A traceback quotes the failing line, which may be a hidden one.
                output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources


#: run silently in the kernel before each test cell: its last expression (the hidden block's score) is its result.
RESTORE_INTERACTIVITY = '__import__("IPython").get_ipython().ast_node_interactivity = "last_expr"'


class SeededExecute(Execute):
    """Autograde preprocessor: ``Execute``, with this student's seed and notebook folder in the kernel's environment.

    Use it in place of ``nbgrader.preprocessors.Execute`` in
    ``Autograde.autograde_preprocessors`` (``c.Execute`` settings apply to it).
    The kernel gets no secret. The notebook's folder (nbgrader's
    ``resources['metadata']['path']``) tells the hidden blocks where they grade,
    whatever the student's cells do to the working directory. Both are set
    only while this notebook executes and removed afterwards,
    even when execution fails (:func:`~coursekit.course.kernel_seed.kernel_environment`),
    so no other notebook's kernel inherits them. A notebook outside the course's
    layout, or of an assignment without a spec, runs without a seed.

    Three cheap guards against what a student's code can do in that kernel (not a
    boundary: the kernel runs as the instructor; ``coursekit grade`` is one).
    Files handed in with the notebook that would be imported in place of a
    module (:func:`~coursekit.grading.files.shadowing_entries`: an innocent
    ``random.py`` as much as a planted ``coursekit/`` holding its own scorer)
    are removed from the autograded copy before the kernel starts, each logged
    for the instructor with :func:`~coursekit.grading.files.shadowing_note`,
    and the notebook is graded without them, as ``coursekit grade``, which
    does not copy them into its sandbox, grades it; ``submitted/`` keeps them.
    The instructor's source folder is never changed. And before each test
    cell IPython's ``ast_node_interactivity`` is set back to ``"last_expr"``,
    so the cell's result is its last expression, the hidden block's score;
    a test cell that still shows no score gets none (:func:`require_score`).
    """

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict | None = None,
                   km: object = None) -> tuple[NotebookNode, ResourcesDict]:
        from pathlib import Path

        from coursekit.course.hidden_score import INSTRUCTOR, grading_place
        from coursekit.course.kernel_seed import check_seed_for, kernel_environment, seed_for
        from coursekit.grading.files import remove_shadowing_entries, shadowing_note

        folder = ((resources or {}).get("metadata") or {}).get("path") or "."
        try:
            place = grading_place(Path(folder))
        except (FileNotFoundError, ValueError):
            return super().preprocess(nb, resources, km)
        if place.student != INSTRUCTOR:
            # grading_place vouched that ``folder`` is autograded/<student>/<assignment>: nbgrader's own copy.
            for entry in remove_shadowing_entries(Path(folder)):
                self.log.warning("%s: %s", folder, shadowing_note(entry))
        if not place.spec_path.is_file():
            return super().preprocess(nb, resources, km)
        student = ((resources or {}).get("nbgrader") or {}).get("student") or place.student
        seeds = seed_for(place.spec_path, place.course_id, student), check_seed_for(place.spec_path)
        with kernel_environment(*seeds, Path(folder)):
            return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict,
                        index: int) -> tuple[NotebookNode, ResourcesDict]:
        if is_autograder_test(cell):
            # The hidden block's score is the cell's result only while IPython shows the last expression; a
            # student's cell may have set ``ast_node_interactivity`` to "none" (no result: nbgrader then gives
            # full marks) or "all" (an earlier expression becomes the result).
            assert self.kc is not None
            reply = self.kc.execute(RESTORE_INTERACTIVITY, silent=True, store_history=False, allow_stdin=False)
            self.wait_for_reply(reply, cell)
        cell, resources = super().preprocess_cell(cell, resources, index)
        if is_autograder_test(cell):
            require_score(cell)
        return cell, resources


#: why a test cell whose hidden block showed no score gets none.
NO_SCORE = ("the hidden tests left no score: the cell showed no number between 0 and its points as its result "
            "(IPython's display of results was changed?)")


def require_score(cell: NotebookNode) -> NotebookNode:
    """Fail a test cell holding its derived hidden block unless its result is a score nbgrader can read.

    nbgrader reads a test cell's first error or ``execute_result``: an error
    scores 0, a number is the partial score, and a cell with neither gets full
    marks. A derived block's last line shows its score, so a cell without a
    readable score had its result hidden by the student's code (a changed
    ``displayhook``, ``ast_node_interactivity``, a patched ``sys.displayhook``):
    an ``error`` output with :data:`NO_SCORE` is put before the first result,
    so nbgrader records 0. A cell without the derived block (a test cell of
    another course) is left as it is.

    Example:
        >>> import nbformat
        >>> from coursekit.course.derived_tests import derived_block
        >>> meta = {"nbgrader": {"grade": True, "solution": False, "grade_id": "t", "points": 2}}
        >>> cell = nbformat.v4.new_code_cell(derived_block("t"), metadata=meta)
        >>> [o["output_type"] for o in require_score(cell).outputs]
        ['error']
        >>> shown = nbformat.v4.new_output("execute_result", {"text/plain": "1.5"}, execution_count=1)
        >>> cell.outputs = [shown]
        >>> [o["output_type"] for o in require_score(cell).outputs]
        ['execute_result']
    """
    from nbformat.v4 import new_output

    from coursekit.course.derived_tests import derived_block

    grading = cell.metadata.get("nbgrader", {})
    if derived_block(str(grading.get("grade_id", ""))) not in cell.source:
        return cell
    decisive = [i for i, output in enumerate(cell.outputs) if output.get("output_type") in ("error", "execute_result")]
    if decisive and cell.outputs[decisive[0]]["output_type"] == "error":
        return cell
    if decisive and _is_score(cell.outputs[decisive[0]], float(grading.get("points", 0))):
        return cell
    failure = new_output("error", ename="NoScore", evalue=NO_SCORE, traceback=[f"NoScore: {NO_SCORE}"])
    cell.outputs.insert(decisive[0] if decisive else len(cell.outputs), failure)
    return cell


def _is_score(output: NotebookNode, points: float) -> bool:
    """Whether an ``execute_result`` shows one number in ``[0, points]`` as its plain text."""
    text = output.get("data", {}).get("text/plain", "")
    text = "".join(text) if isinstance(text, list) else str(text)
    try:
        value = float(text)
    except ValueError:
        return False
    return 0.0 <= value <= points


class StderrIsNotFailure(NbGraderPreprocessor):
    """Autograde preprocessor: text on stderr no longer costs a test cell its points.

    Put it right after ``Execute`` in ``Autograde.autograde_preprocessors``.
    """

    def preprocess_cell(
        self, cell: NotebookNode, resources: ResourcesDict, cell_index: int
    ) -> tuple[NotebookNode, ResourcesDict]:
        if is_autograder_test(cell):
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
