"""The ``quiz`` directive: self-check questions that answer every click in static HTML.

A quiz is written as a YAML body so that chapter authors need no HTML::

    ```{quiz}
    :label: ch01-quiz-1
    question: Which reduction gives every token in the batch the same weight?
    type: choice
    options:
      - text: token mean
        correct: true
        explain: Each token's loss is divided by the same total count.
      - text: sequence mean
        correct: false
        explain: Tokens of short sequences weigh more.
    ```

``type: match`` takes ``pairs: [{term: ..., definition: ...}, ...]`` instead of
``options``; the reader clicks a term, then the definition that belongs to it.
Every text may hold inline MyST (``$..$`` math included). An option that is only
a formula gets a spoken label (its ``aria-label``): the optional ``label:`` text,
else the formula in plain Unicode (:func:`coursebook.mathtext.tex_to_text`).

The page carries all answers and explanations; ``static/coursebook.js`` reveals
them on click, so the quiz works from a plain file server. An explanation is
hidden, and tied to its option (``aria-describedby``) only once the option is
clicked, so a screen reader does not read it out beforehand. Malformed bodies are
reported as errors at the directive's line, which fail a ``-W`` build.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

import yaml
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from coursebook.mathtext import tex_to_text

QUIZ_TYPES = ("choice", "match")
LABEL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


class quiz_element(nodes.General, nodes.Element):
    """One HTML element of a quiz: ``tag`` and extra ``html_attrs`` travel with the node."""


def _element(tag: str, classes: list[str], children: list[nodes.Node] | None = None, **attrs: str) -> quiz_element:
    ids = [attrs.pop("id")] if "id" in attrs else []
    node = quiz_element(tag=tag, html_attrs=attrs, classes=classes, ids=ids)
    node.extend(children or [])
    return node


def visit_quiz_element_html(translator: Any, node: quiz_element) -> None:
    attrs = {key.replace("_", "-"): value for key, value in node["html_attrs"].items()}
    translator.body.append(translator.starttag(node, node["tag"], "", **attrs))


def depart_quiz_element_html(translator: Any, node: quiz_element) -> None:
    translator.body.append(f"</{node['tag']}>")


def visit_quiz_element_other(translator: Any, node: quiz_element) -> None:
    """Non-HTML builders render the texts as they stand; the interaction is HTML-only."""


def depart_quiz_element_other(translator: Any, node: quiz_element) -> None:
    """Nothing to close outside HTML."""


class QuizDirective(SphinxDirective):
    """Render a multiple-choice or matching question from its YAML body."""

    has_content = True
    required_arguments = 0
    optional_arguments = 0
    option_spec = {"label": directives.unchanged_required, "class": directives.class_option}

    def run(self) -> list[nodes.Node]:
        try:
            spec = self._load()
            label = self._label()
            if spec["type"] == "choice":
                body = self._choice(spec, label)
            else:
                body = self._match(spec, label)
        except _QuizError as problem:
            raise self.error(f"quiz: {problem}") from None
        container = _element(
            "div",
            ["ck-quiz", f"ck-quiz-{spec['type']}", *self.options.get("class", [])],
            body,
            data_quiz_type=spec["type"],
            role="group",
        )
        container["ids"].append(label)
        self.set_source_info(container)
        return [container]

    # -- reading and checking the YAML body ---------------------------------
    def _load(self) -> dict[str, Any]:
        if not self.content:
            raise _QuizError("the body is empty; expected YAML with 'question', 'type' and 'options' or 'pairs'")
        try:
            spec = yaml.safe_load("\n".join(self.content))
        except yaml.YAMLError as error:
            raise _QuizError(f"the body is not valid YAML: {error}") from None
        if not isinstance(spec, dict):
            raise _QuizError(f"the body must be a YAML mapping, got {type(spec).__name__}")
        spec.setdefault("type", "choice")
        if spec["type"] not in QUIZ_TYPES:
            raise _QuizError(f"type must be one of {', '.join(QUIZ_TYPES)}, got {spec['type']!r}")
        _require_text(spec, "question", "the quiz")
        allowed = {"question", "type", "options" if spec["type"] == "choice" else "pairs"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise _QuizError(f"unknown key(s) {', '.join(map(repr, unknown))} for type {spec['type']}; expected {sorted(allowed)}")
        return spec

    def _label(self) -> str:
        label = self.options.get("label")
        counter = self.env.temp_data.setdefault("coursebook_quiz_labels", [])
        if label is None:
            label = f"quiz-{len(counter) + 1}"
        elif not LABEL_PATTERN.match(label):
            raise _QuizError(f":label: must start with a letter and hold only letters, digits, '-' and '_', got {label!r}")
        if label in counter:
            raise _QuizError(f":label: {label!r} is used by another quiz on this page")
        counter.append(label)
        return label

    # -- rendering ------------------------------------------------------------
    def _inline(self, text: str) -> list[nodes.Node]:
        parsed, messages = self.state.inline_text(str(text), self.lineno)
        return [*parsed, *messages]

    def _choice(self, spec: dict[str, Any], label: str) -> list[nodes.Node]:
        options = spec.get("options")
        if not isinstance(options, list) or len(options) < 2:
            raise _QuizError(f"options must be a list of at least 2 entries, got {options!r}")
        for index, option in enumerate(options, start=1):
            where = f"option {index}"
            if not isinstance(option, dict):
                raise _QuizError(f"{where} must be a mapping with text, correct, explain; got {option!r}")
            _require_text(option, "text", where)
            _require_text(option, "explain", where)
            if not isinstance(option.get("correct"), bool):
                raise _QuizError(f"{where}: correct must be true or false, got {option.get('correct')!r}")
            if "label" in option:
                _require_text(option, "label", where)
            unknown = sorted(set(option) - {"text", "correct", "explain", "label"})
            if unknown:
                raise _QuizError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
        if not any(option["correct"] for option in options):
            raise _QuizError("no option is marked correct: true")

        items = []
        for index, option in enumerate(options):
            text = self._inline(option["text"])
            spoken = {}
            formula = _only_formula(text)
            if formula is not None or "label" in option:
                spoken["aria_label"] = str(option.get("label") or tex_to_text(formula or ""))
            button = _element(
                "button",
                ["ck-quiz-option"],
                text,
                type="button",
                data_correct="true" if option["correct"] else "false",
                data_explain=f"{label}-explain-{index}",
                **spoken,
            )
            explain = _element(
                "div",
                ["ck-quiz-explain"],
                self._inline(option["explain"]),
                hidden="hidden",
                id=f"{label}-explain-{index}",
            )
            items.append(_element("li", ["ck-quiz-item"], [button, explain]))
        return [
            _element("p", ["ck-quiz-question"], self._inline(spec["question"])),
            _element("ul", ["ck-quiz-options"], items),
            _element("p", ["ck-quiz-feedback"], [], aria_live="polite"),
        ]

    def _match(self, spec: dict[str, Any], label: str) -> list[nodes.Node]:
        pairs = spec.get("pairs")
        if not isinstance(pairs, list) or len(pairs) < 2:
            raise _QuizError(f"pairs must be a list of at least 2 entries, got {pairs!r}")
        for index, pair in enumerate(pairs, start=1):
            where = f"pair {index}"
            if not isinstance(pair, dict):
                raise _QuizError(f"{where} must be a mapping with term and definition, got {pair!r}")
            _require_text(pair, "term", where)
            _require_text(pair, "definition", where)
            unknown = sorted(set(pair) - {"term", "definition"})
            if unknown:
                raise _QuizError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
        terms = [str(pair["term"]) for pair in pairs]
        if len(set(terms)) != len(terms):
            raise _QuizError("two pairs share the same term")

        terms_list = [
            _element(
                "li",
                ["ck-quiz-item"],
                [_element("button", ["ck-quiz-term"], self._inline(pair["term"]), type="button", data_pair=str(index), aria_pressed="false")],
            )
            for index, pair in enumerate(pairs)
        ]
        definitions_list = [
            _element(
                "li",
                ["ck-quiz-item"],
                [_element("button", ["ck-quiz-definition"], self._inline(pairs[index]["definition"]), type="button", data_pair=str(index))],
            )
            for index in _shuffled_order(len(pairs), label)
        ]
        return [
            _element("p", ["ck-quiz-question"], self._inline(spec["question"])),
            _element("p", ["ck-quiz-hint"], [nodes.Text("Click a term, then the definition that belongs to it.")]),
            _element(
                "div",
                ["ck-quiz-match-grid"],
                [
                    _element("ul", ["ck-quiz-terms"], terms_list, aria_label="Terms"),
                    _element("ul", ["ck-quiz-definitions"], definitions_list, aria_label="Definitions"),
                ],
            ),
            _element("p", ["ck-quiz-feedback"], [], aria_live="polite"),
        ]


class _QuizError(Exception):
    """A problem with a quiz body, reported at the directive's line."""


