"""IPython syntax in the sandbox's kernel: the magics that run Python, and a visible refusal of the rest.

The kernel (:mod:`coursekit.grading.kernel`) is not IPython. A cell that is
not plain Python goes through IPython's ``TransformerManager``, which turns
``%%time`` and its body into ``get_ipython().run_cell_magic('time', '', body)``,
``%timeit f(x)`` into ``get_ipython().run_line_magic('timeit', 'f(x)')`` and
``!ls`` into ``get_ipython().system('ls')``; :class:`KernelShell` is what
``get_ipython()`` returns. It runs the magics whose meaning is "run this
Python" as Jupyter does, in the notebook's namespace, inside the step that is
running the cell (so under the same timers and output caps):

* ``%%time`` / ``%time stmt``: run the body, then print its CPU and wall time;
  ``x = %time expr`` binds the expression's value;
* ``%%timeit`` / ``%timeit stmt``: time the body as IPython does: inside a
  function (names it assigns stay local to it, as in Jupyter), repeated
  ``-r`` times (7 by default) with a loop count chosen so one repetition takes
  at least 0.2 s (or ``-n``); ``-o`` returns the result, ``-q`` prints nothing;
* ``%%capture [name]``: run the body with its output discarded, or kept in an
  IPython ``CapturedIO`` bound to ``name``;
* ``%%writefile [-a] file``: write (or append) the body to ``file``;
* ``%matplotlib ...``: select matplotlib's non-interactive backend (the grader
  keeps no figures, in Jupyter ``inline`` shows them).

Any other magic, and every shell escape (``!cmd``, ``x = !cmd``,
``get_ipython().system``), raises :class:`UnsupportedMagic` naming it, so the
cell fails visibly instead of silently defining nothing. None of this gives
student code anything it could not do already: every supported magic is
Python the cell could have written itself (``exec``, ``open``, ``time``).
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass
from types import CodeType
from typing import Any, Callable, Iterator

#: how the cell magics and line magics that run are spelled, for the refusal's message.
SUPPORTED = "%%time, %%timeit, %%capture, %%writefile, %time, %timeit and %matplotlib"
#: ``%timeit`` without ``-n`` raises the loop count by tens until one repetition takes this long (as IPython).
TIMEIT_MIN_REPETITION_S = 0.2
#: repetitions of ``%timeit`` without ``-r`` (as IPython).
TIMEIT_REPEAT = 7
#: the largest loop count ``%timeit`` tries without ``-n`` (as IPython: ten to the ninth).
TIMEIT_MAX_POWER = 9
#: ``%timeit``'s options: ``-n N``, ``-r R``, ``-p P`` (digits shown), ``-v NAME`` (bind the result), and the flags.
_TIMEIT_OPTION = re.compile(r"-(?:(?P<key>[nrp])\s*(?P<number>\d+)|v\s*(?P<name>[A-Za-z_]\w*)|(?P<flag>[qotc]))"
                            r"(?:\s+|$)")


class UnsupportedMagic(RuntimeError):
    """Raised by a magic or shell escape that the grader's kernel does not run."""


def compile_cell(source: str, filename: str) -> CodeType:
    """Compile a cell's ``source``, turning IPython syntax (magics, ``!``) into Python first when it needs it.

    Args:
        source: the cell's text.
        filename: the name tracebacks show.

    Returns:
        Code to ``exec`` in the notebook's namespace.

    Raises:
        SyntaxError: when the source is neither Python nor IPython syntax that translates to Python.

    Example:
        >>> namespace = {}
        >>> exec(compile_cell("x = 1 + 1", "<cell 0>"), namespace)
        >>> namespace["x"]
        2
    """
    try:
        return compile(source, filename, "exec")
    except SyntaxError:
        return compile(translate_cell(source), filename, "exec")


