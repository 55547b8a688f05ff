"""The "What is graded" and "Feedback" paragraphs of every assignment's introduction, written once.

Each source notebook's first cell tells students how they are graded. The
rules are the course's, not an assignment's, so the two paragraphs are
defined here, in the words of the students' page (``book/for_students.md``),
and :func:`with_grading_notes` writes them into a notebook's introduction;
``python -m coursekit.course derive-hidden-tests`` does so for the whole
course (:func:`~coursekit.course.derived_tests.derive_course`), and the test
suite fails when a notebook's paragraphs are not exactly these. What one
assignment adds (a training loop judged by its model, a question graded by
hand) is a paragraph of its own between the two, written in the notebook.
"""

from __future__ import annotations

from typing import Any

#: how the paragraph on grading starts.
GRADED_START = "**What is graded.**"
#: how the paragraph on feedback starts.
FEEDBACK_START = "**Feedback.**"

#: what either grader does with a test cell (``coursekit grade`` and stock ``nbgrader autograde`` alike).
WHAT_IS_GRADED = f"""{GRADED_START} Each test cell is worth the points in its section's title. Whichever grader your
instructor uses (the course's `coursekit grade` or nbgrader's own autograder), it calls your functions on *hidden*
cases: the requirements the visible checks test, on new inputs, a case for every requirement the question states (the
errors it asks you to raise and the inputs you must not modify included), and random inputs of several shapes, in
float32 and float64, compared with the course's reference in value, dtype, shape and, where a gradient should flow,
gradients (to about four significant digits, a relative tolerance of 1e-4). A single number returned as a Python `float`
has no dtype: its value is compared, whatever the reference's dtype. A number that a question asks you to store in a
variable is compared by its value alone: a float, a whole number such as `2`, or a one-element tensor of any floating or
integer dtype all count (a bool does not). A test cell whose visible checks fail earns 0, and so does one whose function
uses an operation the question bans (or, under the course's grader, reaches the withheld reference solution); otherwise
it earns its points times the share of its hidden cases that pass."""

#: what the feedback says about a test cell, and what it never shows.
FEEDBACK = f"""{FEEDBACK_START} Under each test cell, the feedback gives your points, how many hidden cases passed, and
one line per kind of failure (at most six, the most frequent first): how many hidden cases failed that way, what went
wrong, the options and edge cases those cases share, and one example: your function called with each argument's dtype
and shape, then the first position where your result differs, with the expected value there and whether yours is larger,
smaller, `nan` or `inf`, or the expected shape and how many dimensions yours has, or the exception's class when Python
defines it; a wrong dtype is named with yours. It never shows the hidden inputs, and of what your function returned or
raised on them only a few facts (a position, larger or smaller, a number of dimensions, a dtype, a class): not your
numbers, not your exception's message. A visible check that fails is shown as it failed, its exception and message, and
the hidden cases of its cell are then not counted."""

#: the paragraphs, in the order they appear.
PARAGRAPHS = (WHAT_IS_GRADED, FEEDBACK)


def _replaced(paragraphs: list[str], start: str, text: str) -> list[str]:
    matches = [i for i, paragraph in enumerate(paragraphs) if paragraph.startswith(start)]
    if len(matches) != 1:
        raise ValueError(f"the introduction must have one paragraph starting {start!r}, got {len(matches)}")
    paragraphs[matches[0]] = text
    return paragraphs


def with_grading_notes(introduction: str) -> str:
    """``introduction`` with its "What is graded" and "Feedback" paragraphs replaced by the course's.

    Paragraphs are separated by blank lines; the one starting
    :data:`GRADED_START` becomes :data:`WHAT_IS_GRADED` and the one starting
    :data:`FEEDBACK_START` becomes :data:`FEEDBACK`. Everything else is kept.

    Args:
        introduction: the text of a notebook's first (markdown) cell.

    Returns:
        The new text.

    Raises:
        ValueError: the text has no such paragraph, or more than one.

    Example:
        >>> old = "# A1\\n\\n**What is graded.** All or nothing.\\n\\nPart 6 by hand.\\n\\n**Feedback.** Yours."
        >>> new = with_grading_notes(old)
        >>> new.startswith("# A1\\n\\n" + WHAT_IS_GRADED + "\\n\\nPart 6 by hand.\\n\\n"), new.endswith(FEEDBACK)
        (True, True)
        >>> with_grading_notes("# A1")
        Traceback (most recent call last):
        ...
        ValueError: the introduction must have one paragraph starting '**What is graded.**', got 0
    """
    paragraphs = introduction.split("\n\n")
    for start, text in ((GRADED_START, WHAT_IS_GRADED), (FEEDBACK_START, FEEDBACK)):
        paragraphs = _replaced(paragraphs, start, text)
    return "\n\n".join(paragraphs)


def notes_of(introduction: str) -> tuple[str, ...]:
    """The introduction's paragraphs that start like the course's grading paragraphs, in order.

    Example:
        >>> notes_of("# A1\\n\\n" + WHAT_IS_GRADED + "\\n\\n" + FEEDBACK) == PARAGRAPHS
        True
    """
    return tuple(p for p in introduction.split("\n\n") if p.startswith((GRADED_START, FEEDBACK_START)))


def write_grading_notes(notebook: dict[str, Any]) -> dict[str, Any]:
    """Write the course's grading paragraphs into the notebook's first cell (changed in place and returned).

    Raises:
        ValueError: the first cell is not markdown, or lacks one of the paragraphs.
    """
    cell = notebook["cells"][0]
    if cell.get("cell_type") != "markdown":
        raise ValueError(f"a notebook's first cell must be its markdown introduction, got a {cell.get('cell_type')} "
                         "cell")
    source = cell["source"]
    text = "".join(source) if isinstance(source, list) else source
    cell["source"] = with_grading_notes(text).splitlines(keepends=True)
    return notebook
