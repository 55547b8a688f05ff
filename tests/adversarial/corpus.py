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

from adversarial.course import ASSIGNMENT, add_cell, cell_index, set_answer, solved_notebook

WRONG_TOKEN_NLL = "import torch\ndef token_nll(logits, targets, *, ignore_index=-100):\n    return torch.zeros(targets.shape, dtype=logits.dtype)\n"


@dataclass(frozen=True)
class Attack:
    student: str
    score: float
    outcome: str
    build: Callable[[Path], dict[str, Any] | bytes]
    what: str
    timestamp: bytes | None = None   # timestamp.txt's bytes, when the attack is on it


def _with_cell(source: str, after: str = "answer_token_nll") -> Callable[[Path], dict[str, Any]]:
    return lambda course: add_cell(solved_notebook(course), source, after=after)


def _with_answer(grade_id: str, source: str | Callable[[Path], str]) -> Callable[[Path], dict[str, Any]]:
    def build(course: Path) -> dict[str, Any]:
        text = source(course) if callable(source) else source
        return set_answer(solved_notebook(course), grade_id, text)
    return build


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
    Attack("memory_bomb", 10.0, "memory_limit", _with_cell("_hog = []\nwhile True:\n    _hog.append(bytearray(50_000_000))\n"), "a memory bomb"),
    Attack("fork_bomb", 10.0, "graded", _with_cell("import os\nwhile True:\n    os.fork()\n"), "a fork bomb"),
    Attack("print_flood", 10.0, "graded", _with_cell("for _i in range(10**8):\n    print(_i)\n"), "10^8 lines printed"),
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