def translate_cell(source: str) -> str:
    """The Python text IPython turns a cell's ``source`` into: magics and ``!`` become calls on ``get_ipython()``.

    This is the text the kernel runs for a cell that is not plain Python
    (:func:`compile_cell`), and the text the class report reads to find the
    functions such a cell defines.

    Args:
        source: the cell's text.

    Returns:
        The translated text (plain Python comes back as it was).

    Example:
        >>> print(translate_cell("%%capture out\\nx = 1\\n"), end="")
        get_ipython().run_cell_magic('capture', 'out', 'x = 1\\n')
    """
    # Only a notebook with magics needs IPython, which is slow to import.
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


#: the cell magics whose body the kernel runs as the notebook's own code (:class:`KernelShell`);
#: ``%%timeit`` runs its body inside a function and ``%%writefile`` writes it to a file, so neither defines names.
_BODY_RUN_AS_CELL = frozenset({"time", "capture"})
#: how deep ``%%time`` / ``%%capture`` cells nested in one another are read.
MAX_MAGIC_DEPTH = 8


@dataclass(frozen=True)
class CellStatements:
    """A cell's top-level statements as the kernel runs them, or why they could not be read.

    Attributes:
        statements: the statements (a ``%%time`` or ``%%capture`` body's in place of the magic's call).
        parsed_chars: the characters handed to the parser (the cell, its translation, the magics' bodies).
        error: why the cell could not be read ("" when it was).
        over_budget: whether reading it would have parsed more than the room it was given.
    """

    statements: tuple[ast.stmt, ...] = ()
    parsed_chars: int = 0
    error: str = ""
    over_budget: bool = False


def cell_statements(source: str, room: int) -> CellStatements:
    """The top-level statements of a code cell as the grader's kernel runs it, parsing at most ``room`` characters.

    A cell that is not plain Python is read in IPython's translation
    (:func:`translate_cell`, the text the kernel compiles); IPython is imported only then. The call that runs a
    ``%%time`` or ``%%capture`` body is replaced by the body's own statements,
    read the same way, as those magics run their body in the notebook's
    namespace.

    Args:
        source: the cell's text.
        room: the most characters to hand to the parser, all readings together.

    Returns:
        The statements, or why they could not be read; never raises for a string.

    Example:
        >>> cell = cell_statements("%%capture out\\ndef f():\\n    return 1\\n", 10_000)
        >>> [type(node).__name__ for node in cell.statements], cell.error
        (['FunctionDef'], '')
        >>> cell_statements("def f(:", 10_000).error
        'SyntaxError: invalid syntax, line 1'
    """
    return _read(source, room, MAX_MAGIC_DEPTH)


def _read(source: str, room: int, depth: int) -> CellStatements:
    """:func:`cell_statements`, reading magics' bodies ``depth`` levels further at most."""
    if len(source) > room:
        return CellStatements(over_budget=True)
    try:
        return _expand(ast.parse(source).body, len(source), room, depth)
    except SyntaxError:
        pass  # IPython syntax, or a syntax error: the translation tells which
    except (ValueError, RecursionError, MemoryError) as error:
        return CellStatements(parsed_chars=len(source), error=type(error).__name__)
    try:
        translated = translate_cell(source)
    except Exception as error:  # noqa: BLE001 - a student's cell IPython cannot translate is reported, never raised
        return CellStatements(parsed_chars=len(source), error=f"IPython cannot translate it: {type(error).__name__}")
    used = len(source) + len(translated)
    if used > room:
        return CellStatements(parsed_chars=len(source), over_budget=True)
    try:
        return _expand(ast.parse(translated).body, used, room, depth)
    except SyntaxError as error:
        return CellStatements(parsed_chars=used, error=f"SyntaxError: {error.msg}, line {error.lineno}")
    except (ValueError, RecursionError, MemoryError) as error:
        return CellStatements(parsed_chars=used, error=type(error).__name__)


