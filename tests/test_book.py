"""The book: the ``quiz`` directive on small Sphinx projects, then the whole book built once.

The whole-book tests share one build (the session fixture ``built_book`` in
conftest.py: a temporary copy of the repository built with ``-W -n --keep-going``
by coursekit.bookbuild), so a Sphinx warning or a cell error anywhere fails them.
"""

from __future__ import annotations

import html
import importlib
import inspect
import math
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO_ROOT, STRAY_SOURCES, toc_pages

EXTENSION_DIR = REPO_ROOT / "book" / "_ext"


# --- the quiz directive, on a one-page Sphinx project --------------------------------------

def build_one_page(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    """sphinx-build -W on a project whose only page is ``body`` (MyST), with the book's extension."""
    (tmp_path / "conf.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(EXTENSION_DIR)!r})
        extensions = ["myst_parser", "coursebook"]
        myst_enable_extensions = ["dollarmath"]
        exclude_patterns = ["_build"]
    """))
    (tmp_path / "index.md").write_text("# Quiz page\n\n" + textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(tmp_path), str(tmp_path / "_build")],
        capture_output=True, text=True, timeout=120,
    )


FORMULA_QUIZ = """
```{quiz}
:label: demo-formula
question: Which is the probability of a sequence with total loss 1?
options:
  - text: "$e^{-1}$"
    correct: true
    explain: The total is the negative log-probability.
  - text: "$\\frac{1}{4}$"
    correct: false
    explain: That is a mean.
    label: one quarter
```
"""

CHOICE_QUIZ = """
```{quiz}
:label: demo-choice
question: Which reduction gives every token the same weight?
type: choice
options:
  - text: token mean with $1/N$
    correct: true
    explain: Every token's loss is divided by the same count.
  - text: sequence mean
    correct: false
    explain: Tokens of short sequences weigh more.
```
"""

MATCH_QUIZ = """
```{quiz}
:label: demo-match
question: Match the terms.
type: match
pairs:
  - term: perplexity
    definition: exponential of the mean loss
  - term: cost
    definition: aggregate over a data set
  - term: mask
    definition: which tokens count
```
"""


@pytest.mark.slow
@pytest.mark.book
def test_quiz_renders_options_answers_and_inline_math(tmp_path: Path) -> None:
    result = build_one_page(tmp_path, CHOICE_QUIZ)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "_build" / "index.html").read_text()
    assert 'id="demo-choice"' in page and 'data-quiz-type="choice"' in page
    assert page.count('class="ck-quiz-option"') == 2
    assert re.search(r'data-correct="true"[^>]*>token mean with <span class="math', page)
    assert page.count('class="ck-quiz-explain"') == 2 and "Tokens of short sequences weigh more." in page
    assert "coursebook.js" in page and (tmp_path / "_build" / "_static" / "coursebook.js").exists()
    # Explanations are tied to an option only once it is answered (coursebook.js).
    assert "aria-describedby" not in page and page.count('data-explain="demo-choice-explain-') == 2


@pytest.mark.slow
@pytest.mark.book
def test_quiz_option_that_is_only_a_formula_gets_a_spoken_label(tmp_path: Path) -> None:
    result = build_one_page(tmp_path, FORMULA_QUIZ)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "_build" / "index.html").read_text()
    buttons = re.findall(r'<button[^>]*class="ck-quiz-option"[^>]*>', page)
    labels = [re.search(r'aria-label="([^"]*)"', tag).group(1) for tag in buttons]
    assert labels == ["e^(-1)", "one quarter"]


@pytest.mark.slow
@pytest.mark.book
def test_match_quiz_lists_every_term_and_shuffles_definitions(tmp_path: Path) -> None:
    result = build_one_page(tmp_path, MATCH_QUIZ)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "_build" / "index.html").read_text()
    terms = re.findall(r'class="ck-quiz-term"[^>]*data-pair="(\d)"', page)
    definitions = re.findall(r'class="ck-quiz-definition"[^>]*data-pair="(\d)"', page)
    assert terms == ["0", "1", "2"]
    assert sorted(definitions) == ["0", "1", "2"] and definitions != terms


@pytest.mark.slow
@pytest.mark.book
def test_two_quizzes_on_one_page_keep_their_own_ids(tmp_path: Path) -> None:
    result = build_one_page(tmp_path, CHOICE_QUIZ + MATCH_QUIZ)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "_build" / "index.html").read_text()
    assert 'id="demo-choice"' in page and 'id="demo-match"' in page


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("question: Q?\ntype: choice\noptions:\n  - text: a\n    correct: false\n    explain: x\n"
         "  - text: b\n    correct: false\n    explain: y\n", "no option is marked correct"),
        ("question: Q?\ntype: choice\noptions:\n  - text: a\n    correct: true\n", "at least 2"),
        ("question: Q?\ntype: choice\noptions:\n  - text: a\n    correct: yes please\n    explain: x\n"
         "  - text: b\n    correct: false\n    explain: y\n", "correct must be true or false"),
        ("question: Q?\ntype: essay\n", "type must be one of choice, match"),
        ("question: Q?\ntype: match\npairs:\n  - term: a\n  - term: b\n    definition: y\n", "'definition' must be"),
        ("question: [unclosed\n", "not valid YAML"),
    ],
    ids=["no-correct-option", "one-option", "non-boolean-correct", "unknown-type", "pair-without-definition", "bad-yaml"],
)
def test_malformed_quiz_fails_the_build_with_a_message(tmp_path: Path, body: str, message: str) -> None:
    result = build_one_page(tmp_path, f"```{{quiz}}\n:label: broken\n{body}```\n")
    assert result.returncode != 0
    assert "quiz:" in result.stderr and message in result.stderr


@pytest.mark.slow
@pytest.mark.book
def test_duplicate_quiz_label_on_a_page_fails_the_build(tmp_path: Path) -> None:
    result = build_one_page(tmp_path, CHOICE_QUIZ + CHOICE_QUIZ)
    assert result.returncode != 0 and "used by another quiz" in result.stderr


# --- the whole book --------------------------------------------------------------------------

def all_pages(built_book) -> list[Path]:
    return sorted(p for p in built_book.html.rglob("*.html") if "_static" not in p.parts)


@pytest.mark.slow
@pytest.mark.book
def test_build_leaves_no_execution_report(built_book) -> None:
    reports = built_book.html / "reports"
    assert not reports.exists() or not any(reports.rglob("*"))


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.parametrize("docname", toc_pages())
def test_every_toc_page_is_built(built_book, docname: str) -> None:
    assert built_book.page(docname).exists(), f"{docname}.html missing"


@pytest.mark.slow
@pytest.mark.book
def test_files_outside_the_toc_are_not_built(built_book) -> None:
    for stray in STRAY_SOURCES:
        assert not (built_book.html / stray).with_suffix(".html").exists(), stray
        assert not (built_book.html / "_sources" / stray).exists(), stray


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.ch01
def test_chapter_1_pastes_the_numbers_computed_at_build_time(built_book) -> None:
    page = built_book.read("book/ch01_token_to_sequence")
    pasted = re.findall(r'<span class="pasted-text">([^<]*)</span>', page)
    fox = [0.1, 0.3, 0.2, 0.4]
    expected = {
        "total": f"{sum(fox):.2f}",
        "mean": f"{sum(fox) / 4:.2f}",
        "probability of the sequence": f"{math.exp(-sum(fox)):.3f}",
        "perplexity": f"{math.exp(sum(fox) / 4):.3f}",
        "bits per token": f"{sum(fox) / 4 / math.log(2):.3f}",
        "first step probability": f"{math.exp(-0.1):.3f}",
        "uniform start ln 8": f"{math.log(8):.3f}",
    }
    for what, value in expected.items():
        assert value in pasted, f"{what} ({value}) not pasted; pasted: {pasted}"
    assert len(pasted) >= 25


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.ch01
def test_chapter_1_has_numbered_equations_figures_with_alt_text_exercises_and_quizzes(built_book) -> None:
    page = built_book.read("book/ch01_token_to_sequence")
    assert len(re.findall(r'<span class="eqno">\(\d+\.\d+\)', page)) >= 5
    figures = re.findall(r"<figure[^>]*>.*?</figure>", page, flags=re.S)
    assert len(figures) >= 2
    for figure in figures:
        assert re.search(r'<img[^>]*alt="[^"]{20,}"', figure), figure[:300]
        assert "<figcaption>" in figure
    assert page.count('class="solution dropdown') >= 3
    assert page.count('class="ck-quiz ') >= 3
    assert "../_static/assignments/a1_sequence_loss.ipynb" in page


def public_api() -> dict[str, list[str]]:
    """Every public function and class of every public coursekit module, by defining module."""
    import coursekit

    modules = [coursekit] + [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(coursekit.__path__, prefix="coursekit.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    names: dict[str, list[str]] = {}
    for module in modules:
        exported = getattr(module, "__all__", None)
        candidates = exported if exported is not None else [n for n in vars(module) if not n.startswith("_")]
        for name in candidates:
            value = getattr(module, name)
            if not (inspect.isfunction(value) or inspect.isclass(value)):
                continue
            if exported is None and value.__module__ != module.__name__:
                continue
            home = value.__module__ if not value.__module__.split(".")[-1].startswith("_") else module.__name__
            names.setdefault(home, []).append(value.__qualname__)
    return names


@pytest.mark.slow
@pytest.mark.book
def test_api_reference_documents_every_public_function_and_class(built_book) -> None:
    from coursekit.losses import __all__ as loss_names

    api = public_api()
    module_pages = sorted((built_book.html / "book" / "api").glob("*.html"))
    assert set(api) <= {page.stem for page in module_pages}, "a module with public names has no page"
    documented = set()
    for page in module_pages:
        documented |= set(re.findall(r'<dt class="sig sig-object py" id="([^"]+)"', page.read_text(encoding="utf-8")))
    index = built_book.read("book/appendix_api")
    for page in module_pages:
        assert f'href="api/{page.name}"' in index, f"the API appendix does not list {page.stem}"
    expected = {f"{module}.{name}" for module, names in api.items() for name in names}
    assert expected - documented == set()
    for name in loss_names:
        assert any(entry.endswith("." + name) for entry in documented), name


@pytest.mark.slow
@pytest.mark.book
def test_every_glossary_link_resolves(built_book) -> None:
    glossary = built_book.read("book/appendix_glossary")
    anchors = set(re.findall(r'<dt id="(term-[^"]+)"', glossary))
    assert {"term-loss-function", "term-cost-function", "term-sequence-level-loss", "term-token-level-loss",
            "term-perplexity", "term-teacher-forcing", "term-exposure-bias", "term-padding", "term-mask"} <= anchors
    links = 0
    for page in all_pages(built_book):
        text = page.read_text(encoding="utf-8")
        for anchor in re.findall(r'(<a [^>]*>)?<span class="xref std std-term">', text):
            assert anchor, f"{page.name}: a glossary term reference did not resolve"
        for target in re.findall(r'href="([^"]*appendix_glossary\.html)?#(term-[^"]+)"', text):
            if target[0] or page.name == "appendix_glossary.html":
                links += 1
                assert target[1] in anchors, f"{page.name} links to missing glossary entry {target[1]}"
    assert links >= 10


@pytest.mark.slow
@pytest.mark.book
def test_the_bibliography_shows_no_latex_markup(built_book) -> None:
    """pybtex prints an unknown macro's name (``\\texttt{x}`` shows as "\\texttt x") and turns a
    command-line flag's ``--`` into an en dash: neither may reach a reader, in a reference list or
    in a citation's tooltip."""
    listed = 0
    for page in all_pages(built_book):
        text = html.unescape(page.read_text(encoding="utf-8"))
        entries = re.findall(r'<div class="citation"[^>]*>(.*?)</div>', text, flags=re.S)
        tooltips = re.findall(r'<a [^>]*href="[^"]*#id\d+"[^>]*title="([^"]*)"', text)
        listed += len(entries)
        for shown in entries + tooltips:
            assert not re.search(r"\\[A-Za-z]+", shown), f"{page.name}: a reference shows LaTeX markup: {shown[:200]}"
            assert not re.search(r"(^|\s)\u2013[A-Za-z]", shown), (
                f"{page.name}: a reference shows a command-line flag's -- as an en dash: {shown[:200]}"
            )
    assert listed >= 90, f"the reference lists hold {listed} entries; the bibliography alone lists every cited work"


@pytest.mark.slow
@pytest.mark.book
def test_no_page_loads_anything_from_the_network(built_book) -> None:
    for page in all_pages(built_book):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r'src="(https?:)?//', text), page
        assert not re.search(r'<link[^>]+rel="stylesheet"[^>]+href="(https?:)?//', text), page


@pytest.mark.slow
@pytest.mark.book
def test_mathjax_is_served_with_the_book(built_book) -> None:
    page = built_book.read("book/ch01_token_to_sequence")
    sources = [html.unescape(s) for s in re.findall(r'<script[^>]+src="([^"]*mathjax[^"]*)"', page, flags=re.I)]
    assert sources, "no MathJax script tag"
    for source in sources:
        assert (built_book.page("book/ch01_token_to_sequence").parent / source.split("?")[0]).resolve().is_file(), source


def test_every_assignment_download_link_serves_a_generated_student_notebook(built_book) -> None:
    import json

    links = set()
    for docname in toc_pages(built_book.root):
        page = built_book.page(docname)
        for href in re.findall(r'href="([^"]*_static/assignments/[^"]+\.ipynb)"', page.read_text(encoding="utf-8")):
            links.add((page.parent / href).resolve())
    assert len({p.name for p in links}) == 6, sorted(p.name for p in links)
    for target in links:
        assert target.is_file(), f"a chapter links {target}, which the build did not produce"
        notebook = json.loads(target.read_text())
        sources = "".join("".join(cell["source"]) for cell in notebook["cells"])
        assert "### BEGIN SOLUTION" not in sources and "### BEGIN HIDDEN TESTS" not in sources
        assert "YOUR CODE HERE" in sources or "YOUR ANSWER HERE" in sources
