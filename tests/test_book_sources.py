"""The book's sources keep the promises of the intro: one notation, glued results, executed solutions, asserted claims.

These checks read the MyST sources (``tests/book_sources.py`` splits a page into
prose, math and code); they build nothing and run in seconds. Each is
parametrized by page, so each chapter passes or fails on its own.

- **Notation.** Every symbol of a page's mathematics is listed in the registry,
  ``book/appendix_notation.md``, which defines each symbol in exactly one row.
  A symbol is a Latin or Greek letter with its decorations (``\\hat y``,
  ``\\bar\\ell``, ``\\mathcal{D}``), or an upright name (``\\operatorname{softmax}``,
  ``\\mathrm{KL}``). Letters in sub- and superscripts are checked too (the
  registry lists the index letters). Ignored: digits, operators with a command of
  their own (``\\log``, ``\\sum``, ``\\max``, ``\\partial``), the text of
  ``\\text{...}``, primes and stars, and upright names inside a sub- or
  superscript (``L^{\\mathrm{CTC}}``: a label, not a symbol). Math inside code
  cells (plot labels) is not read. A page may also no longer use the symbols its
  ``retired_symbols`` list names (letters it used with a meaning that now has
  another letter), so a rename half applied fails.
- **Typed numbers.** A decimal number (``0.25``, ``75.8``, ``1e-3``) in what the
  reader sees as text (paragraphs, titles, figure captions and alt texts,
  exercise and solution text, quiz questions, options and explanations) is
  either glued or given data listed, with the reason, under ``given_numbers`` in
  ``tests/book_pages/<page>.yaml``. Code and roles (``{glue:text}``) are not read.
  Decimals in mathematics are checked by a test of their own against the same
  list. An allow-list entry the page no longer types fails too.
- **Executed solutions.** A ``{solution}`` directive holds no code; a solution with
  code uses the gated form (``{solution-start}`` ... ``{solution-end}``) with
  ``{code-cell}`` s, which the build executes.
- **Asserted claims.** Every page with code cells has a ``remove-cell`` cell with an
  ``assert``, and every ``assert`` in its code cells carries a message naming the
  claim it guards.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
import yaml

from book_sources import Page, Symbol, decimal_numbers, math_symbols, parse_page, registry_rows
from conftest import REPO_ROOT, toc_pages

pytestmark = pytest.mark.book

REGISTRY = REPO_ROOT / "book" / "appendix_notation.md"
PAGE_ALLOWANCES = REPO_ROOT / "tests" / "book_pages"
PAGES = toc_pages()
MIN_MESSAGE_WORDS = 3


@cache
def page(docname: str) -> Page:
    return parse_page(REPO_ROOT / f"{docname}.md")


@cache
def registered_symbols() -> frozenset[str]:
    return frozenset(symbol.latex for _, symbols in registry_rows(REGISTRY) for symbol in symbols)


def allowances_path(docname: str) -> Path:
    return PAGE_ALLOWANCES / f"{Path(docname).name}.yaml"


def allowance(docname: str, key: str) -> dict[str, str]:
    """One mapping of the page's allowances file (``given_numbers`` or ``retired_symbols``)."""
    path = allowances_path(docname)
    try:
        loaded = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.exists() else {}
    except yaml.YAMLError as error:
        pytest.fail(f"{path.relative_to(REPO_ROOT)} is not valid YAML (quote each entry, double a ' inside): {error}")
    value = loaded.get(key) or {}
    assert isinstance(value, dict), f"{path}: '{key}' must be a mapping, got {type(value).__name__}"
    return {str(entry): reason for entry, reason in value.items()}


def given_numbers(docname: str) -> dict[str, str]:
    """The page's allow-list: number as typed -> why it is given data."""
    return allowance(docname, "given_numbers")


@cache
def source_lines(docname: str) -> tuple[str, ...]:
    return tuple((REPO_ROOT / f"{docname}.md").read_text(encoding="utf-8").splitlines())


