"""Code similarity of the grading report: what normalisation ignores, what it keeps, and how students are grouped."""

from __future__ import annotations

import ast

import pytest

from coursekit.grading.report import similarity as similarity_module
from coursekit.grading.report.similarity import (MAX_CELL_CHARS, MAX_NOTEBOOK_CHARS, find_answers, find_function,
                                                  near_identical_groups, normalise, similarity)

pytestmark = [pytest.mark.grading]

MASKED_SUM = '''
def masked_sum(values, mask):
    """Sum of the kept values."""
    kept = torch.where(mask, values, torch.zeros_like(values))
    return kept.sum(dim=-1)
'''
RENAMED_AND_RELAID = '''
def total(x,m):
    # keep only the counted ones
    y = (torch.where(m, x,
                     torch.zeros_like(x)))

    return y.sum(dim = -1)
'''
OTHER_API = '''
def masked_sum(values, mask):
    return (values * mask).sum(dim=-1)
'''
EXTRA_STATEMENT = '''
def masked_sum(values, mask):
    """Sum of the kept values."""
    mask = mask.bool()
    kept = torch.where(mask, values, torch.zeros_like(values))
    return kept.sum(dim=-1)
'''


def _tokens(source: str) -> tuple[str, ...]:
    node = find_function([source], ast.parse(source).body[0].name)
    assert node is not None
    return normalise(node)


def test_names_comments_docstrings_and_layout_do_not_count() -> None:
    assert similarity(_tokens(MASKED_SUM), _tokens(RENAMED_AND_RELAID)) == 1.0


def test_library_calls_and_keyword_names_are_kept() -> None:
    assert similarity(_tokens(MASKED_SUM), _tokens(OTHER_API)) < 0.7
    dims = _tokens(MASKED_SUM.replace("dim=-1", "axis=-1"))
    assert dims != _tokens(MASKED_SUM) and "axis" in dims


def test_one_extra_statement_lowers_similarity_a_little() -> None:
    value = similarity(_tokens(MASKED_SUM), _tokens(EXTRA_STATEMENT))
    assert 0.7 < value < 1.0


def test_block_structure_counts() -> None:
    flat = "def f(x):\n    if x:\n        y = 1\n    return 2\n"
    nested = "def f(x):\n    if x:\n        y = 1\n        return 2\n"
    assert _tokens(flat) != _tokens(nested)


def test_normalise_leaves_the_parsed_function_unchanged() -> None:
    node = ast.parse(MASKED_SUM).body[0]
    before = ast.dump(node)
    normalise(node)
    assert ast.dump(node) == before


def test_find_function_takes_the_last_definition_and_skips_cells_that_do_not_parse() -> None:
    cells = [MASKED_SUM, "!pip install torch", OTHER_API, "def masked_sum(:"]
    assert normalise(find_function(cells, "masked_sum")) == _tokens(OTHER_API)
    assert find_function(cells, "absent") is None


