"""A generated class of assignment 1 for the grading report's tests: 45 submissions, each of a known kind.

Every submission is made from the instructor's solution notebook (through
tests/adversarial/course.py) by one programmatic change, so the report's
sections each have something to show: correct answers (some written
differently), values 1 % off, right values with a wrong gradient, crashes,
a timeout, a kernel that dies, imports of the reference, a paste of the
reference's source from the book, two near-copies that differ only in names,
comments and layout, untouched notebooks, a tampered test cell, wrong written
answers, student HTML in code, markdown and timestamp.txt, and two correct
answers the report does not compare: one with a 600-term sum (deeper than
``ast.unparse`` recurses) and one padded with no-op lines past the cell cap,
and a solved notebook handed in under Jupyter's copy name.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from adversarial.course import add_cell, cell_index, release_notebook, set_answer, solutions, solved_notebook, submit
from assignment_fixtures import ALTERNATIVES

ASSIGNMENT = "a1_sequence_loss"
#: the answer cells of the graded functions, and the functions they define.
FUNCTIONS = {"answer_token_nll": "token_nll", "answer_sequence_loss": "sequence_loss",
             "answer_perplexity": "perplexity"}
PLANTED = "<script>document.title = 'pwned'</script>"

# Two near-copies: one loop-based token_nll (unlike the solution), then the same code renamed and re-laid-out.
COPY_A = '''
def token_nll(logits, targets, *, ignore_index=-100):
    flat = logits.reshape(-1, logits.shape[-1])
    picked = []
    for row, target in zip(flat, targets.reshape(-1).tolist()):
        if target == ignore_index:
            picked.append(row[:0].sum())
            continue
        top = row.max().detach()
        picked.append(torch.log(torch.exp(row - top).sum()) + top - row[target])
    return torch.stack(picked).reshape(targets.shape)
'''
COPY_B = '''
def token_nll(scores, labels, *, ignore_index = -100):
    """My own token NLL."""
    table = scores.reshape(-1, scores.shape[-1])   # one row per token
    out = []

    for line, label in zip(table, labels.reshape(-1).tolist()):
        if label == ignore_index:
            out.append(line[:0].sum()); continue
        peak = (line.max().detach())
        out.append(torch.log(torch.exp(line - peak).sum()) + peak - line[label])
    return torch.stack(out).reshape(labels.shape)
'''


@dataclass(frozen=True)
class Student:
    """One generated submission: its id, its kind, and how to build its notebook."""

    student: str
    kind: str
    build: Callable[[Path], dict[str, Any]]
    timestamp: str = "2026-11-20 10:00:00.000000 UTC"
    handed_in_as: str = ""


def _answer(course: Path, grade_id: str) -> str:
    return solutions(course)[grade_id]


def _replacing(grade_id: str, change: Callable[[str], str]) -> Callable[[Path], dict[str, Any]]:
    """The solved notebook with ``grade_id``'s answer changed by ``change``."""
    return lambda course: set_answer(solved_notebook(course), grade_id, change(_answer(course, grade_id)))


def _with_answer(grade_id: str, source: str) -> Callable[[Path], dict[str, Any]]:
    return lambda course: set_answer(solved_notebook(course), grade_id, source)


def _scaled_return(factor: float) -> Callable[[str], str]:
    """Scales what the function's last ``return`` gives back (values off, gradients off by as much)."""
    def change(source: str) -> str:
        head, _, last = source.rpartition("    return ")
        return f"{head}    return ({last.rstrip()}) * {factor}\n"
    return change


def _detached(old: str, new: str) -> Callable[[str], str]:
    def change(source: str) -> str:
        assert old in source, f"{old!r} is not in the solution any more"
        return source.replace(old, new)
    return change


def _raising(function: str, message: str) -> str:
    signature = {"token_nll": "logits, targets, *, ignore_index=-100",
                 "sequence_loss": "token_losses, mask=None, *, reduction='sum'", "perplexity": "mean_nll"}[function]
    return f"def {function}({signature}):\n    raise RuntimeError({message!r})\n"


def _book_copy(course: Path) -> dict[str, Any]:
    """perplexity pasted from the reference the book shows, with a helper of the student's own."""
    from coursekit.losses import perplexity

    helper = ("def _as_float_tensor(name, value):\n"
              "    return value if isinstance(value, torch.Tensor) else torch.tensor(float(value))\n\n\n")
    return set_answer(solved_notebook(course), "answer_perplexity", helper + inspect.getsource(perplexity))


def _tampered(course: Path) -> dict[str, Any]:
    notebook = solved_notebook(course)
    notebook["cells"][cell_index(notebook, "test_sequence_loss")]["source"] = "# nothing to check here\n"
    return notebook