def _expand(statements: list[ast.stmt], used: int, room: int, depth: int) -> CellStatements:
    """``statements`` with each ``%%time`` / ``%%capture`` call replaced by its body's statements."""
    kept: list[ast.stmt] = []
    for node in statements:
        body = _magic_body(node)
        if body is None:
            kept.append(node)
            continue
        if depth <= 0:
            return CellStatements(parsed_chars=used, error=f"magics nested more than {MAX_MAGIC_DEPTH} deep")
        inner = _read(body, room - used, depth - 1)
        used += inner.parsed_chars
        if inner.error or inner.over_budget:
            return CellStatements(parsed_chars=used, error=inner.error, over_budget=inner.over_budget)
        kept.extend(inner.statements)
    return CellStatements(tuple(kept), used)


def _magic_body(node: ast.stmt) -> str | None:
    """The body of ``get_ipython().run_cell_magic('time' | 'capture', line, body)``, else ``None``."""
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return None
    call = node.value
    function = call.func
    if not (isinstance(function, ast.Attribute) and function.attr == "run_cell_magic"
            and isinstance(function.value, ast.Call) and isinstance(function.value.func, ast.Name)
            and function.value.func.id == "get_ipython" and len(call.args) == 3 and not call.keywords):
        return None
    name, _, body = (arg.value if isinstance(arg, ast.Constant) else None for arg in call.args)
    return body if name in _BODY_RUN_AS_CELL and isinstance(body, str) else None


class _Discard(io.TextIOBase):
    """A text stream that keeps nothing (``%%capture`` without a name)."""

    def write(self, text: str) -> int:
        return len(text)


