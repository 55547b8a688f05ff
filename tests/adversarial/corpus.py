"""The adversarial corpus: submissions of assignment 1 that each try one attack.

Every entry is built from the correct solution plus one attack, so its exact
expected score follows from which answers the attack touches (a1 has 10
autograded points: token_nll 3, sequence_loss 3, perplexity 1, fox 2, MC 1).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from adversarial.course import ASSIGNMENT, add_cell, cell_index, set_answer, solutions, solved_notebook

WRONG_TOKEN_NLL = "import torch\ndef token_nll(logits, targets, *, ignore_index=-100):\n    return torch.zeros(targets.shape, dtype=logits.dtype)\n"


@dataclass(frozen=True)
class Attack:
    student: str
    score: float
    outcome: str
    build: Callable[[Path], dict[str, Any] | bytes]
    what: str
    timestamp: bytes | None = None   # timestamp.txt's bytes, when the attack is on it
    #: for an attack that needs the host's speed to reach a limit within one cell's time: patterns its cell
    #: prints when it did not get there, each with the outcomes it may then get instead of ``outcome`` (more
    #: than one where what the cell can see does not decide it); its score is the same either way.
    unreached: tuple[tuple[str, tuple[str, ...]], ...] = ()


def _with_cell(source: str, after: str = "answer_token_nll") -> Callable[[Path], dict[str, Any]]:
    return lambda course: add_cell(solved_notebook(course), source, after=after)


def _with_answer(grade_id: str, source: str | Callable[[Path], str]) -> Callable[[Path], dict[str, Any]]:
    def build(course: Path) -> dict[str, Any]:
        text = source(course) if callable(source) else source
        return set_answer(solved_notebook(course), grade_id, text)
    return build


#: A plain cell just above the last test cell: it runs after the visible checks of every graded function (the last
#: test cell checks a letter only), so a graded function that reads this flag can tell the hidden calls (made after
#: the last graded cell) from the visible checks, answer those honestly, and attack only the hidden calls, as a
#: determined student would once the visible checks count. (Cells below the last graded cell are not run at all:
#: coursekit.grading.notebook.last_graded_cell.) The flag is set on the shared ``builtins`` module, not as a
#: global: the hidden calls run in the names as they stood at the test cell (coursekit.grading.snapshot), where a
#: global set later is not, but an object changed later is seen changed.
CALLS_PHASE_CELL = "import builtins\nbuiltins._calls_phase = True\n"
#: the answer cell :data:`CALLS_PHASE_CELL` follows: the last one, above the last test cell.
CALLS_PHASE_AFTER = "answer_mc_classification"


def _in_calls_phase(build: Callable[[Path], dict[str, Any]]) -> Callable[[Path], dict[str, Any]]:
    """``build``'s notebook with :data:`CALLS_PHASE_CELL` just above its last test cell."""
    def with_flag(course: Path) -> dict[str, Any]:
        return add_cell(build(course), CALLS_PHASE_CELL, after=CALLS_PHASE_AFTER)
    return with_flag


def _loop_in_function(course: Path) -> str:
    return "def token_nll(logits, targets, *, ignore_index=-100):\n    while True:\n        pass\n"


# Loops that survive the runner's own timer: the grader must stop them from outside.
SWALLOWING_LOOP = "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass\n"
TIMER_IGNORED = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n"
SWALLOWING_FUNCTION = (
    "def token_nll(logits, targets, *, ignore_index=-100):\n"
    "    while True:\n        try:\n            while True:\n                pass\n"
    "        except BaseException:\n            pass\n"
)
EXIT_IN_FUNCTION = "import os\ndef token_nll(logits, targets, *, ignore_index=-100):\n    os._exit(0)\n"


def _read_secret(path_expr: str) -> Callable[[Path], str]:
    def source(course: Path) -> str:
        return (
            "mc_classification = 'A'\n"
            "try:\n"
            f"    _text = open({path_expr!r}.replace('COURSE', {str(course)!r}), errors='replace').read()\n"
            "    if 'mc_classification == \"B\"' in _text or \"'B'\" in _text:\n"
            "        mc_classification = 'B'\n"
            "except OSError as error:\n"
            "    print('could not read:', error)\n"
        )
    return source


def _copy_other(course: Path) -> str:
    return (
        WRONG_TOKEN_NLL
        + "import json\n"
        + "try:\n"
        + f"    _nb = json.load(open({str(course / 'submitted' / 'correct' / ASSIGNMENT / (ASSIGNMENT + '.ipynb'))!r}))\n"
        + "    exec(next(''.join(c['source']) for c in _nb['cells'] if 'def token_nll' in ''.join(c['source'])))\n"
        + "except OSError as error:\n"
        + "    print('could not read:', error)\n"
    )


def _overwrite_shared(course: Path) -> str:
    import coursekit.losses.nll as nll

    return (
        "for _path in [%r, %r, '/tmp/shared.txt']:\n"
        "    try:\n"
        "        with open(_path, 'a') as _f:\n"
        "            _f.write('\\ndef token_nll(*a, **k):\\n    return 0\\n')\n"
        "    except OSError as error:\n"
        "        print('could not write', _path, error)\n"
    ) % (nll.__file__, str(course / "source" / ASSIGNMENT / (ASSIGNMENT + ".ipynb")))


PATCH_REFERENCE = WRONG_TOKEN_NLL + (
    "import coursekit.losses, coursekit.losses.nll\n"
    "coursekit.losses.token_nll = token_nll\n"
    "coursekit.losses.nll.token_nll = token_nll\n"
    "import sys\nsys.modules['coursekit.losses'].token_nll = token_nll\n"
)
PATCH_ALLCLOSE = WRONG_TOKEN_NLL + (
    "import numpy, torch\n"
    "numpy.allclose = lambda *a, **k: True\nnumpy.isclose = lambda *a, **k: True\n"
    "torch.allclose = lambda *a, **k: True\ntorch.isclose = lambda *a, **k: torch.tensor(True)\n"
    "torch.testing.assert_close = lambda *a, **k: None\n"
)
ALWAYS_EQUAL = (
    "class _Yes(float):\n"
    "    def __eq__(self, other): return True\n"
    "    def __ne__(self, other): return False\n"
    "    def __bool__(self): return True\n"
    "    def __float__(self): return 0.0\n"
    "    def __array__(self, *a, **k): raise TypeError('no')\n"
    "    def __getattr__(self, name): return lambda *a, **k: self\n"
    "def token_nll(logits, targets, *, ignore_index=-100):\n    return _Yes()\n"
)
SHOWTRACEBACK = (
    "import IPython.core.interactiveshell as _shell\n"
    "_shell.InteractiveShell.showtraceback = lambda *a, **k: None\n"
    "try:\n    get_ipython().showtraceback = lambda *a, **k: None\nexcept Exception:\n    pass\n"
    "def token_nll(logits, targets, *, ignore_index=-100):\n    raise RuntimeError('hidden by the patched traceback')\n"
)
FORGE_RESULTS = WRONG_TOKEN_NLL + (
    "import json, os\n"
    "for _fd in range(3, 256):\n"
    "    for _i in range(20):\n"
    "        try:\n"
    "            os.write(_fd, (json.dumps({'ev': 'call', 'id': f'test_token_nll#{_i}', 'ok': True,\n"
    "                'value': {'t': 'float', 'v': '0.0'}, 'grads': []}) + '\\n').encode())\n"
    "        except OSError:\n"
    "            break\n"
    "open('result.json', 'w').write('{\"score\": 10}')\n"
)
STDERR_WARNINGS = (
    "import sys, warnings\nimport torch\n"
    "def token_nll(logits, targets, *, ignore_index=-100):\n"
    "    warnings.warn('this is only a warning')\n"
    "    print('debug output on stderr', file=sys.stderr)\n"
    "    ignored = targets == ignore_index\n"
    "    safe = torch.where(ignored, torch.zeros_like(targets), targets)\n"
    "    picked = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1)\n"
    "    return torch.where(ignored, torch.zeros_like(picked), torch.logsumexp(logits, -1) - picked)\n"
)
DIFFERENT_STYLE = {
    "answer_token_nll": (
        "import torch\n"
        "def token_nll(logits, targets, *, ignore_index=-100):\n"
        "    flat_logits = logits.reshape(-1, logits.shape[-1])\n"
        "    flat_targets = targets.reshape(-1)\n"
        "    losses = []\n"
        "    for row, target in zip(flat_logits, flat_targets):\n"
        "        if int(target) == ignore_index:\n"
        "            losses.append(row.sum() * 0)\n"
        "            continue\n"
        "        top = row.max().detach()\n"
        "        total = sum(torch.exp(value - top) for value in row)\n"
        "        losses.append(torch.log(total) + top - row[int(target)])\n"
        "    return torch.stack(losses).reshape(targets.shape) if losses else logits.sum(-1) * 0\n"
    ),
    "answer_sequence_loss": (
        "def sequence_loss(token_losses, mask=None, *, reduction='sum'):\n"
        "    if reduction not in ('sum', 'mean'):\n"
        "        raise ValueError(f'reduction must be sum or mean, got {reduction!r}')\n"
        "    if mask is None:\n"
        "        mask = torch.ones_like(token_losses, dtype=torch.bool)\n"
        "    zeros = torch.zeros_like(token_losses)\n"
        "    total = torch.where(mask, token_losses, zeros).sum(-1)\n"
        "    count = mask.to(token_losses.dtype).sum(-1)\n"
        "    return total if reduction == 'sum' else total / count\n"
    ),
    "answer_perplexity": (
        "import math\n"
        "def perplexity(mean_nll):\n"
        "    return torch.as_tensor(mean_nll, dtype=mean_nll.dtype if torch.is_tensor(mean_nll) else torch.float32).exp()\n"
    ),
}


