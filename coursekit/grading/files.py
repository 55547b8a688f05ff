"""Which of a submission's files go into its sandbox.

Everything in the submission's folder but the notebook itself, caches and
links, up to a size budget. A file named like a module the runner imports
(NumPy, torch, IPython, ``coursekit``, any module of the standard library) is
refused: the working directory comes first on the kernel's ``sys.path``, and
such a file would be imported instead of the real module by anything that
imports it later.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SKIP_DIRS = {".ipynb_checkpoints", "__pycache__", ".git"}
#: packages the runner and the kernel import (besides the standard library).
RUNNER_PACKAGES = frozenset({"numpy", "torch", "IPython", "coursekit"})


def shadows_a_module(relative: str, is_package: bool) -> bool:
    """Whether a submitted top-level file or package would be imported instead of a module the runner uses.

    Example:
        >>> shadows_a_module("numpy.py", False), shadows_a_module("json/__init__.py", True)
        (True, True)
        >>> shadows_a_module("data/numpy.py", False), shadows_a_module("helpers.py", False)
        (False, False)
    """
    first = relative.split("/")[0]
    if "/" in relative and not is_package:
        return False
    name = first.split(".")[0]
    importable = is_package or relative.endswith((".py", ".pyc", ".so"))
    return importable and (name in RUNNER_PACKAGES or name in sys.stdlib_module_names)


def refuse_shadowing(files: dict[str, bytes]) -> tuple[dict[str, bytes], list[str]]:
    """``files`` without those that shadow a module (see :func:`shadows_a_module`), and their names.

    Example:
        >>> refuse_shadowing({"numpy.py": b"", "helpers.py": b"", "json/__init__.py": b"", "json/x.py": b""})
        ({'helpers.py': b''}, ['json/__init__.py', 'json/x.py', 'numpy.py'])
    """
    packages = {path.split("/")[0] for path in files if path.count("/") == 1 and
                path.split("/")[1].startswith("__init__.")}
    refused = sorted(path for path in files if shadows_a_module(path, path.split("/")[0] in packages))
    return {k: v for k, v in files.items() if k not in refused}, refused


def files_of(directory: Path, exclude: set[str], budget: int) -> dict[str, bytes] | None:
    """The regular files under ``directory`` (no links, no caches) by relative path, but those in ``exclude``.

    Returns:
        The files' bytes, or ``None`` when they hold more than ``budget`` bytes in all.
    """
    files: dict[str, bytes] = {}
    total = 0
    if not directory.is_dir():
        return files
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(names):
            path = Path(root) / name
            relative = str(path.relative_to(directory))
            if relative in exclude or path.is_symlink() or not path.is_file():
                continue
            total += path.stat().st_size
            if total > budget:
                return None
            files[relative] = path.read_bytes()
    return files
