"""Plain-text renderings of short TeX formulas, for places where typeset maths cannot go.

An accessible name (``aria-label``) is plain text: a quiz option that is only a
formula, such as ``$e^{-1.0} \\approx 0.368$``, needs words a screen reader can
speak and an accessibility checker can see. :func:`tex_to_text` turns the TeX
source into readable Unicode (``e^(−1.0) ≈ 0.368``). It covers the commands
the book uses in inline formulas; an unknown command keeps its name without the
backslash, so the result is never empty.
"""

from __future__ import annotations

import re

SYMBOLS = {
    # Greek letters (lower case, variants, upper case)
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ϵ", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ",
    "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ",
    "tau": "τ", "upsilon": "υ", "phi": "ϕ", "varphi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω",
    "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π",
    "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
    # letters and operators
    "ell": "ℓ", "infty": "∞", "partial": "∂", "nabla": "∇", "sum": "Σ", "prod": "Π",
    "approx": "≈", "neq": "≠", "ne": "≠", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥",
    "ll": "≪", "gg": "≫", "times": "×", "cdot": "·", "pm": "±", "to": "→", "rightarrow": "→",
    "leftarrow": "←", "mapsto": "↦", "in": "∈", "notin": "∉", "subset": "⊂", "mid": "|",
    "propto": "∝", "sim": "∼", "equiv": "≡", "cdots": "⋯", "ldots": "…", "dots": "…",
    "lVert": "‖", "rVert": "‖", "Vert": "‖", "|": "‖", "lvert": "|", "rvert": "|",
    "langle": "⟨", "rangle": "⟩", "{": "{", "}": "}", "%": "%", "_": "_", "#": "#", "&": "&",
    "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈", "rceil": "⌉", "top": "⊤", "star": "⋆",
    "forall": "∀", "exists": "∃", "emptyset": "∅", "neg": "¬", "land": "∧", "lor": "∨",
}
# Function names that are spoken as words.
WORDS = {"log", "ln", "exp", "max", "min", "arg", "argmax", "argmin", "softmax", "sin", "cos", "tanh", "det", "lim", "sup", "inf", "KL"}
SPACES = {",", ";", ":", "!", " ", "quad", "qquad", "enspace", "thinspace"}
# Commands whose braced argument is kept as it stands.
UNWRAP = {"text", "textrm", "textit", "textbf", "mathrm", "mathit", "mathbf", "mathsf", "mathtt",
          "mathcal", "mathbb", "boldsymbol", "bm", "operatorname", "mbox", "displaystyle", "textstyle"}
# Commands that put a combining mark on their argument.
ACCENTS = {"bar": "\u0304", "overline": "\u0305", "hat": "\u0302", "widehat": "\u0302",
           "tilde": "\u0303", "widetilde": "\u0303", "dot": "\u0307", "vec": "\u20d7"}
DROPPED = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "limits", "nolimits"}

_COMMAND = re.compile(r"\\([A-Za-z]+|.)")


def tex_to_text(tex: str) -> str:
    """Readable Unicode text for the TeX formula ``tex`` (no delimiters).

    Args:
        tex: the TeX source of an inline formula, without ``$`` or ``\\(``.

    Returns:
        The formula as one line of text, with Greek letters and operators as
        Unicode characters, fractions as ``(a)/(b)`` and sub- and superscripts
        after ``_`` and ``^``.

    Example:
        >>> tex_to_text(r"e^{-1.0} \\approx 0.368")
        'e^(-1.0) ≈ 0.368'
        >>> tex_to_text(r"\\frac{1}{B n_b}")
        '1/(B n_b)'
    """
    text, _ = _convert(tex, 0, stop=None)
    return re.sub(r"\s+", " ", text).strip()


def _group(tex: str, position: int) -> tuple[str, int]:
    """The converted argument starting at ``position``: a braced group, a command or one character."""
    while position < len(tex) and tex[position].isspace():
        position += 1
    if position >= len(tex):
        return "", position
    if tex[position] == "{":
        return _convert(tex, position + 1, stop="}")
    if tex[position] == "\\":
        match = _COMMAND.match(tex, position)
        assert match is not None
        return _command(tex, match.group(1), match.end())
    return tex[position], position + 1


def _wrapped(text: str) -> str:
    """``text`` in parentheses unless it is one symbol or a plain number."""
    text = text.strip()
    return text if len(text) <= 1 or re.fullmatch(r"-?[\w.]+", text) else f"({text})"


def _command(tex: str, name: str, position: int) -> tuple[str, int]:
    if name in SYMBOLS:
        return SYMBOLS[name], position
    if name in WORDS:
        return f" {name} ", position
    if name in SPACES:
        return " ", position
    if name in DROPPED:
        return "", position
    if name in UNWRAP:
        return _group(tex, position)
    if name in ACCENTS:
        argument, position = _group(tex, position)
        return (argument + ACCENTS[name] if len(argument) == 1 else f"{ACCENTS[name].strip()}({argument})"), position
    if name in ("frac", "dfrac", "tfrac"):
        numerator, position = _group(tex, position)
        denominator, position = _group(tex, position)
        return f"{_wrapped(numerator)}/{_wrapped(denominator)}", position
    if name == "sqrt":
        argument, position = _group(tex, position)
        return f"√{_wrapped(argument)}", position
    return name, position


def _convert(tex: str, position: int, stop: str | None) -> tuple[str, int]:
    """Convert from ``position`` up to the closing ``stop`` character (or the end)."""
    out: list[str] = []
    while position < len(tex):
        char = tex[position]
        if stop is not None and char == stop:
            return "".join(out), position + 1
        if char == "\\":
            match = _COMMAND.match(tex, position)
            assert match is not None
            text, position = _command(tex, match.group(1), match.end())
            out.append(text)
        elif char in "^_":
            argument, position = _group(tex, position + 1)
            argument = argument.strip()
            out.append(char + (argument if len(argument) <= 1 else f"({argument})"))
        elif char == "{":
            text, position = _convert(tex, position + 1, stop="}")
            out.append(text)
        elif char == "~":
            out.append(" ")
            position += 1
        else:
            out.append(char)
            position += 1
    return "".join(out), position