def typed_decimals(docname: str, kinds: tuple[str, ...] = ("prose", "quiz")) -> list[tuple[str, int]]:
    """Every decimal number of the page's fragments of these kinds, with the line it is typed on."""
    lines = source_lines(docname)
    found = []
    for fragment in page(docname).fragments:
        if fragment.kind not in kinds:
            continue
        for number in decimal_numbers(fragment.text):
            line = next((index for index in range(fragment.line, len(lines) + 1) if number in lines[index - 1]), fragment.line)
            found.append((number, line))
    return found


def notebook_pages() -> list[str]:
    return [docname for docname in PAGES if any(f.directive == "code-cell" for f in page(docname).of_kind("code"))]


def cell_asserts(source: str) -> list[ast.Assert]:
    """The assert statements of a code cell (IPython magics and shell lines dropped)."""
    python = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    return [node for node in ast.walk(ast.parse(python)) if isinstance(node, ast.Assert)]


def message_words(message: ast.expr) -> int | None:
    """Words of a literal assert message (f-string text included); None when the message is computed."""
    if isinstance(message, ast.Constant) and isinstance(message.value, str):
        return len(message.value.split())
    if isinstance(message, ast.JoinedStr):
        return len(" ".join(part.value for part in message.values if isinstance(part, ast.Constant)).split())
    return None


# --- notation ------------------------------------------------------------------------

def test_registry_defines_each_symbol_in_one_row() -> None:
    rows = registry_rows(REGISTRY)
    assert rows, f"{REGISTRY} defines no symbols: expected tables whose first column holds $...$ symbols"
    counts = Counter(symbol.latex for _, symbols in rows for symbol in set(symbols))
    repeated = {latex: [line for line, symbols in rows if Symbol(latex, False) in symbols or Symbol(latex, True) in symbols]
                for latex, count in counts.items() if count > 1}
    assert not repeated, f"symbols defined in more than one row of {REGISTRY.name} (one symbol, one meaning): {repeated}"


@pytest.mark.parametrize("docname", PAGES)
def test_page_math_uses_only_registered_symbols(docname: str) -> None:
    known = registered_symbols()
    unknown: dict[str, list[int]] = {}
    for fragment in page(docname).of_kind("math"):
        for symbol in math_symbols(fragment.text):
            if symbol.latex not in known:
                unknown.setdefault(symbol.latex, []).append(fragment.line)
    summary = ", ".join(f"{latex} (lines {sorted(set(lines))})" for latex, lines in sorted(unknown.items()))
    assert not unknown, f"{docname}.md uses {len(unknown)} symbol(s) the notation registry does not list: {summary}"


@pytest.mark.parametrize("docname", PAGES)
def test_page_math_uses_no_retired_symbol(docname: str) -> None:
    retired = allowance(docname, "retired_symbols")
    used: dict[str, list[int]] = {}
    for fragment in page(docname).of_kind("math"):
        for symbol in math_symbols(fragment.text):
            if symbol.latex in retired:
                used.setdefault(symbol.latex, []).append(fragment.line)
    summary = "; ".join(f"{latex} (lines {sorted(set(lines))}): {retired[latex]}" for latex, lines in sorted(used.items()))
    assert not used, f"{docname}.md still uses {len(used)} retired symbol(s): {summary}"


# --- typed numbers -----------------------------------------------------------------

@pytest.mark.parametrize("docname", PAGES)
def test_prose_types_only_given_numbers(docname: str) -> None:
    allowed = given_numbers(docname)
    typed = [(number, line) for number, line in typed_decimals(docname) if number not in allowed]
    summary = ", ".join(f"{number} (line {line})" for number, line in typed)
    assert not typed, (
        f"{docname}.md types {len(typed)} decimal number(s) in its text that are neither glued nor listed as given "
        f"data in {allowances_path(docname).relative_to(REPO_ROOT)}: {summary}"
    )


@pytest.mark.parametrize("docname", PAGES)
def test_math_types_only_given_numbers(docname: str) -> None:
    allowed = given_numbers(docname)
    typed = [(number, line) for number, line in typed_decimals(docname, ("math",)) if number not in allowed]
    summary = ", ".join(f"{number} (line {line})" for number, line in typed)
    assert not typed, (
        f"{docname}.md types {len(typed)} decimal number(s) in its mathematics that are not listed as given data "
        f"(or arithmetic on it) in {allowances_path(docname).relative_to(REPO_ROOT)}: {summary}; glue results"
    )