def _spy_parsed_chars(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the length of every source the report hands to the real ``ast.parse``."""
    lengths: list[int] = []
    real_parse = ast.parse

    def parse(source: str, *args: object, **kwargs: object) -> ast.AST:
        lengths.append(len(source))
        return real_parse(source, *args, **kwargs)

    monkeypatch.setattr(similarity_module.ast, "parse", parse)
    return lengths


def test_scratch_cells_that_define_no_graded_name_are_never_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = "x = 0\n" * ((MAX_CELL_CHARS - 1) // len("x = 0\n"))
    answer = "def token_nll(logits, targets):\n    return 0\n"
    lengths = _spy_parsed_chars(monkeypatch)
    found = find_answers([answer, *[scratch] * 6, "def token_nll_helper():\n    pass\n"], ["token_nll", "perplexity"])
    assert set(found) == {"token_nll"} and found["token_nll"].compared
    assert lengths[0] == len(answer) and sum(lengths) < 2 * MAX_CELL_CHARS, lengths[:3]


def test_a_notebook_parses_at_most_its_budget_and_later_definitions_are_listed_as_not_compared(
        monkeypatch: pytest.MonkeyPatch) -> None:
    padded = "def token_nll(logits, targets):\n    return 0\n" + "# padding\n" * ((MAX_CELL_CHARS - 100) // 10)
    cells = [padded] * (MAX_NOTEBOOK_CHARS // len(padded) + 3) + ["def perplexity(nll):\n    return nll\n"]
    lengths = _spy_parsed_chars(monkeypatch)
    found = find_answers(cells, ["token_nll", "perplexity"])
    assert sum(lengths) <= MAX_NOTEBOOK_CHARS
    # The last definition is the one the kernel keeps: past the budget, it is not compared, whatever came before.
    assert found["token_nll"].skipped == ("not compared: the notebook's cells that define graded functions hold over "
                                          f"the {MAX_NOTEBOOK_CHARS:,} characters the report parses")
    assert found["perplexity"].compared     # a later, smaller answer that fits in what is left is still read


def test_groups_link_near_identical_answers_transitively_and_leave_others_alone() -> None:
    base = tuple(f"t{i}" for i in range(40))
    one_off = base[:39] + ("x",)
    two_off = base[:38] + ("y", "x")
    answers = {"ada": base, "bob": one_off, "cy": two_off, "dee": tuple(reversed(base)), "eve": ("z",)}
    groups = near_identical_groups(answers, threshold=0.975)
    assert [g.students for g in groups] == [("ada", "bob", "cy")]
    assert groups[0].lowest == pytest.approx(similarity(base, one_off))


def test_pairs_come_before_larger_groups() -> None:
    answers = {"a": ("p",), "b": ("p",), "c": ("q",), "d": ("q",), "e": ("q",)}
    assert [g.students for g in near_identical_groups(answers, 0.95)] == [("a", "b"), ("c", "d", "e")]


def test_the_instructors_page_states_the_reports_similarity_thresholds() -> None:
    from pathlib import Path

    from coursekit.grading.report.summary import NEAR_IDENTICAL, REFERENCE_FLAG

    page = " ".join((Path(__file__).resolve().parents[1] / "book" / "for_instructors.md").read_text().split())
    assert f"An answer at {REFERENCE_FLAG:g} or more from the reference is flagged for review" in page
    assert f"Students are linked when their answers are {NEAR_IDENTICAL:g} or more alike" in page


TOKEN_NLL = '''def token_nll(logits, targets):
    """Negative log-likelihood of each target token."""
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    log_probs = shifted - shifted.exp().sum(dim=-1, keepdim=True).log()
    return -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
'''
#: the same answer, renamed and commented: a near-copy, as a student who copies would hand it in.
COPIED_TOKEN_NLL = '''def token_nll(x, y):
    # stable softmax
    z = x - x.max(dim=-1, keepdim=True).values
    lp = z - z.exp().sum(dim=-1, keepdim=True).log()
    return -lp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
'''


@pytest.mark.parametrize("magic", ["%%capture cap\n", "%%time\n", "%%time\n%%capture --no-stderr\n",
                                   "%matplotlib inline\n"])
def test_a_copied_answer_under_a_cell_magic_is_found_as_a_near_copy(magic: str) -> None:
    original = find_answers(["import torch", TOKEN_NLL], ["token_nll"])["token_nll"]
    copied = find_answers(["import torch", magic + COPIED_TOKEN_NLL + "print(token_nll)\n"], ["token_nll"])
    assert copied["token_nll"].compared, copied["token_nll"].skipped
    groups = near_identical_groups({"ada": original.tokens, "bob": copied["token_nll"].tokens}, threshold=0.95)
    assert [g.students for g in groups] == [("ada", "bob")]


def test_a_defining_cell_that_does_not_parse_even_translated_is_listed_as_not_compared() -> None:
    found = find_answers(["%%capture\n" + TOKEN_NLL.replace("(logits, targets)", "(logits, targets"),
                          "def perplexity(nll):\n    return nll.exp()\n"], ["token_nll", "perplexity"])
    assert found["token_nll"].skipped.startswith(
        "not compared: its cell is not Python, even as IPython translates its magics (SyntaxError: "), found
    assert found["perplexity"].compared


def test_a_def_that_the_kernel_does_not_run_as_notebook_code_is_listed_as_not_compared() -> None:
    found = find_answers(["%%writefile helpers.py\n" + TOKEN_NLL, "from helpers import token_nll"], ["token_nll"])
    assert found["token_nll"].skipped == ("not compared: the cell with its def line does not define it when run (the "
                                          "def is in a string, or in a %%writefile or %%timeit body)")


def test_an_unparsable_later_cell_leaves_the_definition_the_kernel_keeps() -> None:
    found = find_answers([TOKEN_NLL, "def token_nll(:\n"], ["token_nll"])
    assert found["token_nll"].compared and found["token_nll"].tokens == _tokens(TOKEN_NLL)


def test_a_translated_cell_counts_against_the_notebooks_parse_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    padded = "%%capture\ndef token_nll(logits, targets):\n    return 0\n" + "# pad\n" * ((MAX_CELL_CHARS - 100) // 6)
    lengths = _spy_parsed_chars(monkeypatch)
    found = find_answers([padded] * (MAX_NOTEBOOK_CHARS // len(padded) + 3), ["token_nll"])
    assert sum(lengths) <= MAX_NOTEBOOK_CHARS
    assert found["token_nll"].skipped == ("not compared: the notebook's cells that define graded functions hold over "
                                          f"the {MAX_NOTEBOOK_CHARS:,} characters the report parses")