def _different_style(course: Path) -> dict[str, Any]:
    notebook = solved_notebook(course)
    for grade_id, source in DIFFERENT_STYLE.items():
        set_answer(notebook, grade_id, source)
    return notebook


def _delete_test(course: Path) -> dict[str, Any]:
    notebook = solved_notebook(course)
    del notebook["cells"][cell_index(notebook, "test_token_nll")]
    return notebook


def _edit_readonly(course: Path) -> dict[str, Any]:
    notebook = solved_notebook(course)
    notebook["cells"][cell_index(notebook, "test_sequence_loss")]["source"] = "print('all tests passed')"
    given = notebook["cells"][cell_index(notebook, "given-02")]
    given["source"] = given["source"] if isinstance(given["source"], str) else "".join(given["source"])
    given["source"] += "\nimport coursekit.losses as _L\n_L.sequence_loss = lambda *a, **k: 0\n"
    return notebook


FORGED_MEMORY_ERROR = "raise MemoryError('forged: no memory was used')\n"
FORGED_CELL_TIMEOUT = "class CellTimeout(BaseException):\n    pass\nraise CellTimeout('forged: no time was used')\n"
# Grader review r2, finding 8: an answer of 10^7 floats, a 53 MB report (a variable: a1's functions are
# asked for gradients too, which a value that does not follow the inputs cannot give).
#: perplexity's hidden calls each return 10^7 floats (its visible checks get the true value).
BIG_RESULTS = (
    "import torch\n"
    "_honest_perplexity = perplexity\n"
    "def perplexity(mean_nll):\n"
    "    if not getattr(__import__('builtins'), '_calls_phase', False):\n"
    "        return _honest_perplexity(mean_nll)\n"
    "    return torch.zeros(10_000_000)\n"
)


def _readonly_edited_and(source: str) -> Callable[[Path], dict[str, Any]]:
    """Edited read-only cells, plus a cell that raises an exception named like a limit (grader review r2,
    finding 9): the name is the student's choice, so it must neither hide the tampering nor buy a rerun."""
    return lambda course: add_cell(_edit_readonly(course), source, after="answer_token_nll")


def _duplicate_ids(course: Path) -> dict[str, Any]:
    notebook = solved_notebook(course)
    index = cell_index(notebook, "test_perplexity")
    clone = copy.deepcopy(notebook["cells"][index])
    notebook["cells"].insert(index + 1, clone)
    return notebook


def _strip_metadata(course: Path) -> dict[str, Any]:
    notebook = solved_notebook(course)
    for cell in notebook["cells"]:
        cell["metadata"].pop("nbgrader", None)
    return notebook


def _huge(course: Path) -> bytes:
    notebook = solved_notebook(course)
    notebook["cells"].append({"cell_type": "raw", "metadata": {}, "source": "PAD"})
    text = json.dumps(notebook)
    head, tail = text.split('"PAD"')
    return (head + '"' + "x" * (200 * 1024 * 1024) + '"' + tail).encode()


# The tensors are mapped, never written (torch.empty): the bomb meets the address-space limit at once, whatever
# writing memory costs. On a CI virtual machine a bomb of zeroed bytearrays met its 3 s CPU limit before the
# limit (1 GB written), an honest timeout. test_grading_reruns keeps the bomb that writes, at a 20 s limit.
MEMORY_BOMB = "import torch\n_hog = []\nwhile True:\n    _hog.append(torch.empty(50_000_000, dtype=torch.uint8))\n"
#: a cell that needs 200 MB for a moment: it runs out while a cell above holds the memory, so that cell starved it
#: and is skipped (a hoarder that starved nothing stays: grader review r28, F2).
NEEDS_MEMORY = "print(len(bytearray(200_000_000)))\n"