def _with_html(course: Path) -> dict[str, Any]:
    notebook = solved_notebook(course)
    notebook = set_answer(notebook, "answer_token_nll", f"# {PLANTED}\n" + _answer(course, "answer_token_nll"))
    notebook["cells"].insert(cell_index(notebook, "answer_token_nll"), {
        "cell_type": "markdown", "id": "student-html", "metadata": {}, "source": f"My notes {PLANTED}\n"})
    return notebook


def _inserted_after_def(lines: list[str]) -> Callable[[str], str]:
    """Inserts ``lines`` (already indented) as the first statements of the answer's function."""
    def change(source: str) -> str:
        body = source.splitlines()
        first = next(i for i, line in enumerate(body) if line.startswith("def ")) + 1
        return "\n".join(body[:first] + lines + body[first:]) + "\n"
    return change


#: a correct token_nll with one constant sum of 600 terms: it runs, but its tree is deeper than unparse recurses.
LONG_SUM = ["    _check = " + " + ".join(["1"] * 600)]
#: a correct token_nll padded with no-op lines: a 360 kB cell, over the report's 200 kB parsing cap.
PADDING = ["    x = 0"] * 36_000


def _alternative(grade_id: str) -> Callable[[Path], dict[str, Any]]:
    return _with_answer(grade_id, ALTERNATIVES[ASSIGNMENT][grade_id])


def students() -> list[Student]:
    """The class, 45 students, ids prefixed by their kind (but for ``long_sum``, ``padded`` and ``renamed``)."""
    kinds: list[Student] = [Student(f"correct_{i:02d}", "correct", solved_notebook) for i in range(9)]
    kinds += [Student(f"correct_alt_{g.removeprefix('answer_')}", "correct", _alternative(g)) for g in FUNCTIONS]
    for grade_id, function in FUNCTIONS.items():
        kinds += [Student(f"wrong_value_{function}_{i}", "wrong_value", _replacing(grade_id, _scaled_return(f)))
                  for i, f in enumerate((1.01, 0.98, 1.05))]
    gradient_bug = _detached("log_normaliser - picked)", "log_normaliser - picked.detach())")
    kinds += [Student(f"wrong_gradient_token_nll_{i}", "wrong_gradient", _replacing("answer_token_nll", gradient_bug))
              for i in range(3)]
    sum_bug = _detached("total = kept.sum(dim=-1)", "total = kept.sum(dim=-1).detach() + 0 * kept.sum(dim=-1)")
    kinds += [Student(f"wrong_gradient_sequence_loss_{i}", "wrong_gradient",
                      _replacing("answer_sequence_loss", sum_bug)) for i in range(2)]
    kinds += [
        Student("crash_token_nll", "crash", _with_answer("answer_token_nll", _raising("token_nll", PLANTED))),
        Student("crash_sequence_loss", "crash",
                _with_answer("answer_sequence_loss", _raising("sequence_loss", "not finished"))),
        Student("crash_kernel", "crash",
                lambda course: add_cell(solved_notebook(course), "import os\nos._exit(3)\n", after="answer_fox")),
        Student("timeout_perplexity", "timeout",
                _with_answer("answer_perplexity", "def perplexity(mean_nll):\n    while True:\n        pass\n")),
        Student("reference_token_nll", "uses_reference",
                _with_answer("answer_token_nll", "from coursekit.losses import token_nll\n")),
        Student("reference_sequence_loss", "uses_reference",
                _with_answer("answer_sequence_loss", "from coursekit.losses import sequence_loss\n")),
        Student("book_copy_perplexity", "book_copy", _book_copy),
        Student("copy_a", "near_copy", _with_answer("answer_token_nll", COPY_A)),
        Student("copy_b", "near_copy", _with_answer("answer_token_nll", COPY_B)),
        Student("tampered", "tampered", _tampered),
        Student("wrong_mc", "wrong_written", _with_answer("answer_mc_classification", 'mc_classification = "A"\n')),
        Student("wrong_fox", "wrong_written", _replacing("answer_fox", _detached(
            'fox_mean = sequence_loss(fox_losses, reduction="mean")', 'fox_mean = sequence_loss(fox_losses)'))),
        Student("html_planted", "html", _with_html, timestamp=PLANTED),
        Student("long_sum", "not_compared", _replacing("answer_token_nll", _inserted_after_def(LONG_SUM))),
        Student("padded", "not_compared", _replacing("answer_token_nll", _inserted_after_def(PADDING))),
        Student("renamed", "renamed", solved_notebook, handed_in_as=f"{ASSIGNMENT}-Copy1.ipynb"),
    ]
    kinds += [Student(f"untouched_{i}", "untouched", release_notebook) for i in range(3)]
    return kinds


def submit_class(course: Path) -> list[Student]:
    """Submit every student of :func:`students` to ``course``; returns them."""
    class_ = students()
    for student in class_:
        path = submit(course, student.student, student.build(course))
        (path.parent / "timestamp.txt").write_text(student.timestamp)
        if student.handed_in_as:
            path.rename(path.with_name(student.handed_in_as))
    return class_