@pytest.mark.parametrize("docname", PAGES)
def test_given_numbers_are_typed_on_the_page_and_explained(docname: str) -> None:
    allowed = given_numbers(docname)
    typed = {number for number, _ in typed_decimals(docname, ("prose", "quiz", "math"))}
    stale = sorted(set(allowed) - typed)
    unexplained = sorted(number for number, reason in allowed.items() if not isinstance(reason, str) or not reason.strip())
    assert not stale, f"the allow-list of {docname}.md lists numbers the page no longer types: {stale}"
    assert not unexplained, f"the allow-list of {docname}.md gives no reason for: {unexplained}"


# --- executed solutions ---------------------------------------------------------------

@pytest.mark.parametrize("docname", PAGES)
def test_solutions_with_code_execute_at_build(docname: str) -> None:
    problems = []
    for solution in page(docname).solutions:
        if solution.form == "directive":
            problems += [f"the {{solution}} at line {solution.line} holds a ```{block.directive} block (line {block.line}) "
                         "that never runs: use {solution-start}/{solution-end} with {code-cell}s"
                         for block in solution.code_blocks]
            continue
        if not solution.closed:
            problems.append(f"the {{solution-start}} at line {solution.line} has no {{solution-end}}")
        for block in solution.code_blocks:
            if block.directive != "code-cell":
                problems.append(f"the gated solution at line {solution.line} holds a ```{block.directive} block "
                                f"(line {block.line}) that never runs: make it a {{code-cell}}")
            elif "skip-execution" in block.tags:
                problems.append(f"the gated solution at line {solution.line} skips the execution of its cell at line {block.line}")
    assert not problems, f"{docname}.md: {len(problems)} solution code block(s) not executed: " + "; ".join(problems)


# --- asserted claims -----------------------------------------------------------------

@pytest.mark.parametrize("docname", notebook_pages())
def test_chapter_asserts_a_claim_in_a_hidden_cell(docname: str) -> None:
    hidden_asserts = [
        fragment.line
        for fragment in page(docname).of_kind("code")
        if fragment.directive == "code-cell" and "remove-cell" in fragment.tags and cell_asserts(fragment.text)
    ]
    assert hidden_asserts, (
        f"{docname}.md has no remove-cell code cell with an assert: every sentence that depends on a result "
        "needs one, so that a retrain that makes it false fails the build"
    )


@pytest.mark.parametrize("docname", notebook_pages())
def test_every_assert_names_the_claim_it_guards(docname: str) -> None:
    bare = []
    for fragment in page(docname).of_kind("code"):
        if fragment.directive != "code-cell":
            continue
        for statement in cell_asserts(fragment.text):
            line = fragment.line + statement.lineno - 1
            if statement.msg is None:
                bare.append(f"line {line}: no message")
            elif (words := message_words(statement.msg)) is not None and words < MIN_MESSAGE_WORDS:
                bare.append(f"line {line}: message of {words} word(s)")
    assert not bare, (
        f"{docname}.md: {len(bare)} assert(s) without a message naming the sentence they guard "
        f"(at least {MIN_MESSAGE_WORDS} words): " + "; ".join(bare)
    )


# --- cross-references -------------------------------------------------------------------

#: "chapter" before a {ref} to a chapter's label: the link shows the chapter's title ("chapter Label smoothing").
CHAPTER_WORD_BEFORE_TITLE = re.compile(r"\b[Cc]hapters?\s+\{ref\}`ch-[a-z-]+`")


@pytest.mark.parametrize("docname", PAGES)
def test_a_chapter_is_named_by_its_number_after_the_word_chapter(docname: str) -> None:
    text = (REPO_ROOT / f"{docname}.md").read_text(encoding="utf-8")
    found = [match.group(0).replace("\n", " ") for match in CHAPTER_WORD_BEFORE_TITLE.finditer(text)]
    assert not found, f"{docname}.md: write {{numref}}`chapter %s <label>` (it shows the number) for {found}"