ATTACKS: list[Attack] = [
    Attack("correct", 10.0, "graded", solved_notebook, "the source's own solution"),
    Attack("loop_top", 10.0, "timeout", _with_cell("while True:\n    pass\n"), "infinite loop at top level"),
    Attack("loop_function", 7.0, "timeout", _with_answer("answer_token_nll", _loop_in_function), "infinite loop in the graded function"),
    Attack("loop_swallows_timeout", 10.0, "timeout", _with_cell(SWALLOWING_LOOP),
           "an infinite loop that catches the time-limit exception"),
    Attack("timer_ignored", 10.0, "timeout", _with_cell(TIMER_IGNORED), "SIGALRM ignored, then an infinite loop"),
    Attack("function_swallows_timeout", 7.0, "timeout", _with_answer("answer_token_nll", SWALLOWING_FUNCTION),
           "a graded function that catches the time-limit exception and loops on"),
    Attack("exit_in_function", 7.0, "kernel_died", _with_answer("answer_token_nll", EXIT_IN_FUNCTION),
           "os._exit(0) inside the graded function"),
    Attack("os_exit", 10.0, "kernel_died", _with_cell("import os\nos._exit(0)\n"), "os._exit(0)"),
    Attack("segfault", 10.0, "kernel_died", _with_cell("import ctypes\nctypes.string_at(0)\n"), "a segfault through ctypes"),
    Attack("memory_bomb", 10.0, "memory_limit", lambda course: add_cell(_with_cell(NEEDS_MEMORY)(course), MEMORY_BOMB,
                                                                         after="answer_token_nll"),
           "a memory bomb, and a later cell it starves"),
    Attack("fork_bomb", 10.0, "graded", _with_cell("import os\nwhile True:\n    os.fork()\n"), "a fork bomb"),
    # Output past the limits is dropped, never raised (grader review r3, finding 3): the flood runs until the
    # cell's time limit stops it, and the cells after it still run.
    Attack("print_flood", 10.0, "timeout", _with_cell("for _i in range(10**8):\n    print(_i)\n"),
           "10^8 lines printed: the cell is stopped at its time limit"),
    Attack("big_file", 10.0, "graded", _with_cell(
        "_block = b'\\0' * 2**20\nwith open('big.bin', 'wb') as _f:\n    for _ in range(2048):\n        _f.write(_block)\n"), "a 2 GB file"),
    Attack("read_source", 9.0, "graded", _with_answer("answer_mc_classification", _read_secret(
        "COURSE/source/" + ASSIGNMENT + "/" + ASSIGNMENT + ".ipynb")), "reading the solution in source/"),
    Attack("read_gradebook", 9.0, "graded", _with_answer("answer_mc_classification", _read_secret("COURSE/gradebook.db")),
           "reading hidden tests from the gradebook"),
    Attack("read_spec", 9.0, "graded", _with_answer("answer_mc_classification", _read_secret(
        "COURSE/autograde/" + ASSIGNMENT + ".py")), "reading the grading spec"),
    Attack("copy_other", 7.0, "graded", _with_answer("answer_token_nll", _copy_other), "reading another student's submission"),
    Attack("overwrite_shared", 10.0, "graded",
           lambda course: add_cell(solved_notebook(course), _overwrite_shared(course), after="answer_token_nll"),
           "overwriting shared files (the reference library, source/)"),
    Attack("patch_reference", 7.0, "graded", _with_answer("answer_token_nll", PATCH_REFERENCE), "monkeypatching the coursekit reference"),
    Attack("patch_allclose", 7.0, "graded", _with_answer("answer_token_nll", PATCH_ALLCLOSE), "patching numpy/torch allclose"),
    Attack("always_equal", 7.0, "graded", _with_answer("answer_token_nll", ALWAYS_EQUAL), "an always-equal object"),
    Attack("showtraceback", 7.0, "graded", _with_answer("answer_token_nll", SHOWTRACEBACK), "patching IPython's showtraceback"),
    Attack("forge_results", 7.0, "graded", _with_answer("answer_token_nll", FORGE_RESULTS), "writing fake results"),
    Attack("deleted_test", 10.0, "missing_cells", _delete_test, "a deleted test cell"),
    Attack("edited_readonly", 10.0, "tampered_cells", _edit_readonly, "edited read-only cells"),
    Attack("duplicate_id", 10.0, "tampered_cells", _duplicate_ids, "a duplicated cell id"),
    Attack("stripped_metadata", 10.0, "missing_cells", _strip_metadata, "stripped nbgrader metadata"),
    Attack("not_json", 0.0, "invalid_notebook", lambda course: b'{"cells": [', "a notebook that is not valid JSON"),
    Attack("empty", 0.0, "invalid_notebook", lambda course: b"", "an empty file"),
    Attack("huge", 0.0, "too_large", _huge, "a 200 MB notebook"),
    Attack("bad_timestamp", 10.0, "graded", solved_notebook, "a timestamp.txt that is not a date",
           timestamp=b"9999-99-99 99:99"),
    Attack("binary_timestamp", 10.0, "graded", solved_notebook, "a timestamp.txt that is not even UTF-8",
           timestamp=b"\xff\xfe\x00\x00"),
    Attack("deeply_nested", 0.0, "invalid_notebook", lambda course: b"[" * 200_000 + b"]" * 200_000,
           "JSON nested deeper than any parser's recursion limit"),
    Attack("lone_surrogates", 10.0, "graded", _with_cell("_odd = '\ud800'\nprint(_odd, '\udcff')\n"),
           "a cell whose source and output hold lone UTF-16 surrogates (valid JSON, not encodable as UTF-8)"),
    Attack("stderr_warnings", 10.0, "graded", _with_answer("answer_token_nll", STDERR_WARNINGS), "a correct solution printing warnings to stderr"),
    Attack("different_style", 10.0, "graded", _different_style, "a correct solution written differently"),
]


# --- Issue 15: the trust boundary between the student's code and the trusted runner -------------

# Finding 1: the answer key is one import away. Every route to the reference must earn nothing.
REFERENCE_IMPORT = "from coursekit.losses import token_nll\n"
REFERENCE_BY_PATH = (
    "import os\nimport coursekit\n"
    "_path = os.path.join(os.path.dirname(coursekit.__file__), 'losses', 'nll.py')\n"
    "_stolen = {'__name__': 'stolen'}\n"
    "exec(compile(open(_path).read(), _path, 'exec'), _stolen)\n"
    "token_nll = _stolen['token_nll']\n"
)
# Another assignment's reference computes the same numbers (label smoothing with epsilon 0).
REFERENCE_OF_ANOTHER_ASSIGNMENT = (
    "from coursekit.losses import label_smoothed_nll\n"
    "def token_nll(logits, targets, *, ignore_index=-100):\n"
    "    return label_smoothed_nll(logits, targets, 0.0, ignore_index=ignore_index, reduction='none')\n"
)

# Finding 2: the hidden inputs must be unreachable while the cells run. The probe looks everywhere it can: every
# frame's locals and every object the garbage collector tracks, for anything shaped like a hidden call (a call id,
# an encoded array, a call's keys, the grader's Calls and the runner's RunCall messages), in dicts, lists, tuples, strings and
# bytes (grader review r1, finding 12). Its marks are built at run time, so its own source does not match them.
PRINT_HIDDEN_INPUTS = (
    "import gc, sys\n"
    "_id_mark = 'test_token_nll' + '#'\n"
    "_wire_mark = ('\"t\": \"arr' + 'ay\"').encode()\n"
    "_found = []\n"
    "def _hidden_kind(value):\n"
    "    if type(value) is str:\n"
    "        return 'call id in a string' if value is not _id_mark and _id_mark in value else None\n"
    "    if type(value) is bytes:\n"
    "        hidden = value is not _wire_mark and (_id_mark.encode() in value or _wire_mark in value)\n"
    "        return 'encoded call' if hidden else None\n"
    "    if type(value) is dict:\n"
    "        if value.get('t') == 'array' and 'data' in value:\n"
    "            return 'encoded array'\n"
    "        if 'cotangent' in value or 'grad_wrt' in value or ('id' in value and 'kwargs' in value):\n"
    "            return 'call dict'\n"
    "        return None\n"
    "    if type(value).__name__ in ('RunCall', 'Calls'):\n"
    "        return type(value).__name__\n"
    "    return None\n"
    "def _look(value):\n"
    "    kind = _hidden_kind(value)\n"
    "    if kind:\n"
    "        _found.append(kind + ': ' + repr(value)[:300])\n"
    "    if type(value) is dict:\n"
    "        items = list(value.values())\n"
    "    elif type(value) in (list, tuple):\n"
    "        items = list(value)\n"
    "    else:\n"
    "        return\n"
    "    for item in items:\n"
    "        kind = _hidden_kind(item) if type(item) in (str, bytes) else None\n"
    "        if kind:\n"
    "            _found.append(kind + ': ' + repr(item)[:300])\n"
    "_frame = sys._getframe()\n"
    "while _frame is not None:\n"
    "    for _value in list(_frame.f_locals.values()):\n"
    "        _look(_value)\n"
    "    _frame = _frame.f_back\n"
    "for _object in gc.get_objects():\n"
    "    if _object is not _found:\n"
    "        _look(_object)\n"
    "print('found', len(_found), 'hidden things')\n"
    "print(str(_found)[:15000])\n"
)