class _BoundedText(io.StringIO):
    """A ``StringIO`` that keeps at most ``cap`` characters: what ``%%capture name`` holds is bounded too."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def write(self, text: str) -> int:
        room = max(0, self.cap - self.tell())
        super().write(str(text)[:room])
        return len(text)


class KernelShell:
    """What ``get_ipython()`` returns in the grader's kernel (see the module docstring).

    Args:
        namespace: the notebook's names; the magics run their bodies in it.
        capture_cap: the most characters ``%%capture name`` keeps of each stream.

    Example:
        >>> namespace = {}
        >>> shell = KernelShell(namespace, capture_cap=1000)
        >>> shell.run_cell_magic("capture", "", "x = 6 * 7\\nprint(x)\\n")
        >>> namespace["x"]
        42
        >>> try:
        ...     shell.run_cell_magic("bash", "", "ls\\n")
        ... except UnsupportedMagic as error:
        ...     print(str(error)[:45])
        the grader's kernel does not run %%bash (it r
    """

    def __init__(self, namespace: dict[str, Any], capture_cap: int) -> None:
        self.namespace = namespace
        self.capture_cap = capture_cap

    def run_cell_magic(self, magic_name: str, line: str, cell: str) -> Any:
        """Run the cell magic ``%%magic_name line`` on ``cell``, or raise :class:`UnsupportedMagic`."""
        magics: dict[str, Callable[[str, str], Any]] = {
            "time": self._time, "timeit": self._timeit, "capture": self._capture, "writefile": self._writefile}
        if magic_name not in magics:
            raise UnsupportedMagic(_refusal(f"%%{magic_name}"))
        return magics[magic_name](line, cell)

    def run_line_magic(self, magic_name: str, line: str, _stack_depth: int = 1) -> Any:
        """Run the line magic ``%magic_name line``, or raise :class:`UnsupportedMagic`."""
        magics: dict[str, Callable[[str, None], Any]] = {
            "time": self._time, "timeit": self._timeit, "matplotlib": self._matplotlib}
        if magic_name not in magics:
            raise UnsupportedMagic(_refusal(f"%{magic_name}"))
        return magics[magic_name](line, None)

    def system(self, cmd: str, *args: object, **kwargs: object) -> None:
        """``!cmd``: refused (the grader's kernel runs no shell commands)."""
        raise UnsupportedMagic(_refusal(f"!{cmd}"))

    def getoutput(self, cmd: str, *args: object, **kwargs: object) -> None:
        """``x = !cmd``: refused (the grader's kernel runs no shell commands)."""
        raise UnsupportedMagic(_refusal(f"!{cmd}"))

    system_raw = system_piped = system

    def _run(self, source: str, filename: str) -> None:
        exec(compile_cell(source, filename), self.namespace)

    def _time(self, line: str, cell: str | None) -> Any:
        options, statement = _time_options(line)
        if cell is not None and statement:
            raise UnsupportedMagic(f"%%time takes no statement on its line (received {statement!r})")
        source = statement if cell is None else cell
        expression = _lone_expression(source) if cell is None else None
        value, failure = None, None
        with _clock() as described:
            try:
                if expression is None:
                    self._run(source, "<timed exec>")
                else:
                    value = eval(compile(expression, "<timed eval>", "eval"), self.namespace)
            except Exception as error:  # noqa: BLE001 - printed times first, then raised, as IPython does
                failure = error
        print(described[0])
        if failure is not None and "--no-raise-error" not in options:
            raise failure
        return value

    def _timeit(self, line: str, cell: str | None) -> Any:
        options, statement = _timeit_options(line)
        setup, body = ("pass", statement) if cell is None else (statement or "pass", cell)
        timed = _timed_function(setup, body, self.namespace)
        loops = options.get("n", 0)
        if not loops:
            for power in range(TIMEIT_MAX_POWER + 1):
                loops = 10**power
                if timed(loops) >= TIMEIT_MIN_REPETITION_S:
                    break
        runs = [timed(loops) for _ in range(options.get("r", TIMEIT_REPEAT))]
        from IPython.core.magics.execution import TimeitResult

        result = TimeitResult(loops, len(runs), min(runs) / loops, max(runs) / loops, runs, 0.0,
                              options.get("p", 3))
        if "q" not in options:
            print(result)
        if "v" in options:
            self.namespace[options["v"]] = result
        return result if "o" in options else None

    def _capture(self, line: str, cell: str) -> None:
        words = shlex.split(line)
        flags = {word for word in words if word.startswith("--")}
        names = [word for word in words if not word.startswith("--")]
        unknown = flags - {"--no-stdout", "--no-stderr", "--no-display"}
        if unknown or len(names) > 1 or (names and not names[0].isidentifier()):
            raise UnsupportedMagic(f"%%capture takes [--no-stdout] [--no-stderr] [--no-display] [name] "
                                   f"(received {line!r})")
        out: io.TextIOBase = _BoundedText(self.capture_cap) if names else _Discard()
        err: io.TextIOBase = _BoundedText(self.capture_cap) if names else _Discard()
        real_out, real_err = sys.stdout, sys.stderr
        try:
            sys.stdout = real_out if "--no-stdout" in flags else out
            sys.stderr = real_err if "--no-stderr" in flags else err
            self._run(cell, "<captured cell>")
        finally:
            sys.stdout, sys.stderr = real_out, real_err
        if names and not cell.rstrip().endswith(";"):
            from IPython.utils.capture import CapturedIO

            self.namespace[names[0]] = CapturedIO(
                None if "--no-stdout" in flags else out, None if "--no-stderr" in flags else err)

    def _writefile(self, line: str, cell: str) -> None:
        words = shlex.split(line)
        append = bool({"-a", "--append"} & set(words))
        names = [word for word in words if word not in ("-a", "--append")]
        if len(names) != 1 or names[0].startswith("-"):
            raise UnsupportedMagic(f"%%writefile takes [-a] and one file name (received {line!r})")
        with open(os.path.expanduser(names[0]), "a" if append else "w", encoding="utf-8") as handle:
            handle.write(cell)
        print(f"{'Appended to' if append else 'Wrote'} {names[0]}")

    def _matplotlib(self, line: str, _cell: None) -> None:
        import matplotlib

        # The grader keeps no figures: any backend the student names becomes the one that draws off screen.
        matplotlib.use("agg")


def _refusal(what: str) -> str:
    return f"the grader's kernel does not run {what} (it runs {SUPPORTED}, and no shell commands)"


def _time_options(line: str) -> tuple[set[str], str]:
    """``%time``'s flags (only ``--no-raise-error``) and the statement after them."""
    words = line.split(None, 1)
    if words and words[0] == "--no-raise-error":
        return {words[0]}, words[1] if len(words) > 1 else ""
    return set(), line.strip()


def _timeit_options(line: str) -> tuple[dict[str, Any], str]:
    """``%timeit``'s options (``n``, ``r``, ``p`` as ints, ``v`` as a name, the flags as True) and the rest."""
    options: dict[str, Any] = {}
    rest = line.strip()
    while (match := _TIMEIT_OPTION.match(rest)) is not None:
        if match["key"]:
            options[match["key"]] = int(match["number"])
        elif match["name"]:
            options["v"] = match["name"]
        else:
            options[match["flag"]] = True
        rest = rest[match.end():]
    if options.get("r", 1) < 1:
        raise UnsupportedMagic(f"%timeit takes -r 1 or more (received {line!r})")
    return options, rest


def _lone_expression(source: str) -> ast.Expression | None:
    """``source`` as an expression when it is exactly one (``x = %time f()`` binds its value), else ``None``."""
    tree = ast.parse(translate_cell(source))
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr):
        return ast.Expression(tree.body[0].value)
    return None