def _require_text(mapping: dict[str, Any], key: str, where: str) -> None:
    value = mapping.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise _QuizError(f"{where}: '{key}' must be a non-empty text, got {value!r}")


def _only_formula(parsed: list[nodes.Node]) -> str | None:
    """The TeX of an option whose only visible content is one formula (else None)."""
    formulas = [node for node in parsed if isinstance(node, nodes.math)]
    rest = "".join(node.astext() for node in parsed if not isinstance(node, nodes.math))
    if len(formulas) == 1 and not rest.strip():
        return formulas[0].astext()
    return None


def _shuffled_order(count: int, label: str) -> list[int]:
    """A fixed permutation per quiz label (reproducible builds), never the identity."""
    seed = int(hashlib.sha256(label.encode()).hexdigest()[:16], 16)
    order = list(range(count))
    random.Random(seed).shuffle(order)
    if order == sorted(order):
        order = order[1:] + order[:1]
    return order


def setup(app: Sphinx) -> None:
    """Register the node, its visitors and the directive (static files: see the package setup)."""
    other = (visit_quiz_element_other, depart_quiz_element_other)
    app.add_node(
        quiz_element,
        html=(visit_quiz_element_html, depart_quiz_element_html),
        latex=other,
        text=other,
        man=other,
        texinfo=other,
    )
    app.add_directive("quiz", QuizDirective)