# Grader review r1, findings 2 and 12: in the calls phase the graded function holds its hidden inputs (its own
# arguments, and every other call, in the kernel's frames). It tries each way out of the sandbox that ends in the
# feedback: its report's hits (the withheld stand-ins' record, the banned operators' list, found through the
# kernel's frames) and the name of an exception class made up of the inputs. Each call takes one route in turn.
# Every route must come back as a failed call, and its mark (built at run time, so the answer's source does not hold
# it) must appear in no page and no report.
FORGE_HITS = (
    "import sys\n"
    "_routes = [0]\n"
    "_honest_token_nll = token_nll\n"
    "def token_nll(logits, targets, *, ignore_index=-100):\n"
    "    if not getattr(__import__('builtins'), '_calls_phase', False):\n"
    "        return _honest_token_nll(logits, targets, ignore_index=ignore_index)\n"
    "    ids = []\n"
    "    frame = sys._getframe(1)\n"
    "    while frame is not None:\n"
    "        command = frame.f_locals.get('command')\n"
    "        if command is not None and hasattr(command, 'calls'):\n"
    "            ids = [call['id'] for call in command.calls]\n"
    "        frame = frame.f_back\n"
    "    numbers = '_'.join(str(round(float(v) * 1000)) for v in logits.flatten()[:8].tolist())\n"
    "    leak = 'LE' + 'AK_' + numbers + '_' + '_'.join(i.replace('#', 'n') for i in ids[:4])\n"
    "    route = _routes[0] % 3\n"
    "    _routes[0] += 1\n"
    "    if route == 0:\n"
    "        sys.modules['coursekit.grading.withheld']._REACHED.extend(leak[i:i + 190] for i in range(0, 570, 190))\n"
    "    elif route == 1:\n"
    "        frame = sys._getframe(1)\n"
    "        while frame is not None:\n"
    "            if 'banned_hits' in frame.f_locals:\n"
    "                frame.f_locals['banned_hits'].append(leak[:190])\n"
    "            frame = frame.f_back\n"
    "    raise type(leak[:90], (Exception,), {})(leak)\n"
)

# Grader review r4, finding 1: the graded function writes its hidden inputs into what the feedback used to quote.
# Its exception's message, with the digits spelt as letters (masking digits stopped only digits): the shape, the
# first 12 logits and the targets of each case, to 4 significant digits.
LETTERS_FOR_DIGITS = (
    "_honest_token_nll = token_nll\n"
    "def token_nll(logits, targets, *, ignore_index=-100):\n"
    "    if not getattr(__import__('builtins'), '_calls_phase', False):\n"
    "        return _honest_token_nll(logits, targets, ignore_index=ignore_index)\n"
    "    shape = str(tuple(logits.shape))\n"
    "    values = '/'.join(f'{v:.4g}' for v in logits.flatten()[:12].tolist())\n"
    "    ids = '/'.join(str(v) for v in targets.flatten()[:6].tolist())\n"
    "    text = 'shape ' + shape + ' L' + values + ' T' + ids\n"
    "    raise ValueError(text.translate(str.maketrans('0123456789', 'ABCDEFGHIJ')))\n"
)
# The returned value: right everywhere but at [0], which holds the largest hidden token loss of the case.
RETURNED_VALUE = (
    "import torch\n"
    "_honest_sequence_loss = sequence_loss\n"
    "def sequence_loss(token_losses, mask=None, *, reduction='sum'):\n"
    "    result = _honest_sequence_loss(token_losses, mask, reduction=reduction)\n"
    "    if not getattr(__import__('builtins'), '_calls_phase', False) or result.ndim == 0 or result.numel() == 0:\n"
    "        return result\n"
    "    leaked = torch.nan_to_num(token_losses.detach(), nan=0.0).max().to(result.dtype).reshape(1)\n"
    "    return torch.cat([leaked, result.flatten()[1:]]).reshape(result.shape)\n"
)
# The returned shape: a zero-size result whose first dimensions are the first hidden logits, times 100.
SHAPE_LEAK = (
    "import torch\n"
    "_honest_token_nll = token_nll\n"
    "def token_nll(logits, targets, *, ignore_index=-100):\n"
    "    if not getattr(__import__('builtins'), '_calls_phase', False):\n"
    "        return _honest_token_nll(logits, targets, ignore_index=ignore_index)\n"
    "    return torch.zeros(*[round(abs(x) * 100) % 10**6 for x in logits.flatten()[:3].tolist()], 0)\n"
)


def _after_answer(grade_id: str, source: str) -> Callable[[Path], dict[str, Any]]:
    """The solution's answer to ``grade_id`` with ``source`` appended (in the same answer cell)."""
    def build(course: Path) -> dict[str, Any]:
        return set_answer(solved_notebook(course), grade_id, solutions(course)[grade_id] + "\n" + source)
    return build


# Finding 3: the event channel must be the trusted runner's alone.
FORGE_CELL_END = (
    "import json, os\n"
    "_line = (json.dumps({'ev': 'cell_end', 'i': 0, 'status': 'ok', 'ename': '', 'evalue': '', 'traceback': '',\n"
    "                     'stdout': 'x' * 40_000_000, 'stderr': ''}) + '\\n').encode()\n"
    "for _fd in range(3, 256):\n"
    "    _view = memoryview(_line)\n"
    "    try:\n"
    "        while _view:\n"
    "            _view = _view[os.write(_fd, _view):]\n"
    "    except OSError:\n"
    "        pass\n"
)
HUGE_EVENT_LINE = (
    "import os\n"
    "_line = b'[' + b'{},' * 20_000_000 + b'{}]\\n'\n"
    "for _fd in range(3, 256):\n"
    "    _view = memoryview(_line)\n"
    "    try:\n"
    "        while _view:\n"
    "            _view = _view[os.write(_fd, _view):]\n"
    "    except OSError:\n"
    "        pass\n"
)


def _forge_cell_start(course: Path) -> dict[str, Any]:
    """Blame a later, innocent cell (the sequence_loss answer) for a crash, then crash."""
    notebook = solved_notebook(course)
    decoy = cell_index(notebook, "answer_sequence_loss") + 1   # the attack cell is inserted before it
    source = (
        "import json, os\n"
        f"_line = (json.dumps({{'ev': 'cell_start', 'i': {decoy}}}) + '\\n').encode()\n"
        "for _fd in range(3, 256):\n"
        "    try:\n"
        "        os.write(_fd, _line)\n"
        "    except OSError:\n"
        "        pass\n"
        "os._exit(0)\n"
    )
    return add_cell(notebook, source, after="answer_token_nll")