def _timed_function(setup: str, body: str, namespace: dict[str, Any]) -> Callable[[int], float]:
    """A function of ``loops`` that runs ``setup`` once, then ``body`` ``loops`` times, and returns the seconds taken.

    The code runs inside the function, with the notebook's names as its
    globals: what it assigns stays local, as in IPython's ``%timeit``.
    """
    setup_tree, body_tree = ast.parse(translate_cell(setup)), ast.parse(translate_cell(body))
    # Compiled on their own first, so that a syntax error names the student's code, not the loop around it.
    compile(setup_tree, "<timeit setup>", "exec")
    compile(body_tree, "<timeit>", "exec")
    loop = ast.parse("def _coursekit_timed(_coursekit_loops, _coursekit_clock):\n"
                     "    _coursekit_start = _coursekit_clock()\n"
                     "    for _coursekit_loop in range(_coursekit_loops):\n"
                     "        pass\n"
                     "    return _coursekit_clock() - _coursekit_start\n")
    function = loop.body[0]
    assert isinstance(function, ast.FunctionDef)
    function.body[1].body = body_tree.body or [ast.Pass()]  # type: ignore[attr-defined]
    function.body[:0] = setup_tree.body
    local: dict[str, Any] = {}
    exec(compile(ast.fix_missing_locations(loop), "<timeit>", "exec"), namespace, local)
    timed = local["_coursekit_timed"]
    return lambda loops: float(timed(loops, time.perf_counter))


@contextlib.contextmanager
def _clock() -> Iterator[list[str]]:
    """Yield a list that holds, once the block has ended, the block's CPU and wall time as ``%time`` prints them."""
    started, wall = os.times(), time.perf_counter()
    described: list[str] = []
    try:
        yield described
    finally:
        ended, wall = os.times(), time.perf_counter() - wall
        user, system = ended.user - started.user, ended.system - started.system
        described.append(f"CPU times: user {_seconds(user)}, sys: {_seconds(system)}, total: {_seconds(user + system)}"
                         f"\nWall time: {_seconds(wall)}")


def _seconds(value: float) -> str:
    """``value`` seconds in the unit that reads best (s, ms, µs or ns), three significant digits."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{max(value, 0.0) / 1e-9:.3g} ns"