# Finding 5: memory beyond the limit, through memfd, other processes and tmpfs inodes.
MEMFD_HOARD = (
    "import os\n"
    "mc_classification = 'A'\n"
    "_held = []\n"
    "try:\n"
    "    _block = b'\\1' * 2**20\n"
    "    for _ in range(48):\n"
    "        _held.append(os.memfd_create('hoard'))\n"
    "        for _ in range(32):\n"
    "            os.write(_held[-1], _block)\n"
    "    mc_classification = 'B'\n"
    "except OSError as error:\n"
    "    print('memfd refused:', error)\n"
)
# Each child holds 300 MiB (under its own 1 GiB address-space limit) and says so; the cell then checks that all
# ten were alive at once, 3 GiB in all, past the sandbox's 2 GiB. Everything happens in the one cell: after each
# cell the kernel kills every other process of its uid (grading/kernel.py, _reap_strays), so a later cell never
# sees a child of this one (grader review r11, finding 8: the two wait cells and the check cell this attack had
# waited on children already gone). Writing 2 GiB takes the children over two seconds of CPU, on a sandbox of
# one CPU that a busy machine may share, and on a virtual machine each first touch of a page also waits for the
# host (300 MiB took 0.34 s of CPU and 0.7 s of wall clock on an idle 2-core VM). The cell waits up to 5 s and
# stops as soon as every child has said so or one was killed (SIGKILL: the limit's OOM killer); then it ends the
# children with SIGTERM and waits for them until 7.5 s, inside its 9 s wall-clock limit. What it saw is
# printed, for the test's expectation and a failure's message. A child exits whatever happens: one whose
# allocation raised would otherwise go on as a copy of the kernel.
MEMORY_ACROSS_PROCESSES = (
    "import os, select, signal, time\n"
    "mc_classification = 'A'\n"
    "_started = time.monotonic()\n"
    "_ready, _say = os.pipe()\n"
    "_children = []\n"
    "for _ in range(10):\n"
    "    _pid = os.fork()\n"
    "    if _pid == 0:\n"
    "        try:\n"
    "            signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
    "            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})\n"
    "            os.close(_ready)\n"
    "            _hog = b'\\1' * (300 * 2**20)\n"
    "            os.write(_say, b'x')\n"
    "            time.sleep(120)\n"
    "        finally:\n"
    "            os._exit(0)\n"
    "    _children.append(_pid)\n"
    "os.close(_say)\n"
    "_held = 0\n"
    "_ended = {}\n"
    "def _killed():\n"
    "    return [_pid for _pid, _status in _ended.items()\n"
    "            if os.WIFSIGNALED(_status) and os.WTERMSIG(_status) == signal.SIGKILL]\n"
    "def _reap():\n"
    "    for _pid in _children:\n"
    "        if _pid not in _ended:\n"
    "            _got, _status = os.waitpid(_pid, os.WNOHANG)\n"
    "            if _got:\n"
    "                _ended[_pid] = _status\n"
    "while _held < 10 and not _killed() and time.monotonic() < _started + 5.0:\n"
    "    if select.select([_ready], [], [], 0.25)[0]:\n"
    "        _chunk = os.read(_ready, 10)\n"
    "        if not _chunk:\n"
    "            break\n"
    "        _held += len(_chunk)\n"
    "    _reap()\n"
    "_reap()\n"
    # The cell ends its children itself, all at once, with SIGTERM, and waits for them until 7.5 s (inside its
    # 9 s wall-clock limit): a child that the memory limit's OOM killer ended before ended by SIGKILL. The
    # count of kills printed is the grader's when the cell ended no child itself (see the Attack's comment).
    "_alive = [_pid for _pid in _children if _pid not in _ended]\n"
    "for _pid in _alive:\n"
    "    os.kill(_pid, signal.SIGTERM)\n"
    "while len(_ended) < 10 and time.monotonic() < _started + 7.5:\n"
    "    time.sleep(0.05)\n"
    "    _reap()\n"
    "print(f'{_held} of 10 children held 300 MiB, {len(_killed())} died, {len(_alive)} ended by the cell, '\n"
    "      f'{10 - len(_ended)} still exiting, after {time.monotonic() - _started:.1f} s')\n"
    "if _held == 10 and not _killed():\n"
    "    mc_classification = 'B'\n"
)


TMPFS_INODES = (
    "import os\n"
    "mc_classification = 'A'\n"
    "try:\n"
    "    for _i in range(60_000):\n"
    "        open(f'/tmp/inode-{_i}', 'w').close()\n"
    "    mc_classification = 'B'\n"
    "except OSError as error:\n"
    "    print('stopped after', _i, 'files:', error)\n"
)

# Grader review r1, finding 1: the ban lives in the process that runs the student's code. Switching it off earns
# the marks: the ban deters, it does not enforce (README, book/for_instructors.md). This entry pins down the truth.
BAN_SWITCHED_OFF_CELL = (
    "import contextlib, sys\n"
    "sys.modules['coursekit.grading.graded_call'].banned = lambda operators, hits: contextlib.nullcontext()\n"
)
BAN_SWITCHED_OFF_ANSWER = (
    "import torch.nn.functional as F\n"
    "def token_nll(logits, targets, *, ignore_index=-100):\n"
    "    flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),\n"
    "                           ignore_index=ignore_index, reduction='none')\n"
    "    return flat.reshape(targets.shape)\n"
)
# ... and the built-in log-softmax reached through a sparse tensor, which runs another ATen operator. The logits
# are shifted to be positive first (log-softmax does not change), since to_sparse() drops exact zeros; the sparse
# kernel's backward pass is not the dense one's, so the gradient is carried by a logsumexp expression.
BAN_BY_SPARSE_ANSWER = (
    "import torch\n"
    "def token_nll(logits, targets, *, ignore_index=-100):\n"
    "    flat = logits.reshape(-1, logits.shape[-1])\n"
    "    shifted = (flat - flat.amin(-1, keepdim=True) + 1.0).detach()\n"
    "    built_in = torch.sparse.log_softmax(shifted.to_sparse(), -1).to_dense()\n"
    "    smooth = flat - torch.logsumexp(flat, -1, keepdim=True)\n"
    "    log_p = (smooth + (built_in - smooth).detach()).reshape(logits.shape)\n"
    "    ignored = targets == ignore_index\n"
    "    safe = torch.where(ignored, torch.zeros_like(targets), targets)\n"
    "    picked = -log_p.gather(-1, safe.unsqueeze(-1)).squeeze(-1)\n"
    "    return torch.where(ignored, torch.zeros_like(picked), picked)\n"
)


def _ban_switched_off(course: Path) -> dict[str, Any]:
    notebook = add_cell(solved_notebook(course), BAN_SWITCHED_OFF_CELL, after="given-02")
    return set_answer(notebook, "answer_token_nll", BAN_SWITCHED_OFF_ANSWER)


# Finding 7: a banned built-in reached without its name in the defining cell.
BANNED_BY_GETATTR_CELL = "import torch.nn.functional as F\n_entropy = getattr(F, 'cross' + '_entropy')\n"
BANNED_BY_GETATTR_ANSWER = (
    "def token_nll(logits, targets, *, ignore_index=-100):\n"
    "    flat = _entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),\n"
    "                    ignore_index=ignore_index, reduction='none')\n"
    "    return flat.reshape(targets.shape)\n"
)


def _banned_by_getattr(course: Path) -> dict[str, Any]:
    notebook = add_cell(solved_notebook(course), BANNED_BY_GETATTR_CELL, after="given-02")
    return set_answer(notebook, "answer_token_nll", BANNED_BY_GETATTR_ANSWER)


# Finding 8: student HTML in markdown must not run in any page the grader or nbgrader writes.
SCRIPT_IN_ANSWER = "My answer.\n\n<script>document.title = 'pwned'</script>\n"
IMG_ONERROR = "<img src=\"missing.png\" onerror=\"document.title = 'pwned'\">\n"


def _html_in_markdown(course: Path) -> dict[str, Any]:
    notebook = set_answer(solved_notebook(course), "written_sum_vs_mean", SCRIPT_IN_ANSWER)
    index = cell_index(notebook, "given-02") + 1
    notebook["cells"].insert(index, {"cell_type": "markdown", "id": "student-html", "metadata": {},
                                     "source": IMG_ONERROR})
    notebook["cells"].append({"cell_type": "raw", "id": "student-raw", "metadata": {"format": "text/html"},
                              "source": "<script>document.title = 'raw'</script>"})
    return notebook


# Grader review round 1, finding 4: markdown's own link syntax passes the HTML sanitiser, and nbconvert renders
# any URL as it is. Each line is a different route to a javascript: link (the last one through MathJax).
MARKDOWN_LINKS = (
    "[see my derivation](javascript:document.title=%22pwned%22)\n",
    "![figure](javascript:document.title='pwned')\n",
    "[my notes][notes]\n\n[notes]: javascript:document.title='pwned'\n",
    "<javascript:document.title='pwned'>\n",
    "[spelled with entities](java&#115;cript&colon;document.title='pwned')\n",
    "$\\href{javascript:document.title='pwned'}{\\ell}$\n",
)


def _links_in_markdown(course: Path) -> dict[str, Any]:
    notebook = set_answer(solved_notebook(course), "written_sum_vs_mean", "My answer.\n\n" + MARKDOWN_LINKS[0])
    index = cell_index(notebook, "given-02") + 1
    for number, text in enumerate(MARKDOWN_LINKS[1:]):
        notebook["cells"].insert(index + number, {"cell_type": "markdown", "id": f"student-link-{number}",
                                                  "metadata": {}, "source": text})
    return notebook


# The two cases the issue left open, decided (see the README and book/for_instructors.md).
def _answer_below_test(course: Path) -> dict[str, Any]:
    notebook = solved_notebook(course)
    answer = notebook["cells"].pop(cell_index(notebook, "answer_token_nll"))
    notebook["cells"].insert(cell_index(notebook, "test_token_nll") + 1, answer)
    return notebook


def _answer_as_markdown(course: Path) -> dict[str, Any]:
    notebook = solved_notebook(course)
    cell = notebook["cells"][cell_index(notebook, "answer_token_nll")]
    cell["cell_type"] = "markdown"
    cell.pop("outputs", None)
    cell.pop("execution_count", None)
    return notebook


# Review round 1, finding 3: a cell that ignores the kernel's timers and keeps the report pipe readable (a newline
# every 20 ms, under the runner's 0.2 s tick) while it computes for 16 s: past the runner's limits (3 s CPU + 2 s,
# 9 s wall + 2 s at the corpus's --timeout 3), inside the grader's outer 23 s step budget. The runner must kill it.
FLOOD_AND_COMPUTE = (
    "import os, signal, time\n"
    "signal.signal(signal.SIGPROF, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
    "_fds = [int(_f) for _f in os.listdir('/proc/self/fd') if int(_f) > 2]\n"
    "_until, _next = time.monotonic() + 16, 0.0\n"
    "while time.monotonic() < _until:\n"
    "    if time.monotonic() >= _next:\n"
    "        _next = time.monotonic() + 0.02\n"
    "        for _fd in _fds:\n"
    "            try:\n"
    "                os.write(_fd, b'\\n')\n"
    "            except OSError:\n"
    "                pass\n"
    "print('computed past the limit')\n"
)
# Review round 1, finding 6: SysV shared memory and message queues and POSIX queues hold memory no rlimit counts.
SYSV_IPC = (
    "import ctypes\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "if libc.shmget(0, 1 << 20, 0o1600) >= 0 or libc.msgget(0, 0o1600) >= 0:\n"
    "    return\n"
    "if libc.mq_open(b'/coursekit-probe', 0o102, 0o600, None) >= 0:\n"
    "    return\n"
    "raise PermissionError('shmget, msgget and mq_open denied')"
)

# What was tried and held: each probe answers the multiple-choice question correctly only if it succeeds.
def _probe(attempt: str) -> str:
    body = "".join(f"    {line}\n" for line in attempt.strip("\n").split("\n"))
    return (
        "mc_classification = 'A'\n"
        "def _attempt():\n" + body +
        "try:\n"
        "    _attempt()\n"
        "    mc_classification = 'B'\n"
        "except Exception as error:\n"
        "    print('held:', type(error).__name__)\n"
    )


DEV_SHM = "open('/dev/shm/coursekit-probe', 'w').write('x')"
PROC_ESCAPE = (
    "import os\n"
    "for path in ('/proc/1/root/etc', '/proc/1/cwd', f'/proc/{os.getppid()}/fd', f'/proc/{os.getppid()}/cwd'):\n"
    "    try:\n"
    "        os.listdir(path)\n"
    "        return\n"
    "    except OSError:\n"
    "        pass\n"
    "for path in ('/proc/1/environ', f'/proc/{os.getppid()}/environ', f'/proc/{os.getppid()}/mem'):\n"
    "    try:\n"
    "        open(path, 'rb').read(1)\n"
    "        return\n"
    "    except OSError:\n"
    "        pass\n"
    "raise PermissionError('nothing reachable')"
)
SHARED_STATE = (
    "import os\n"
    "if os.path.exists('/tmp/coursekit-marker') or os.path.exists(os.path.expanduser('~/coursekit-marker')):\n"
    "    return\n"
    "open('/tmp/coursekit-marker', 'w').write(str(os.getuid()))\n"
    "open(os.path.expanduser('~/coursekit-marker'), 'w').write(str(os.getuid()))\n"
    "open('coursekit-marker', 'w').write(str(os.getuid()))\n"
    "raise FileNotFoundError('no marker left by an earlier submission')"
)
DAEMON = (
    "import os, signal, time\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        for _signal in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):\n"
    "            signal.signal(_signal, signal.SIG_IGN)\n"
    "        while True:\n"
    "            time.sleep(1)\n"
    "    os._exit(0)\n"
)


def _sockets(course: Path) -> str:
    """Connect to listeners the test opened on the host: loopback TCP and an abstract Unix socket."""
    listeners = json.loads((course / "probe_listeners.json").read_text())
    return _probe(
        "import socket\n"
        "for port in %r:\n"
        "    try:\n"
        "        socket.create_connection(('127.0.0.1', port), timeout=2).close()\n"
        "        return\n"
        "    except OSError:\n"
        "        pass\n"
        "unix = socket.socket(socket.AF_UNIX)\n"
        "unix.settimeout(2)\n"
        "unix.connect(%r)\n" % (listeners["tcp"], "\0" + listeners["abstract"])
    )


ATTACKS += [
    Attack("reference_import", 7.0, "uses_reference", _with_answer("answer_token_nll", REFERENCE_IMPORT),
           "the answer imports the reference (finding 1)"),
    Attack("reference_by_path", 7.0, "uses_reference", _with_answer("answer_token_nll", REFERENCE_BY_PATH),
           "the answer executes the reference's source file, found by path (finding 1)"),
    Attack("reference_of_another_assignment", 7.0, "graded",
           _with_answer("answer_token_nll", REFERENCE_OF_ANOTHER_ASSIGNMENT),
           "the answer uses a4's reference, which a1's sandbox does not hold (finding 1)"),
    Attack("print_hidden_inputs", 10.0, "graded", _with_cell(PRINT_HIDDEN_INPUTS),
           "a cell walks every frame and object for the hidden calls and prints them (finding 2)"),
    Attack("forge_cell_end", 10.0, "graded", _with_cell(FORGE_CELL_END),
           "a forged cell_end with 40 MB of stdout written to every descriptor (finding 3)"),
    Attack("forge_cell_start", 10.0, "kernel_died", _forge_cell_start,
           "a forged cell_start blaming a later cell, then os._exit (finding 3)"),
    Attack("huge_event_line", 10.0, "graded", _with_cell(HUGE_EVENT_LINE),
           "one valid 60 MB JSON line written to every descriptor (finding 3)"),
    Attack("memfd_hoard", 9.0, "graded", _with_answer("answer_mc_classification", MEMFD_HOARD),
           "1.5 GiB in 48 memfds under a 1 GiB address-space limit (finding 5)"),
    Attack("memory_across_processes", 9.0, "memory_limit",
           _with_answer("answer_mc_classification", MEMORY_ACROSS_PROCESSES),
           "ten processes holding 300 MiB each, every one under its own address-space limit (finding 5)",
           # Memory reclaim in the sandbox's cgroup can stall every child for seconds (CI at 4bb98aa: 0 of 10
           # held after 7.6 s): then nobody may be killed before the cell ends its children, not all ten hold
           # their memory, and the answer stays wrong. The cell ends and waits for its children before it
           # prints, but a kill can still escape its count: the OOM killer picks a child, writes its report to
           # the kernel log, counts the kill and only then signals; a SIGTERM of the cell's in between ends the
           # child by SIGTERM (its SIGKILL is then dropped), and a child killed and not yet reaped is "still
           # exiting". So when the cell ended any child itself and saw no kill, either outcome is right; when
           # it saw one, memory_limit. A cell stalled past its 9 s prints nothing and gets timeout (not seen).
           unreached=((r"^[0-9] of 10 children held 300 MiB, 0 died, 0 ended by the cell, 0 still exiting",
                       ("graded",)),
                      (r"^[0-9] of 10 children held 300 MiB, 0 died, ", ("graded", "memory_limit")))),
    Attack("tmpfs_inodes", 9.0, "graded", _with_answer("answer_mc_classification", TMPFS_INODES),
           "60,000 empty files in /tmp: kernel memory that the tmpfs size does not count (finding 5)"),
    Attack("banned_by_getattr", 7.0, "graded", _banned_by_getattr,
           "F.cross_entropy reached through getattr in another cell (finding 7)"),
    Attack("html_in_markdown", 10.0, "graded", _html_in_markdown,
           "<script> and <img onerror> in markdown and raw cells (finding 8)"),
    Attack("forged_hits", 7.0, "graded", _in_calls_phase(_after_answer("answer_token_nll", FORGE_HITS)),
           "the graded function writes its hidden inputs into its report's hits and an exception's name "
           "(grader review r1, findings 2 and 12)"),
    Attack("letters_for_digits", 7.0, "graded", _in_calls_phase(_after_answer("answer_token_nll", LETTERS_FOR_DIGITS)),
           "the graded function raises its hidden inputs spelt in letters (grader review r4, finding 1)"),
    Attack("returned_value", 7.875, "graded", _in_calls_phase(_after_answer("answer_sequence_loss", RETURNED_VALUE)),
           "the graded function returns a hidden input at [0] (grader review r4, finding 1)"),
    Attack("shape_leak", 7.0, "graded", _in_calls_phase(_after_answer("answer_token_nll", SHAPE_LEAK)),
           "the graded function returns a zero-size tensor whose dimensions are hidden logits "
           "(grader review r4, finding 1)"),
    Attack("ban_switched_off", 10.0, "graded", _ban_switched_off,
           "a cell removes the ban from the kernel, then F.cross_entropy earns the marks: the ban only deters "
           "(grader review r1, finding 1)"),
    Attack("banned_by_sparse", 7.0, "graded", _with_answer("answer_token_nll", BAN_BY_SPARSE_ANSWER),
           "log-softmax through torch.sparse.log_softmax, another ATen operator (grader review r1, finding 1)"),
    Attack("links_in_markdown", 10.0, "graded", _links_in_markdown,
           "javascript: URLs in markdown links, images, a reference definition, an autolink and MathJax's \\href "
           "(grader review r1, finding 4)"),
    Attack("answer_below_test", 7.0, "graded", _answer_below_test,
           "the answer cell moved below its test cell (decided: its visible checks run where the test cell "
           "stands and fail, so token_nll's 3 points are lost, as under stock nbgrader)"),
    Attack("answer_as_markdown", 10.0, "tampered_cells", _answer_as_markdown,
           "the answer cell turned into markdown (decided: restored as code, as nbgrader does)"),
    Attack("probe_dev_shm", 9.0, "graded", _with_answer("answer_mc_classification", _probe(DEV_SHM)),
           "writing to /dev/shm (held before issue 15)"),
    Attack("probe_proc", 9.0, "graded", _with_answer("answer_mc_classification", _probe(PROC_ESCAPE)),
           "/proc/1/root, cwd, environ and the runner's own /proc entries (held before issue 15)"),
    Attack("probe_sockets", 9.0, "graded", _with_answer("answer_mc_classification", _sockets),
           "loopback TCP and an abstract Unix socket opened on the host (held before issue 15)"),
    Attack("probe_state_a", 9.0, "graded", _with_answer("answer_mc_classification", _probe(SHARED_STATE)),
           "a marker in /tmp, the home and the working copy left for the next submission (held before issue 15)"),
    Attack("probe_state_b", 9.0, "graded", _with_answer("answer_mc_classification", _probe(SHARED_STATE)),
           "the same marker looked for by a second submission (held before issue 15)"),
    Attack("daemon", 10.0, "graded", _with_cell(DAEMON),
           "a double-forked setsid daemon ignoring SIGTERM and SIGHUP (held before issue 15)"),
    Attack("flood_and_compute", 10.0, "timeout", _with_cell(FLOOD_AND_COMPUTE),
           "timers ignored, the report pipe kept readable, 16 s of computation: killed by the runner, the cell "
           "skipped on the rerun (review round 1, finding 3)"),
    Attack("probe_sysv_ipc", 9.0, "graded", _with_answer("answer_mc_classification", _probe(SYSV_IPC)),
           "shmget, msgget and mq_open, memory outside RLIMIT_AS (review round 1, finding 6)"),
    Attack("forged_memory_error", 10.0, "tampered_cells", _readonly_edited_and(FORGED_MEMORY_ERROR),
           "edited read-only cells and a cell that raises MemoryError itself (grader review r2, finding 9)"),
    Attack("forged_cell_timeout", 10.0, "tampered_cells", _readonly_edited_and(FORGED_CELL_TIMEOUT),
           "edited read-only cells and a cell that raises its own class named CellTimeout (grader review r2, "
           "finding 9)"),
    Attack("big_result", 9.0, "graded", _in_calls_phase(_after_answer("answer_perplexity", BIG_RESULTS)),
           "an answer of 10^7 floats: refused by the runner unread (grader review r2, finding 8)"),
]

#: the attacks whose cells raise an exception named like a limit: they must not buy a second attempt.
FORGED_LIMITS = ("forged_memory_error", "forged_cell_timeout")


# Finding 4: graded together, two at a time, with a 5 s limit, as the issue measured it. The attacker's
# cells never end: each keeps 64 busy processes running until it is killed, and the submission holds its
# slot for its whole time budget (then scores 0, outcome timeout). The victim must not notice.
CPU_HOG = (
    "import os, signal, time\n"
    "for _ in range(64):\n"
    "    if os.fork() == 0:\n"
    "        os.setsid()\n"
    "        signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
    "        while True:\n"
    "            pass\n"
    "time.sleep(600)\n"
)
CONCURRENT: list[Attack] = [
    # Four hogging cells, one more than the grader's restarts (reruns.MAX_RESTARTS): the last attempt stops in
    # the fourth, so no graded call runs whatever the machine's speed. With three, the score depended on whether
    # three timeouts and restarts fitted the wall-clock budget (10.0 on a quiet machine, 0.0 on a busy one).
    Attack("cpu_hog", 0.0, "timeout",
           lambda course: add_cell(add_cell(add_cell(add_cell(solved_notebook(course), CPU_HOG), CPU_HOG), CPU_HOG),
                                   CPU_HOG),
           "four cells that each fork 64 busy setsid processes ignoring SIGALRM, then never end (finding 4)"),
    Attack("cpu_hog_victim", 10.0, "graded", solved_notebook,
           "an honest, correct submission graded at the same time as cpu_hog (finding 4)"),
]


# Grader review round 3: submissions that stopped the whole batch on main, and honest work that lost points or
# was called tampering. Graded one at a time, in this order (students sort by name), so an aa_* that stops the
# run leaves zz_after ungraded; every student's exact score, outcome and report are checked.
WIDENING_REPORT = (
    "import sys, json, os\n"
    "_kernel = sys.modules['coursekit.grading.graded_call']\n"
    "_dumps = json.dumps\n"
    "# the kernel's reports in raw UTF-8: 24 MB of 'é', 72 MB once the runner escapes it again\n"
    "json.dumps = lambda *a, **k: _dumps(*a, **{**k, 'ensure_ascii': False})\n"
    "_count = [0]\n"
    "_encode = _kernel.encode_value\n"
    "_kernel.encode_value = lambda v: '\\u00e9' * 12_000_000 if _count[0] == 1 else _encode(v)\n"
    "_token_nll = token_nll\n"
    "def token_nll(*args, **kwargs):\n"
    "    if not getattr(__import__('builtins'), '_calls_phase', False):\n"
    "        return _token_nll(*args, **kwargs)\n"
    "    _count[0] += 1\n"
    "    if _count[0] == 2:\n"
    "        os._exit(3)\n"
    "    return _token_nll(*args, **kwargs)\n"
)
#: an honest student logs a long experiment: 32,000 lines of 72 characters, 2.3 M characters in all.
VERBOSE_LOG = (
    "import math\n"
    "for step in range(32_000):\n"
    "    print(f'step {step:6d}  loss {math.exp(-step / 5000):.6f}  (checking token_nll on a random batch...)')\n"
)


def _deep_metadata(course: Path) -> dict[str, Any]:
    notebook = solved_notebook(course)
    notebook["metadata"]["x"] = json.loads("[" * 700 + "]" * 700)
    return notebook


def _verbose(course: Path) -> dict[str, Any]:
    notebook = add_cell(solved_notebook(course), VERBOSE_LOG)
    answer = solutions(course)["answer_sequence_loss"]
    return set_answer(notebook, "answer_sequence_loss",
                      'print("sequence_loss: sum or mean over the unmasked tokens")\n' + answer)


def _pasted_answer(course: Path) -> dict[str, Any]:
    notebook = solved_notebook(course)
    index = cell_index(notebook, "answer_token_nll")
    pasted = copy.deepcopy(notebook["cells"][index])
    pasted["id"] = "pasted-copy"
    pasted["source"] = "# my experiment\n" + "".join(pasted["source"])
    notebook["cells"].insert(index + 1, pasted)
    return notebook


ROUND3: list[Attack] = [
    Attack("aa_crash", 7.0, "kernel_died", _in_calls_phase(_with_cell(WIDENING_REPORT)),
           "token_nll's first report re-encodes to 72 MB (past the line bound), then the kernel dies in its second "
           "call: token_nll earns nothing, the other answers their points, the batch goes on "
           "(grader review r3, finding 1)"),
    Attack("aa_deep", 0.0, "invalid_notebook", _deep_metadata,
           "valid JSON nested 700 deep in the notebook's metadata (grader review r3, finding 2)"),
    Attack("aa_unwritable", 0.0, "grader_error", solved_notebook,
           "an honest submission whose autograded folder the grader cannot create (the test puts a file in its "
           "place): the grader's own failure is recorded and the batch goes on (grader review r3, finding 1)"),
    Attack("pasted_answer", 10.0, "graded", _pasted_answer,
           "a copy of the token_nll answer cell pasted in Jupyter, metadata and all (grader review r3, finding 5)"),
    Attack("verbose", 10.0, "graded", _verbose,
           "an honest notebook that prints 2.3 M characters, past the notebook's output limit, then prints in an "
           "answer cell (grader review r3, findings 3 and 4)"),
    Attack("zz_after", 10.0, "graded", solved_notebook, "an honest submission graded after all of them"),
]


# Grader review round 4 (findings 2, 3 and 7): honest work that lost points or was called tampering, and an upload
# that stalled the batch. Graded with the attacks above.
# Both map their tensors without writing them (torch.empty), as MEMORY_BOMB does: the address space reaches its
# limit at once. Writing them (torch.ones, 1 GiB) met the 3 s CPU limit first on a loaded CI machine, so the
# answer cell ended in an honest `timeout` where the test expected `memory_limit` (stop 33's CI run).
#: appended to the token_nll answer: tries something too big inside a function; the memory is freed as the
#: exception unwinds, so the answer above it must keep its points.
TRY_TOO_BIG = (
    "\ndef _try_big():\n"
    "    kept = []\n"
    "    while True:\n"
    "        kept.append(torch.empty(2**23))   # 32 MiB at a time, until the address space runs out\n"
    "_try_big()\n"
)
#: appended to the token_nll answer: keeps what it allocated, so the cell is a hoarder.
KEEP_TOO_BIG = "\n_kept = []\nwhile True:\n    _kept.append(torch.empty(2**23))\n"


def _hoarding_answer_then(later: str | None) -> Callable[[Path], dict[str, Any]]:
    """The token_nll answer that then keeps memory up to the limit, followed by a cell ``later`` (if any)."""
    def build(course: Path) -> dict[str, Any]:
        notebook = _answer_and(KEEP_TOO_BIG)(course)
        return add_cell(notebook, later, after="answer_token_nll") if later else notebook
    return build


def _hoarding_answer_freed_then_short(course: Path) -> dict[str, Any]:
    """The token_nll answer that keeps memory up to the limit, a cell that frees it, then a cell that runs out of
    memory on its own (and frees it as its exception unwinds)."""
    notebook = add_cell(_answer_and(KEEP_TOO_BIG)(course), TRY_TOO_BIG, after="answer_token_nll")
    return add_cell(notebook, "del _kept\n", after="answer_token_nll")


def _answer_and(tail: str) -> Callable[[Path], dict[str, Any]]:
    return _with_answer("answer_token_nll", lambda course: solutions(course)["answer_token_nll"] + tail)


def _truncated_upload(course: Path) -> bytes:
    """The solved notebook with a DataFrame's HTML output, cut off inside it: 8,000 ``\\"`` left unterminated."""
    notebook = solved_notebook(course)
    html = '<table class="dataframe"><tr><td style="x">1</td></tr>' * 2_600
    cell = notebook["cells"][cell_index(notebook, "answer_token_nll")]
    cell["outputs"] = [{"output_type": "display_data", "metadata": {}, "data": {"text/html": html}}]
    raw = json.dumps(notebook, indent=1).encode()
    return raw[: raw.index(b"dataframe") + 120_000]


def _paste_same_id(course: Path) -> dict[str, Any]:
    """A pasted copy of the token_nll answer cell with the original's id as well as its metadata (VS Code)."""
    notebook = solved_notebook(course)
    index = cell_index(notebook, "answer_token_nll")
    pasted = copy.deepcopy(notebook["cells"][index])
    pasted["source"] = "# trying something\n" + "".join(pasted["source"])
    notebook["cells"].insert(index + 1, pasted)
    return notebook


def _plain_dup_id(course: Path) -> dict[str, Any]:
    """Two plain cells sharing an id (nbformat repairs this with a warning)."""
    notebook = add_cell(add_cell(solved_notebook(course), "x = 1", after="answer_token_nll"), "y = 2",
                        after="answer_token_nll")
    index = cell_index(notebook, "answer_token_nll")
    notebook["cells"][index + 1]["id"] = notebook["cells"][index + 2]["id"] = "same-id"
    return notebook


ATTACKS += [
    Attack("hog_answer", 10.0, "memory_limit", _answer_and(TRY_TOO_BIG),
           "the token_nll answer cell then runs out of memory inside a function, which frees it: no cell is "
           "skipped, the answer keeps its points (grader review r4, finding 2)"),
    Attack("hog_answer_kept", 7.0, "memory_limit", _hoarding_answer_then(NEEDS_MEMORY),
           "the token_nll answer cell then keeps memory up to the limit, and a later cell runs out: it is skipped on "
           "the rerun, and the question's feedback says so (grader review r4, finding 2)"),
    Attack("hog_answer_starved_nothing", 10.0, "memory_limit", _hoarding_answer_then(None),
           "the token_nll answer cell then keeps memory up to the limit, and nothing after it runs out: it stays, "
           "with its points and a note (grader review r28, F2)"),
    Attack("hog_answer_freed", 10.0, "memory_limit", _hoarding_answer_freed_then_short,
           "the token_nll answer cell then keeps memory up to the limit, a cell frees it, and a later cell runs out on "
           "its own: the answer cell is not blamed for it and keeps its points (grader review r31, F2)"),
    Attack("truncated_upload", 0.0, "invalid_notebook", _truncated_upload,
           "an upload cut off inside an HTML output full of escaped quotes (grader review r4, finding 3)"),
    Attack("paste_same_id", 10.0, "graded", _paste_same_id,
           "an answer cell pasted with its id and metadata, as VS Code did (grader review r4, finding 7)"),
    Attack("plain_dup_id", 10.0, "graded", _plain_dup_id,
           "two plain cells sharing an id (grader review r4, finding 7)"),
]
